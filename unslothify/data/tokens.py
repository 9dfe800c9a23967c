"""Items as token ids: the chat template rendered, the answer tokens masked for the loss, token lengths."""

from __future__ import annotations

import warnings
from .items import DataError, Item, line_numbers


def with_system(messages: list[dict], system_prompt: str) -> list[dict]:
    if system_prompt and messages[0]["role"] != "system":
        return [{"role": "system", "content": system_prompt}, *messages]
    return messages


def _chat_ids(tokenizer, messages, add_generation_prompt=False) -> list[int]:
    out = tokenizer.apply_chat_template(messages, tokenize=True, add_generation_prompt=add_generation_prompt,
                                        return_dict=True)
    return list(out["input_ids"])


def _common_prefix(a: list[int], b: list[int]) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


def tokenize_item(tokenizer, item: Item, system_prompt: str = "") -> dict:
    """{'input_ids', 'completion_mask'}: mask 1 on every assistant answer (chat) or on everything (text)."""
    if item.text is not None:
        ids = list(tokenizer(item.text)["input_ids"])
        if tokenizer.eos_token_id is not None and (not ids or ids[-1] != tokenizer.eos_token_id):
            ids.append(tokenizer.eos_token_id)
        return {"input_ids": ids, "completion_mask": [1] * len(ids)}
    messages = with_system(item.messages, system_prompt)
    full = _chat_ids(tokenizer, messages)
    mask = [0] * len(full)
    for i, m in enumerate(messages):
        if m["role"] != "assistant":
            continue
        # The answer's tokens lie between the rendered prefix-with-generation-prompt and the rendered
        # prefix-with-answer; templates that render earlier turns differently (e.g. Mistral moving the
        # system prompt) fall back to where the two renderings diverge, as TRL does.
        before = _chat_ids(tokenizer, messages[:i], add_generation_prompt=True)
        upto = full if i == len(messages) - 1 else _chat_ids(tokenizer, messages[: i + 1])
        start = _common_prefix(before, full)
        end = _common_prefix(upto, full) if i < len(messages) - 1 else len(full)
        for j in range(start, end):
            mask[j] = 1
    return {"input_ids": full, "completion_mask": mask}


def tokenize_items(tokenizer, items: list[Item], max_seq_length: int, skip_overlong: bool = True,
                   system_prompt: str = "") -> tuple[list[dict], list[Item], list[int], list[int]]:
    """(rows, kept items, lengths of all items, lines dropped as over-long).

    Over-long items are dropped with a warning (skip_overlong) or raise DataError."""
    rows, kept, lengths, overlong = [], [], [], []
    for item in items:
        row = tokenize_item(tokenizer, item, system_prompt)
        n = len(row["input_ids"])
        lengths.append(n)
        if n > max_seq_length:
            if not skip_overlong:
                raise DataError(f"{item.source}, line {item.line}: {n} tokens, longer than max_seq_length = "
                                f"{max_seq_length}. Shorten it, raise max_seq_length, or set skip_overlong: true.")
            overlong.append(item.line)
            continue
        rows.append({**row, "kind": item.kind, "source_line": item.source_line or item.line})
        kept.append(item)
    if overlong:
        warnings.warn(f"{items[0].source}: dropped {len(overlong)} item(s) longer than max_seq_length = "
                      f"{max_seq_length} tokens, at line(s) {line_numbers(overlong)}.", stacklevel=2)
    return rows, kept, lengths, overlong


def to_dataset(rows: list[dict]):
    from datasets import Dataset

    return Dataset.from_list([{"input_ids": r["input_ids"], "completion_mask": r["completion_mask"]} for r in rows])


def length_stats(lengths: list[int]) -> dict:
    if not lengths:
        return {"n": 0}
    s = sorted(lengths)

    def pct(p):
        return s[min(len(s) - 1, int(round(p / 100 * (len(s) - 1))))]

    return {"n": len(s), "min": s[0], "median": pct(50), "p90": pct(90), "p99": pct(99), "max": s[-1],
            "mean": round(sum(s) / len(s), 1), "total": sum(s)}
