"""The Ollama Modelfile written beside every GGUF: TEMPLATE, SYSTEM, stop tokens and parameters derived from the
tokenizer's chat template, and checked by rendering it the way Ollama does.

    text, check = modelfile(tokenizer, "v001.Q8_0.gguf")
    render(template, messages, system=...)    # what Ollama sends the model for a conversation

Why derived here rather than taken from Unsloth: unsloth.save.create_ollama_modelfile picks a hand-written
Modelfile by template name or by a table of model names, so it has none for a model's own template (the
embedded SmolLM2, a local checkpoint), drops a template's default system prompt, and sets its own sampling
(temperature 1.5). Ollama itself only guesses a template from the GGUF when the Modelfile has none. So the
template is read off the tokenizer: the chat template is rendered for probe conversations with marker
contents, the text around each marker is one role's prefix and suffix, and those fill Ollama's
System/Prompt/Response template. The result is rendered again for several conversations and must give the
tokenizer's own text, or the Modelfile says what it leaves out.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

# Marker contents: plain words any template copies verbatim.
S, U1, A1, U2 = "SYSTEMzq1", "USERzq1", "ASSISTANTzq1", "USERzq2"
ACTION = re.compile(r"\{\{(.*?)\}\}", re.S)
PROBES = {  # name -> (messages, whether it needs the template's system part)
    "one turn": ([{"role": "user", "content": "Hi there"}], False),
    "two turns": ([{"role": "user", "content": "Hi there"}, {"role": "assistant", "content": "Hello."},
                   {"role": "user", "content": "What now?"}], False),
    "system, one turn": ([{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi there"}], True),
    "system, two turns": ([{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi there"},
                           {"role": "assistant", "content": "Hello."}, {"role": "user", "content": "What now?"}], True),
}


@dataclass
class Derived:
    template: str | None  # Ollama TEMPLATE, or None where the chat template cannot be written as one
    system: str  # the template's default system prompt ('' if none)
    stops: list[str]
    checked: dict = field(default_factory=dict)  # probe name -> rendered the same as the tokenizer
    note: str = ""


def chat_text(tokenizer, messages: list[dict]) -> str:
    """The tokenizer's prompt for messages (generation prompt added), less a BOS the template writes through
    `bos_token`: llama.cpp and Ollama add that one when tokenizing (the GGUF's add_bos_token)."""
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    bos = tokenizer.bos_token
    if bos and "bos_token" in (tokenizer.chat_template or "") and text.startswith(bos):
        text = text[len(bos):]
    return text


def _between(text: str, markers: list[str]) -> list[str] | None:
    """The pieces of text around the markers, in order, or None when they are not all there in order."""
    pieces, rest = [], text
    for m in markers:
        head, sep, rest = rest.partition(m)
        if not sep:
            return None
        pieces.append(head)
    return pieces + [rest]


def derive(tokenizer) -> Derived:
    """Ollama's System/Prompt/Response template from the tokenizer's chat template (see the module doc)."""
    try:
        return _derive(tokenizer)
    except Exception as e:  # a template that refuses a probe (e.g. no system role): say so, write no TEMPLATE
        return Derived(None, "", _stops(tokenizer, ""),
                       note=f"the chat template refused a probe conversation ({type(e).__name__}: {e})"[:300])


def _derive(tokenizer) -> Derived:
    user, asst, system = {"role": "user", "content": U1}, {"role": "assistant", "content": A1}, {"role": "system", "content": S}
    full = _between(chat_text(tokenizer, [system, user, asst, {"role": "user", "content": U2}]), [S, U1, A1, U2])
    no_sys = _between(chat_text(tokenizer, [user, asst, {"role": "user", "content": U2}]), [U1, A1, U2])
    if full is None or no_sys is None:
        return Derived(None, "", _stops(tokenizer, ""), note="the chat template does not show each turn's text")
    user_end = no_sys[1]  # = user suffix + assistant prefix; the pieces below split it
    one = _between(tokenizer.apply_chat_template([user, asst], tokenize=False), [U1, A1])
    asst_end = one[2] if one else ""
    user_pre = no_sys[2][len(asst_end):] if no_sys[2].startswith(asst_end) else None
    if user_pre is None or not no_sys[0].endswith(user_pre):
        return Derived(None, "", _stops(tokenizer, asst_end), note="turns are not rendered one after another")
    only_user = _between(tokenizer.apply_chat_template([user], tokenize=False), [U1])
    user_suf = only_user[1] if only_user and user_end.startswith(only_user[1]) else ""
    asst_pre = user_end[len(user_suf):]
    sys_pre = full[0]
    sys_suf = full[1][:-len(user_pre)] if user_pre and full[1].endswith(user_pre) else full[1]
    default = no_sys[0][:-len(user_pre)] if user_pre else no_sys[0]  # a system block the template adds itself
    default_system = ""
    if default:
        if default.startswith(sys_pre) and default.endswith(sys_suf) and len(default) > len(sys_pre + sys_suf):
            default_system = default[len(sys_pre):len(default) - len(sys_suf)]
        else:
            sys_pre = sys_suf = None  # cannot be said as Ollama's system part
    parts = [("{{ if .System }}", sys_pre, "{{ .System }}", sys_suf, "{{ end }}")] if sys_pre is not None else []
    template = "".join("".join(p) for p in parts) + \
        f"{{{{ if .Prompt }}}}{user_pre}{{{{ .Prompt }}}}{user_suf}{{{{ end }}}}{asst_pre}{{{{ .Response }}}}{asst_end}"
    if "{{" in "".join(x or "" for x in (sys_pre, sys_suf, user_pre, user_suf, asst_pre, asst_end)):
        return Derived(None, default_system, _stops(tokenizer, asst_end + user_pre), note="the template's text has {{")
    derived = Derived(template, default_system, _stops(tokenizer, asst_end + user_pre))
    derived.checked = {name: render(template, msgs, default_system) == chat_text(tokenizer, msgs)
                       for name, (msgs, _) in PROBES.items()}
    if not all(ok for name, ok in derived.checked.items() if not PROBES[name][1]):
        return Derived(None, default_system, derived.stops, derived.checked,
                       "rendering it did not give the tokenizer's prompt")
    if not all(derived.checked.values()):  # keep the turns, drop the system part that renders wrongly
        template = template.split("{{ end }}", 1)[1] if parts else template
        checked = {name: ok for name, ok in derived.checked.items() if not PROBES[name][1]}
        return Derived(template, "", derived.stops, checked, "this chat template places a system prompt where "
                       "Ollama's System/Prompt/Response template cannot, so the TEMPLATE has no system part")
    return derived


def _stops(tokenizer, between_turns: str) -> list[str]:
    """The end-of-sequence token and every special token in the text between an answer and the next
    question (where a model that does not stop would go on)."""
    stops = [tokenizer.eos_token] if tokenizer.eos_token else []
    for tok in tokenizer.added_tokens_decoder.values():
        if tok.special and tok.content in between_turns and tok.content not in stops:
            stops.append(tok.content)
    rest = between_turns
    for s in stops:
        rest = rest.replace(s, "\n")
    heading = [line.strip() for line in rest.splitlines() if line.strip()]
    if len(stops) <= 1 and heading:  # a plain-text template (alpaca): the next question's heading
        stops.append(heading[-1])
    return stops


# ----------------------------------------------------------------------------------------------------------
# Rendering as Ollama does
# ----------------------------------------------------------------------------------------------------------

def _execute(template: str, values: dict, cut: bool = False) -> str:
    """Go text/template for the actions derive() writes: {{ if .X }}, {{ end }}, {{ .X }}. Anything else is an
    error, so that a template this cannot render is never called equal. With cut, the text after
    {{ .Response }} is dropped, as Ollama does for the turn being generated."""
    out, stack, pos = [], [], 0
    for m in ACTION.finditer(template):
        if all(stack):
            out.append(template[pos:m.start()])
        pos = m.end()
        action = m.group(1).strip()
        if action == "end":
            stack.pop()
        elif re.fullmatch(r"if \.(System|Prompt|Response)", action):
            stack.append(bool(values[action[4:]]))
        elif re.fullmatch(r"\.(System|Prompt|Response)", action):
            if all(stack):
                out.append(values[action[1:]])
            if cut and action == ".Response":
                return "".join(out)
        else:
            raise ValueError(f"template action {{{{ {action} }}}} is not one this renderer knows")
    if all(stack):
        out.append(template[pos:])
    return "".join(out)


def render(template: str, messages: list[dict], system: str = "") -> str:
    """The prompt Ollama builds for messages with a System/Prompt/Response template (ollama's
    template/template.go, the path for templates without .Messages): the Modelfile's SYSTEM stands in for a
    missing system message; each finished user/assistant exchange is rendered in full, the last one up to
    {{ .Response }}."""
    if system and messages[0]["role"] != "system":
        messages = [{"role": "system", "content": system}, *messages]
    out, v = [], {"System": "", "Prompt": "", "Response": ""}
    for m in messages:
        if m["role"] == "system" and (v["Prompt"] or v["Response"]) or m["role"] == "user" and v["Response"]:
            out.append(_execute(template, v))
            v = {"System": "", "Prompt": "", "Response": ""}
        v[{"system": "System", "user": "Prompt", "assistant": "Response"}[m["role"]]] = m["content"]
    out.append(_execute(template, v, cut=True))
    return "".join(out)


# ----------------------------------------------------------------------------------------------------------
# The Modelfile
# ----------------------------------------------------------------------------------------------------------

def modelfile(tokenizer, gguf_name: str, system_prompt: str = "", temperature: float | None = None,
              top_p: float | None = None) -> tuple[str, Derived]:
    """(Modelfile text, what was derived). system_prompt (the one trained with) replaces the template's
    default; temperature and top_p default to the notebook chat's."""
    from ..ui.chat import ChatSession

    defaults = ChatSession.__dataclass_fields__
    temperature = defaults["temperature"].default if temperature is None else temperature
    top_p = defaults["top_p"].default if top_p is None else top_p
    d = derive(tokenizer)
    lines = ["# Ollama: ollama create NAME -f Modelfile, then ollama run NAME (run both in this folder).",
             f"FROM ./{gguf_name}"]
    if d.template is not None:
        lines.append(f'TEMPLATE """{d.template}"""')
    else:
        lines.insert(1, f"# No TEMPLATE: {d.note}; Ollama reads the chat template stored in the GGUF instead.")
    if d.note and d.template is not None:
        lines.insert(1, f"# Note: {d.note}.")
    system = system_prompt or d.system
    if system and d.template is not None and "{{ .System }}" in d.template:
        lines.append(f'SYSTEM """{system}"""')
    lines += [f'PARAMETER stop "{s}"' for s in d.stops]
    lines += [f"PARAMETER temperature {temperature:g}", f"PARAMETER top_p {top_p:g}"]
    return "\n".join(lines) + "\n", d


def parse_modelfile(text: str) -> dict:
    """{'from', 'template', 'system', 'stop': [...], 'parameters': {...}} of a Modelfile written here."""
    out: dict = {"template": None, "system": "", "stop": [], "parameters": {}}
    for m in re.finditer(r'^(FROM|TEMPLATE|SYSTEM|PARAMETER) (?:"""(.*?)"""|([^\n]*))$', text, re.S | re.M):
        key, value = m.group(1), m.group(2) if m.group(2) is not None else m.group(3)
        if key == "PARAMETER":
            name, _, v = value.partition(" ")
            if name == "stop":
                out["stop"].append(v.strip('"'))
            else:
                out["parameters"][name] = v
        else:
            out[key.lower()] = value
    return out



def write_modelfile(gguf_file, tokenizer_dir, system_prompt: str = "", progress=print):
    """`Modelfile` beside a GGUF, from the tokenizer in tokenizer_dir (the merged model's, which the GGUF
    embeds); returns its path."""
    from pathlib import Path

    from transformers import AutoTokenizer

    from ..fsutil import atomic_write_text

    gguf_file = Path(gguf_file)
    text, derived = modelfile(AutoTokenizer.from_pretrained(str(tokenizer_dir)), gguf_file.name, system_prompt)
    path = atomic_write_text(gguf_file.parent / "Modelfile", text)
    checked = ", ".join(f"{k} {'ok' if v else 'differs'}" for k, v in derived.checked.items())
    progress(f"Ollama Modelfile {path}: " + (f"TEMPLATE rendered like the tokenizer's chat template ({checked})"
                                                f"{'; ' + derived.note if derived.note else ''}."
                                                if derived.template else f"no TEMPLATE ({derived.note})."))
    return path
