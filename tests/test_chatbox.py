"""The chat box in Python: a question arrives as the message the browser sends (chat_input.js), is
acknowledged at once, and is answered word for word; clear starts over. The browser side: test_browser.py."""

import pytest


@pytest.mark.slow
def test_chat_box_answers_the_text_it_was_sent_and_acknowledges_it(trained):
    from unslothify.ui.chat import ChatSession
    from unslothify.ui.chatbox import ChatBox

    _, ft, _ = trained
    box = ChatBox(ChatSession(ft.model, ft.tokenizer, max_new_tokens=16))
    box.temperature.value = 0.0
    acks = []
    box.input.send = acks.append  # what the kernel sends back to the browser
    question = "Who keeps the lighthouse on Varnholm island?"
    box._on_message(box.input, {"type": "ask", "text": question, "n": 1}, [])
    assert acks == [{"type": "ack", "n": 1}]
    assert box.session.history[0] == {"role": "user", "content": question}
    reply = box.session.history[1]["content"]
    assert reply and "Varnholm" in box.log.value and reply.split()[0] in box.log.value
    box.send("Thanks!")
    assert len(box.session.history) == 4 and box.session.max_new_tokens == 16
    box._on_message(box.input, {"type": "clear"}, [])
    assert box.session.history == [] and "No messages yet" in box.log.value


def test_chat_input_is_an_anywidget_with_its_browser_code():
    from unslothify.ui.chatbox import chat_input_class

    row = chat_input_class()(placeholder="Ask")
    esm = row._esm if isinstance(row._esm, str) else open(row._esm).read()
    assert 'model.send({ type: "ask", text: text, n: asked })' in esm and "Queued" in esm
