import pytest


@pytest.mark.slow
def test_chat_box_sends_streams_and_clears(trained):
    from unslothify.chat import ChatSession
    from unslothify.widgets import ChatBox

    _, ft, _ = trained
    box = ChatBox(ChatSession(ft.model, ft.tokenizer, max_new_tokens=16))
    box.temperature.value = 0.0
    box.input.value = "Who keeps the lighthouse on Varnholm island?"
    reply = box.send()
    assert reply and box.input.value == ""
    assert "Varnholm" in box.log.value and reply.split()[0] in box.log.value
    box.send("Thanks!")
    assert len(box.session.history) == 4 and box.session.max_new_tokens == 16
    box.clear()
    assert box.session.history == [] and "No messages yet" in box.log.value
