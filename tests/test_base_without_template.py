"""A base model whose tokenizer has no chat template (as unsloth/mistral-7b-v0.3-bnb-4bit or GEITje 7B): the
embedded model with its template removed. chat_template: auto picks one and says so; training, chat, eval and
every export run; the exports carry the template (merged tokenizer, GGUF, Ollama Modelfile) and a model card."""

import json
import shutil

import pytest

from conftest import INVENTED
from secrets_scan import FAKE_TOKEN, files_containing_token
from unslothify.data.tokens import with_system

TWO_TURNS = [{"role": "user", "content": "Who keeps the lighthouse on Varnholm island?"},
             {"role": "assistant", "content": "Edda Lindqvist."}, {"role": "user", "content": "Since when?"}]


@pytest.fixture(scope="module")
def bare_run(tmp_path_factory):
    """(cfg, session, version, what was said) for a short training of the template-less base."""
    from unslothify.config import load_config
    from unslothify.model.embedded import EMBEDDED_NAME, embedded_checkpoint
    from unslothify.data.prepare import prepare
    from unslothify.train.session import FineTune

    work = tmp_path_factory.mktemp("bare")
    base = work / "base" / EMBEDDED_NAME  # the same name, so the embedded tokenizer fix still applies
    base.mkdir(parents=True)
    for f in embedded_checkpoint().iterdir():
        if f.name == "model.safetensors":
            (base / f.name).symlink_to(f)
        elif f.name != "chat_template.jinja":
            shutil.copy2(f, base / f.name)
    config = json.loads((base / "tokenizer_config.json").read_text())
    config.pop("chat_template", None)
    (base / "tokenizer_config.json").write_text(json.dumps(config))
    data = work / "train.jsonl"
    data.write_text("".join((INVENTED / "train.jsonl").read_text().splitlines(keepends=True)[:8]))
    questions = work / "questions.jsonl"
    questions.write_text("".join((INVENTED / "questions.jsonl").read_text().splitlines(keepends=True)[:2]))
    cfg = load_config(None, model=str(base), data=str(data), eval_questions=str(questions), general_questions="",
                      output_dir=str(work / "run"), num_train_epochs=1, per_device_train_batch_size=4,
                      validation_split=0.25, max_new_tokens=12, augment={"enabled": False})
    said = []
    prepare(cfg, progress=said.append, plot=False)
    ft = FineTune.start(cfg, progress=said.append)
    version = ft.train()
    return cfg, ft, version, said


@pytest.mark.slow
def test_auto_chooses_a_template_says_so_and_records_it(bare_run):
    from transformers import AutoTokenizer

    cfg, ft, version, said = bare_run
    assert AutoTokenizer.from_pretrained(cfg.model).chat_template is None, "the base really has none"
    chosen = [s for s in said if s.startswith("Chat template:")]
    assert chosen and "chatml" in chosen[0] and "no chat template" in chosen[0]
    assert version.manifest["chat_template"]["used"] == "chatml"
    assert AutoTokenizer.from_pretrained(version.path).chat_template, "saved with the version"


@pytest.mark.slow
def test_chat_and_eval_use_the_versions_template(bare_run):
    from unslothify.ui.chat import ChatSession
    from unslothify.score.questions import base_vs_tuned
    from unslothify.model.load import load_for_inference
    from unslothify.export.ollama import chat_text

    cfg, ft, version, _ = bare_run
    model, tokenizer, _ = load_for_inference(str(version.path), cfg)
    assert chat_text(tokenizer, TWO_TURNS) == chat_text(ft.tokenizer, TWO_TURNS)
    session = ChatSession(model, tokenizer, temperature=0.0, max_new_tokens=8)
    assert session.send("Who keeps the lighthouse on Varnholm island?")
    summary, details = base_vs_tuned(model, tokenizer, cfg, version_name=version.name)
    assert summary["n"] == 2 and {"base_recall", "tuned_recall"} <= set(summary)
    assert all(row["answer"] is not None for row in details["recall"])


@pytest.mark.slow
def test_exports_render_the_prompt_the_trainer_saw_with_cards_and_a_modelfile(bare_run, monkeypatch):
    from huggingface_hub import ModelCard
    from transformers import AutoTokenizer

    from unslothify.errors import ExportError
    from unslothify.score.questions import base_vs_tuned
    from unslothify.export.stage import export_all
    from unslothify.export.hub import push_to_hub
    from unslothify.model.embedded import EMBEDDED_HUB_ID
    from unslothify.model.load import load_for_inference
    from unslothify.export.ollama import chat_text, parse_modelfile, render

    cfg, ft, version, _ = bare_run
    if not (ft.run.root / "eval" / f"{version.name}.json").exists():  # scored by the test before, if it ran
        model, tokenizer, _ = load_for_inference(str(version.path), cfg)
        base_vs_tuned(model, tokenizer, cfg, version_name=version.name)
    data = ft.training_data(cfg)
    train_ds, train_items = data.train, data.items
    results = export_all(ft.model, ft.tokenizer, version, cfg, formats=("adapter", "merged", "gguf"))
    assert results["merge_check"].ok

    exported = AutoTokenizer.from_pretrained(results["merged"])
    item = next(i for i in train_items if i.messages)
    ids = exported.apply_chat_template(with_system(item.messages, cfg.system_prompt), tokenize=True,
                                       return_dict=True)["input_ids"]
    assert list(ids) == list(train_ds[train_items.index(item)]["input_ids"]), "token for token what was trained"

    modelfile = results["gguf"].parent / "Modelfile"
    mf = parse_modelfile(modelfile.read_text())
    assert mf["from"] == f"./{results['gguf'].name}"
    assert render(mf["template"], TWO_TURNS, mf["system"]) == chat_text(exported, TWO_TURNS)
    assert "<|im_end|>" in mf["stop"]
    llama_cpp_text = llama_cpp_rendering(results["gguf"], [{"role": "system", "content": "Be brief."}, *TWO_TURNS])
    if llama_cpp_text is not None:  # llama.cpp's own template code, on the template stored in the GGUF
        assert render(mf["template"], [{"role": "system", "content": "Be brief."}, *TWO_TURNS]) == llama_cpp_text

    for kind, folder, library in (("merged", results["merged"], "transformers"), ("adapter", results["adapter"], "peft")):
        card = ModelCard.load(folder / "README.md")
        assert card.data.base_model == EMBEDDED_HUB_ID and card.data.library_name == library
        assert "unslothify" in card.data.tags and card.data.license == "apache-2.0", "the base's license"
        text = card.text
        assert version.name in text and version.manifest["data_sha256"] in text and "chatml" in text
        assert "ollama create" in text and "from_pretrained" in text and "learning_rate:" in text
        if kind == "merged":
            assert "top-1 token agreement" in text and results["gguf"].name in text
    assert "| recall on 2 held-out questions" in ModelCard.load(results["merged"] / "README.md").text

    # A Hub push writes the card again, its snippets naming the repo (the push itself fails: no network here).
    monkeypatch.setenv("HF_TOKEN", FAKE_TOKEN)
    with pytest.raises(ExportError, match="Push of"):
        push_to_hub(results["merged"], "someone/varnholm-model")
    card = ModelCard.load(results["merged"] / "README.md")
    assert 'from_pretrained("someone/varnholm-model")' in card.text and card.data.base_model == EMBEDDED_HUB_ID
    assert files_containing_token(ft.run.root) == []


def llama_cpp_rendering(gguf_file, messages):
    """The prompt llama.cpp builds from the chat template stored in the GGUF (llama_chat_apply_template), or
    None without llama-cpp-python."""
    try:
        import llama_cpp
    except ImportError:
        return None
    from gguf import GGUFReader

    template = GGUFReader(str(gguf_file)).fields["tokenizer.chat_template"].contents()
    chat = (llama_cpp.llama_chat_message * len(messages))(
        *[llama_cpp.llama_chat_message(m["role"].encode(), m["content"].encode()) for m in messages])
    buf = (llama_cpp.ctypes.c_char * 4096)()
    n = llama_cpp.llama_chat_apply_template(template.encode(), chat, len(messages), True, buf, len(buf))
    assert n > 0, "llama.cpp knows this template"
    return bytes(buf[:n]).decode()
