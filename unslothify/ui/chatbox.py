"""The notebook's chat box: a streaming log and an input row that sends the submitted text, queued while cells run."""

from __future__ import annotations

from pathlib import Path


def chat_input_class():
    """The input row as an anywidget (its own browser code, chat_input.js): the text goes to the kernel in
    the message that submits it."""
    import anywidget
    import traitlets

    here = Path(__file__).parent

    class ChatInput(anywidget.AnyWidget):
        _esm = here / "chat_input.js"
        _css = here / "chat_input.css"
        placeholder = traitlets.Unicode("Ask a question ...").tag(sync=True)

    return ChatInput


class ChatBox:
    """A chat box: input, send, clear, multi-turn history, temperature / top_p / max_new_tokens. A question
    asked while cells run waits, said so under the box, and is answered when they finish, word for word as
    typed."""

    def __init__(self, session, placeholder: str = "Ask about Swedish meatballs ..."):
        import ipywidgets as w

        self.session = session
        self.log = w.HTML(layout=w.Layout(width="760px", min_height="120px", border="1px solid #ddd", padding="6px"))
        self.input = chat_input_class()(placeholder=placeholder)
        self.input.on_msg(self._on_message)
        style = {"description_width": "100px"}  # room for "temperature"
        self.temperature = w.FloatSlider(value=session.temperature, min=0.0, max=1.5, step=0.05,
                                         description="temperature", style=style)
        self.top_p = w.FloatSlider(value=session.top_p, min=0.1, max=1.0, step=0.05, description="top_p",
                                   style=style)
        self.max_new_tokens = w.IntSlider(value=session.max_new_tokens, min=16, max=1024, step=16,
                                          description="max tokens", style=style)
        self.box = w.VBox([self.log, self.input, w.HBox([self.temperature, self.top_p, self.max_new_tokens])])
        self._render()

    def _on_message(self, _widget, content, _buffers):
        """What the input row sends: {'type': 'ask', 'text', 'n'} or {'type': 'clear'}."""
        if content.get("type") == "ask":
            self.input.send({"type": "ack", "n": content.get("n", 0)})  # the row stops saying it is queued
            self.send(content.get("text", ""))
        elif content.get("type") == "clear":
            self.clear()

    def send(self, message: str) -> str:
        """Ask one question (as typed) and stream the reply into the log; returns the reply."""
        message = (message or "").strip()
        if not message:
            return ""
        self.session.temperature = self.temperature.value
        self.session.top_p = self.top_p.value
        self.session.max_new_tokens = self.max_new_tokens.value
        partial = []
        for piece in self.session.stream(message):
            partial.append(piece)
            self._render(pending=(message, "".join(partial)))
        self._render()
        return self.session.history[-1]["content"]

    def clear(self):
        self.session.clear()
        self._render()

    def _render(self, pending=None):
        import html

        turns = list(self.session.history)
        if pending:
            turns += [{"role": "user", "content": pending[0]}, {"role": "assistant", "content": pending[1] + " ▌"}]
        parts = []
        for t in turns:
            who, color = ("You", "#3a7ca5") if t["role"] == "user" else ("Model", "#27ae60")
            parts.append(f"<div><b style='color:{color}'>{who}:</b> {html.escape(t['content'])}</div>")
        self.log.value = "".join(parts) or "<i style='color:#999'>No messages yet.</i>"

    def _ipython_display_(self):
        from IPython.display import display

        display(self.box)
