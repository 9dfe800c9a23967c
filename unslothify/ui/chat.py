"""Talking to a model: batched greedy answers (eval), streaming multi-turn chat (notebook, widget, REPL)."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from ..data.tokens import with_system
from ..model.generate import device_of, inference_mode, prompt_ids, stop_ids


@dataclass
class ChatSession:
    """A multi-turn conversation with one model; `send` streams the reply chunk by chunk."""

    model: object
    tokenizer: object
    system_prompt: str = ""
    temperature: float = 0.7
    top_p: float = 0.9
    max_new_tokens: int = 256
    history: list[dict] = field(default_factory=list)

    def clear(self):
        self.history.clear()

    def stream(self, message: str):
        """Yield the reply's text pieces as they are generated; the full reply joins the history."""
        from transformers import TextIteratorStreamer
        import torch

        messages = with_system([*self.history, {"role": "user", "content": message}], self.system_prompt)
        ids = torch.tensor([prompt_ids(self.tokenizer, messages)], device=device_of(self.model))
        streamer = TextIteratorStreamer(self.tokenizer, skip_prompt=True, skip_special_tokens=True,
                                        clean_up_tokenization_spaces=False)
        sample = self.temperature > 0
        kwargs = dict(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=self.max_new_tokens,
                      streamer=streamer, do_sample=sample, pad_token_id=self.tokenizer.pad_token_id,
                      eos_token_id=stop_ids(self.tokenizer, self.model))
        if sample:
            kwargs.update(temperature=self.temperature, top_p=self.top_p)
        pieces: list[str] = []
        errors: list[BaseException] = []

        def run():
            try:
                with inference_mode(self.model):
                    self.model.generate(**kwargs)
            except BaseException as e:  # surfaced in the caller's thread below
                errors.append(e)
                streamer.on_finalized_text("", stream_end=True)

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        for piece in streamer:
            pieces.append(piece)
            yield piece
        thread.join()
        if errors:
            raise errors[0]
        reply = "".join(pieces).strip()
        self.history += [{"role": "user", "content": message}, {"role": "assistant", "content": reply}]

    def send(self, message: str) -> str:
        return "".join(self.stream(message)).strip()


def print_stream(session: ChatSession, message: str) -> str:
    """Notebook helper: print the reply as it streams, return it."""
    pieces = []
    for piece in session.stream(message):
        print(piece, end="", flush=True)
        pieces.append(piece)
    print()
    return "".join(pieces).strip()


def repl(session: ChatSession, input_fn=input, output=print):
    """Terminal chat: /clear forgets the conversation, /exit (or Ctrl-D) leaves."""
    output("Chat. /clear starts over, /exit leaves.")
    while True:
        try:
            line = input_fn("you> ")
        except (EOFError, KeyboardInterrupt):
            output("")
            return
        line = line.strip()
        if not line:
            continue
        if line in ("/exit", "/quit"):
            return
        if line == "/clear":
            session.clear()
            output("(conversation cleared)")
            continue
        output("model> ", end="", flush=True) if output is print else None
        reply = []
        for piece in session.stream(line):
            reply.append(piece)
            if output is print:
                print(piece, end="", flush=True)
        if output is print:
            print()
        else:
            output("model> " + "".join(reply).strip())
