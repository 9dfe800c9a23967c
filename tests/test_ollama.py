"""The Ollama Modelfile: its TEMPLATE, rendered as Ollama renders it, gives the prompt the tokenizer's chat
template gives (the embedded model's own, and Unsloth's named templates on a tokenizer that had none)."""

import pytest

from unslothify.data.tokens import with_system
from unslothify.export.ollama import chat_text, modelfile, parse_modelfile, render

TWO_TURNS = [{"role": "user", "content": "Who keeps the lighthouse?"}, {"role": "assistant", "content": "Edda."},
             {"role": "user", "content": "Since when?"}]


@pytest.fixture(scope="module")
def bare_tokenizer(tokenizer):
    """The embedded tokenizer with its chat template removed, as a base model's comes."""
    import copy

    bare = copy.deepcopy(tokenizer)
    bare.chat_template = None
    return bare


def check_modelfile(tok, system_prompt=""):
    text, derived = modelfile(tok, "v001.Q8_0.gguf", system_prompt)
    mf = parse_modelfile(text)
    assert mf["from"] == "./v001.Q8_0.gguf" and mf["template"], text
    for messages in (TWO_TURNS, [{"role": "system", "content": "Answer in one word."}, *TWO_TURNS]):
        # what training and chat render: the config's system prompt where an item has none
        assert render(mf["template"], messages, mf["system"]) == chat_text(tok, with_system(messages, system_prompt)), text
    assert tok.eos_token in mf["stop"]
    return mf, text


def test_the_embedded_models_own_template(tokenizer):
    mf, text = check_modelfile(tokenizer)
    assert mf["system"].startswith("You are a helpful AI assistant named SmolLM"), "its default system prompt"
    assert mf["stop"] == ["<|im_end|>", "<|im_start|>"]
    assert mf["parameters"] == {"temperature": "0.7", "top_p": "0.9"}, "the notebook chat's sampling"
    assert render(mf["template"], TWO_TURNS, mf["system"]) == tokenizer.apply_chat_template(
        TWO_TURNS, tokenize=False, add_generation_prompt=True), "the literal text, two turns"


def test_the_system_prompt_trained_with_replaces_the_default(tokenizer):
    mf, _ = check_modelfile(tokenizer, system_prompt="You know Swedish cooking.")
    assert mf["system"] == "You know Swedish cooking."


@pytest.mark.parametrize("name", ["chatml", "llama-3", "alpaca", "zephyr", "phi-3"])
def test_named_templates_on_a_tokenizer_without_one(bare_tokenizer, name):
    from unslothify.model.templates import use_chat_template

    notes = []
    tok = use_chat_template(bare_tokenizer, name, notes.append)
    assert notes == [f"Chat template: {name} (chat_template: {name} was asked for)."]
    check_modelfile(tok)


def test_a_template_that_places_the_system_prompt_elsewhere_keeps_its_turns(bare_tokenizer):
    """Unsloth's mistral template puts the system prompt inside the first user turn; Ollama's
    System/Prompt/Response template cannot, so the Modelfile keeps the turns and says so."""
    from unslothify.model.templates import use_chat_template

    tok = use_chat_template(bare_tokenizer, "mistral", lambda _: None)
    text, derived = modelfile(tok, "m.gguf")
    mf = parse_modelfile(text)
    assert render(mf["template"], TWO_TURNS, mf["system"]) == chat_text(tok, TWO_TURNS)
    assert "{{ .System }}" not in mf["template"] and "system part" in text


def test_auto_picks_a_template_by_the_vocabulary_and_says_so(bare_tokenizer, tokenizer):
    from unslothify.model.templates import TEMPLATE_NOTE, use_chat_template

    notes = []
    assert use_chat_template(tokenizer, "auto", notes.append) is tokenizer and notes == [], "its own is kept"
    tok = use_chat_template(bare_tokenizer, "auto", notes.append)
    assert getattr(tok, TEMPLATE_NOTE)["used"] == "chatml"
    assert notes == ["Chat template: chatml (the tokenizer has no chat template; chatml chosen because its "
                     "<|im_start|> token is in the vocabulary)."]


def test_an_unknown_template_name_lists_the_known_ones(bare_tokenizer):
    from unslothify.knobs import ConfigError
    from unslothify.model.templates import use_chat_template

    with pytest.raises(ConfigError, match="chat_template = 'chatgpt' is not valid; allowed: auto or one of .*chatml"):
        use_chat_template(bare_tokenizer, "chatgpt")


def test_the_renderer_refuses_what_it_does_not_know():
    with pytest.raises(ValueError, match="range"):
        render("{{ range .Messages }}{{ .Content }}{{ end }}", TWO_TURNS)
