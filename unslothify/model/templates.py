"""Chat templates: the model's own, or one of Unsloth's named templates where the tokenizer has none
(knob `chat_template`). Which one is in use, and why, is kept on the tokenizer and in each version's manifest."""

from __future__ import annotations

import copy

# auto on a tokenizer without a chat template: the first named template whose own special token is already in
# the vocabulary (its turns then cost one token each and need no new embeddings), else Unsloth's default.
TEMPLATE_BY_TOKEN = (("<|im_start|>", "chatml"), ("<|start_header_id|>", "llama-3"), ("[INST]", "mistral"))
DEFAULT_TEMPLATE = "chatml"  # get_chat_template's own default
TEMPLATE_NOTE = "unslothify_chat_template"  # tokenizer attribute: which template is in use, and why


def use_chat_template(tokenizer, choice: str, progress=print):
    """The tokenizer with the chat template the config asks for: 'auto' keeps the model's own and picks a
    named one (unsloth.chat_templates.get_chat_template) where there is none; a name applies that one.
    Which one is in use, and why, is said and kept on the tokenizer (a version's manifest records it)."""
    from ..knobs import ConfigError

    if choice == "auto" and getattr(tokenizer, "chat_template", None):
        setattr(tokenizer, TEMPLATE_NOTE, {"asked": choice, "used": "own", "why": "the model's own chat template"})
        return tokenizer
    from unsloth.chat_templates import CHAT_TEMPLATES, get_chat_template

    if choice == "auto":
        vocab = tokenizer.get_vocab()
        name, token = next(((n, t) for t, n in TEMPLATE_BY_TOKEN if t in vocab), (DEFAULT_TEMPLATE, None))
        why = (f"the tokenizer has no chat template; {name} chosen because its {token} token is in the vocabulary"
               if token else f"the tokenizer has no chat template and none of {', '.join(t for t, _ in TEMPLATE_BY_TOKEN)}; "
               f"{name} is Unsloth's default")
    elif choice in CHAT_TEMPLATES:
        name, why = choice, f"chat_template: {choice} was asked for"
    else:
        raise ConfigError(f"chat_template = {choice!r} is not valid; allowed: auto or one of "
                          f"{', '.join(sorted(CHAT_TEMPLATES))}.")
    # A copy: get_chat_template sets the template on the tokenizer it is given for some templates.
    tokenizer = get_chat_template(copy.deepcopy(tokenizer), chat_template=name)
    setattr(tokenizer, TEMPLATE_NOTE, {"asked": choice, "used": name, "why": why})
    progress(f"Chat template: {name} ({why}).")
    return tokenizer
