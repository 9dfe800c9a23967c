import pytest

from unslothify.ui.chat import ChatSession, repl
from unslothify.model.generate import answer_batch


@pytest.mark.slow
def test_batched_greedy_answers_are_deterministic(trained):
    _, ft, _ = trained
    questions = ["Who keeps the lighthouse on Varnholm island?", "What is 2 + 2?"]
    a = answer_batch(ft.model, ft.tokenizer, questions, max_new_tokens=24)
    b = answer_batch(ft.model, ft.tokenizer, questions, max_new_tokens=24)
    single = answer_batch(ft.model, ft.tokenizer, questions[:1], max_new_tokens=24, batch_size=1)
    assert len(a) == 2 and all(a) and a == b
    # left padding in 16-bit arithmetic may change a late token, never the start of the answer
    assert single[0].split()[:4] == a[0].split()[:4]


@pytest.mark.slow
def test_multi_turn_streaming_session(trained):
    _, ft, _ = trained
    session = ChatSession(ft.model, ft.tokenizer, temperature=0.0, max_new_tokens=20)
    pieces = list(session.stream("Who keeps the lighthouse on Varnholm island?"))
    assert len(pieces) > 1, "the reply arrives in pieces"
    assert session.history[-1]["content"] == "".join(pieces).strip()
    session.send("And what do they do there?")
    assert [m["role"] for m in session.history] == ["user", "assistant", "user", "assistant"]
    session.clear()
    assert session.history == []


@pytest.mark.slow
def test_terminal_repl(trained):
    _, ft, _ = trained
    inputs = iter(["Who keeps the lighthouse on Varnholm island?", "/clear", "/exit"])
    out = []
    session = ChatSession(ft.model, ft.tokenizer, temperature=0.0, max_new_tokens=16)
    repl(session, input_fn=lambda prompt: next(inputs), output=out.append)
    assert out[0].startswith("Chat.") and out[1].startswith("model> ") and len(out[1]) > len("model> ")
    assert "(conversation cleared)" in out and session.history == []
