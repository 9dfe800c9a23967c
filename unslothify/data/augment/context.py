"""What an augmentation kind works with: the training split, the questions already taken, the rejects,
a model to generate with (loaded on first use), and where its records go."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from ..items import Item
from .checks import Rejects, answer_text, check_answer_text, names, norm_question, single_turn, user_text


@dataclass
class Context:
    cfg: Any
    train: list[Item]
    validation: list[Item]
    progress: Callable = print
    # generator("model") is the model in use; generator("some/hub-id" or a folder) another one. Each returns
    # (model, tokenizer, description) and is loaded once, when a kind first asks.
    generator: Callable[[str], tuple] | None = None
    rejects: Rejects = field(default_factory=Rejects)
    details: dict = field(default_factory=dict)  # per-kind notes for the report (timings, counts)
    existing: set[str] = field(default_factory=set)  # normalised questions of the data and of kept variants
    _by_line: dict[int, list[Item]] = field(default_factory=dict)
    _extra: list[Item] = field(default_factory=list)

    def __post_init__(self):
        for item in [*self.train, *self.validation]:
            q = user_text(item)
            if q:
                self.existing.add(norm_question(q))

    @property
    def chat_items(self) -> list[Item]:
        """Single-turn chat items: the ones a question/answer kind can rework (multi-turn ones are skipped)."""
        return [i for i in self.train if single_turn(i)]

    @property
    def multi_turn_skipped(self) -> int:
        return sum(1 for i in self.train if i.messages is not None and not single_turn(i))

    def add(self, src: Item, kind: str, messages: list[dict] | None = None, text: str | None = None) -> Item:
        """A record made from a training item; records are written grouped by the item they came from."""
        line = src.source_line if src.source_line is not None else src.line
        item = Item(line=0, source=str(self.cfg.data), messages=messages, text=text, kind=kind, source_line=line)
        self._by_line.setdefault(line, []).append(item)
        return item

    def checked(self, kind: str, text: str, src: Item, facts: str, seen: set[str] | None = None) -> bool:
        """Whether a generated answer-side text made from src keeps the facts of `facts` (its names and
        numbers) and adds none (check_answer_text), and is not one of `seen` (texts already trained, which it
        joins); a rejected one is counted under kind with the reason."""
        q = user_text(src)
        reason = check_answer_text(text, q + " " + answer_text(src), tuple(sorted(names(facts))), keep_numbers=facts)
        if reason is None and seen is not None and text in seen:
            reason = "copy"
        if reason:
            self.rejects.add(kind, reason, text)
            return False
        if seen is not None:
            seen.add(text)
        return True

    def add_standalone(self, item: Item) -> Item:
        """A record not made from a training item (replay): written after the others, its source its own."""
        self._extra.append(item)
        return item

    def added(self) -> list[Item]:
        """Every record, numbered from 1: per source item in file order (so the first rows show each kind),
        then the standalone ones."""
        items = [it for line in sorted(self._by_line) for it in self._by_line[line]] + self._extra
        for n, it in enumerate(items, start=1):
            it.line = n
        return items
