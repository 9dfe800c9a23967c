"""Training data: read, validate, normalise, split, tokenise, describe.

Supported formats, detected per file from the keys of its records (the columns of a table):
  text               {"text": "..."}                                  loss on all of it
  alpaca             {"instruction", "input" (optional), "output"}    loss on the output
  prompt_completion  {"prompt", "completion"}                         loss on the completion
  question_answer    {"question", "answer"}                           loss on the answer
  messages           {"messages": [{"role", "content"}, ...]}          loss on assistant turns
  sharegpt           {"conversations": [{"from", "value"}, ...]}       loss on gpt turns

JSONL files are read here; JSON arrays, CSV, TSV, Parquet, saved datasets and Hub datasets by sources.py,
which hands its rows to items_from_rows like the JSONL reader does.

Every format except `text` becomes chat `messages` and is rendered with the model's own chat template.
"""

from __future__ import annotations

import json
import math
import random
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

# Keys any record may carry besides its format's own: provenance written by `augment`, or an id.
METADATA_KEYS = {"id", "kind", "source_line", "source"}

FORMAT_KEYS = {
    "messages": ({"messages"}, set()),
    "sharegpt": ({"conversations"}, set()),
    "alpaca": ({"instruction", "output"}, {"input", "system"}),
    "prompt_completion": ({"prompt", "completion"}, set()),
    "question_answer": ({"question", "answer"}, {"system"}),
    "text": ({"text"}, set()),
}
SHAREGPT_ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant",
                  "system": "system", "model": "assistant"}


class DataError(ValueError):
    """Bad training or eval data. The message names the file, the line, the field and what to do."""


@dataclass
class Item:
    """One normalised training record: chat messages, or plain text."""

    line: int
    source: str
    messages: list[dict] | None = None
    text: str | None = None
    kind: str = "original"
    source_line: int | None = None  # for augmented records: the line of the item they came from

    def to_record(self) -> dict:
        rec = {"messages": self.messages} if self.messages is not None else {"text": self.text}
        rec["kind"] = self.kind
        rec["source_line"] = self.source_line if self.source_line is not None else self.line
        return rec

    def key(self) -> str:
        return json.dumps(self.messages if self.messages is not None else self.text, sort_keys=True)


@dataclass
class LoadReport:
    path: str
    format: str
    n_read: int
    duplicates: list[int] = field(default_factory=list)  # lines dropped as repeats of an earlier line
    overlong: list[int] = field(default_factory=list)  # lines dropped as longer than max_seq_length


# ----------------------------------------------------------------------------------------------------------
# Reading JSONL. Lines are parsed here rather than by `datasets.load_dataset("json")` because pyarrow's
# reader reports neither the line nor the field of a bad record and silently unifies differing keys into
# nulls; a user's file deserves "line 17, field 'messages[1].role'". The validated records then become a
# `datasets.Dataset` for TRL.
# ----------------------------------------------------------------------------------------------------------

def read_jsonl(path: str | Path) -> list[tuple[int, dict]]:
    """[(line_number, record)] for every non-blank line; DataError on the first bad one."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: file not found.")
    raw = path.read_bytes()
    if not raw.strip():
        raise DataError(f"{path}: the file is empty; expected one JSON object per line (JSONL).")
    records = []
    lines = raw.split(b"\n")
    for number, chunk in enumerate(lines, start=1):
        try:
            line = chunk.decode("utf-8")
        except UnicodeDecodeError as e:
            raise DataError(f"{path}, line {number}: byte {e.start + 1} is not UTF-8 ({chunk[e.start:e.start + 1]!r}). "
                            "Save the file as UTF-8 (e.g. `iconv -f latin1 -t utf-8`).") from None
        line = line.strip().lstrip("\ufeff")
        if not line:
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as e:
            hint = _whole_file_hint(path, raw) if number == 1 or len(records) == 0 else ""
            raise DataError(f"{path}, line {number}, column {e.colno}: not valid JSON ({e.msg}). "
                            f"Each line must be one complete JSON object.{hint}") from None
        if not isinstance(record, dict):
            hint = _whole_file_hint(path, raw) if number == 1 else ""
            raise DataError(f"{path}, line {number}: expected a JSON object {{...}}, found "
                            f"{type(record).__name__}.{hint}")
        records.append((number, record))
    return records


def _whole_file_hint(path: Path, raw: bytes) -> str:
    """Name the likely real format of a file that is not JSONL at all."""
    try:
        whole = json.loads(raw.decode("utf-8", errors="replace"))
    except json.JSONDecodeError:
        whole = None
    if isinstance(whole, list):
        return (" This file is one JSON array, not JSON Lines: name it .json to have it read as an array "
                "(data: my_data.json).")
    if isinstance(whole, dict):
        return " This file is a single JSON document, not JSON Lines (one object per line)."
    head = raw[:200].decode("utf-8", errors="replace")
    if "," in head.split("\n")[0] and "{" not in head:
        return " It looks like CSV: name it .csv to have it read as a table with a header row (data: my_data.csv)."
    return ""


# ----------------------------------------------------------------------------------------------------------
# Format detection and normalisation
# ----------------------------------------------------------------------------------------------------------

def detect_format(record: dict, where: str) -> str:
    keys = set(record) - METADATA_KEYS
    for name, (required, optional) in FORMAT_KEYS.items():
        if required <= keys and keys <= required | optional:
            return name
    for name, (required, optional) in FORMAT_KEYS.items():
        if required <= keys:
            extra = sorted(keys - required - optional)
            raise DataError(f"{where}: unknown field {extra[0]!r} in a {name} record; allowed fields: "
                            f"{', '.join(sorted(required | optional | METADATA_KEYS))}. Remove or rename it.")
    overlap = [(len(req & keys), name, req) for name, (req, _) in FORMAT_KEYS.items()]
    best = max(overlap)
    if best[0]:
        missing = sorted(best[2] - keys)
        raise DataError(f"{where}: missing field {missing[0]!r} for the {best[1]} format "
                        f"(found fields: {', '.join(sorted(keys)) or 'none'}).")
    raise DataError(f"{where}: no known format in fields {sorted(keys) or '{}'}. Use one of: "
                    "text; instruction/input/output; prompt/completion; question/answer; messages; conversations.")


def _nonempty(value, where: str, name: str) -> str:
    if not isinstance(value, str):
        raise DataError(f"{where}: field {name!r} must be a string, found {type(value).__name__}.")
    if not value.strip():
        raise DataError(f"{where}: field {name!r} is empty. Fill it in or delete the line.")
    return value


def _check_chat(messages, where: str, name: str) -> list[dict]:
    if not isinstance(messages, list) or not messages:
        raise DataError(f"{where}: field {name!r} must be a non-empty list of messages.")
    out = []
    for i, m in enumerate(messages):
        here = f"{name}[{i}]"
        if not isinstance(m, dict):
            raise DataError(f"{where}: field {here!r} must be an object with 'role' and 'content'.")
        extra = sorted(set(m) - {"role", "content"})
        if extra:
            raise DataError(f"{where}: unknown field {here + '.' + extra[0]!r}; a message has only 'role' and 'content'.")
        if "role" not in m:
            raise DataError(f"{where}: missing field {here + '.role'!r}.")
        if "content" not in m:
            raise DataError(f"{where}: missing field {here + '.content'!r}.")
        role = m["role"]
        if role not in ("system", "user", "assistant"):
            raise DataError(f"{where}: field {here + '.role'!r} is {role!r}; use 'system', 'user' or 'assistant'.")
        out.append({"role": role, "content": _nonempty(m["content"], where, here + ".content")})
    roles = [m["role"] for m in out]
    body = roles[1:] if roles[0] == "system" else roles
    if "system" in body:
        raise DataError(f"{where}: field {name!r}: a system message may only come first.")
    for i, role in enumerate(body):
        expected = "user" if i % 2 == 0 else "assistant"
        if role != expected:
            at = i + (1 if roles[0] == "system" else 0)
            raise DataError(f"{where}: field {name}[{at}].role is {role!r} but {expected!r} was expected: turns must "
                            "alternate user, assistant, user, ... (after an optional system message).")
    if not body or body[-1] != "assistant":
        raise DataError(f"{where}: field {name!r} must end with an assistant message (the answer to learn).")
    return out


def normalise(record: dict, fmt: str, where: str) -> tuple[list[dict] | None, str | None]:
    """(messages, None) or (None, text) for one validated record."""
    if fmt == "text":
        return None, _nonempty(record["text"], where, "text")
    if fmt == "messages":
        return _check_chat(record["messages"], where, "messages"), None
    if fmt == "sharegpt":
        conv = record["conversations"]
        if not isinstance(conv, list) or not conv:
            raise DataError(f"{where}: field 'conversations' must be a non-empty list of turns.")
        messages = []
        for i, turn in enumerate(conv):
            here = f"conversations[{i}]"
            if not isinstance(turn, dict) or "from" not in turn or "value" not in turn:
                raise DataError(f"{where}: field {here!r} must be an object with 'from' and 'value'.")
            role = SHAREGPT_ROLES.get(turn["from"])
            if role is None:
                raise DataError(f"{where}: field {here + '.from'!r} is {turn['from']!r}; use 'human', 'gpt' or 'system'.")
            messages.append({"role": role, "content": turn["value"]})
        return _check_chat(messages, where, "conversations"), None
    if fmt == "alpaca":
        instruction = _nonempty(record["instruction"], where, "instruction")
        extra = record.get("input") or ""
        if not isinstance(extra, str):
            raise DataError(f"{where}: field 'input' must be a string, found {type(extra).__name__}.")
        user = instruction + ("\n\n" + extra if extra.strip() else "")
        messages = [{"role": "user", "content": user},
                    {"role": "assistant", "content": _nonempty(record["output"], where, "output")}]
        if record.get("system"):
            messages.insert(0, {"role": "system", "content": _nonempty(record["system"], where, "system")})
        return messages, None
    if fmt == "question_answer":
        messages = [{"role": "user", "content": _nonempty(record["question"], where, "question")},
                    {"role": "assistant", "content": _nonempty(record["answer"], where, "answer")}]
        if record.get("system"):
            messages.insert(0, {"role": "system", "content": _nonempty(record["system"], where, "system")})
        return messages, None
    if fmt == "prompt_completion":
        prompt, completion = record["prompt"], record["completion"]
        if isinstance(prompt, list) and isinstance(completion, list):  # TRL's conversational prompt-completion
            return _check_chat(prompt + completion, where, "prompt+completion"), None
        return [{"role": "user", "content": _nonempty(prompt, where, "prompt")},
                {"role": "assistant", "content": _nonempty(completion, where, "completion")}], None
    raise AssertionError(fmt)


def read_jsonl_items(path: str | Path, skip_duplicates: bool = True) -> tuple[list[Item], LoadReport]:
    """Read, validate and normalise one JSONL file. All-or-nothing: the first bad line raises DataError.
    (Other file types, folders and Hub datasets: unslothify/data/sources.py, which ends in items_from_rows.)"""
    path = Path(path)
    return items_from_rows(read_jsonl(path), str(path), "line", skip_duplicates)


def items_from_rows(rows: list[tuple[int, dict]], source: str, unit: str = "line",
                    skip_duplicates: bool = True) -> tuple[list[Item], LoadReport]:
    """Validate and normalise [(number, record)] read from `source`; errors name '<source>, <unit> <number>'."""
    fmt = None
    items: list[Item] = []
    seen: dict[str, int] = {}
    duplicates: list[int] = []
    for number, record in rows:
        where = f"{source}, {unit} {number}"
        this = detect_format(record, where)
        if fmt is None:
            fmt, first_line = this, number
        elif this != fmt:
            raise DataError(f"{where}: this record is in the {this} format but {unit} {first_line} set the file's "
                            f"format to {fmt}. Keep one format per file (split the file, or convert the records).")
        messages, text = normalise(record, fmt, where)
        kind = record.get("kind", "original")
        if not isinstance(kind, str):
            raise DataError(f"{where}: field 'kind' must be a string.")
        item = Item(line=number, source=source, messages=messages, text=text, kind=kind,
                    source_line=record.get("source_line"))
        key = item.key()
        if key in seen:
            if not skip_duplicates:
                raise DataError(f"{where}: duplicate of {unit} {seen[key]}. Remove it, or set skip_duplicates: true "
                                "to drop repeats with a warning.")
            duplicates.append(number)
            continue
        seen[key] = number
        items.append(item)
    report = LoadReport(source, fmt, len(rows), duplicates=duplicates)
    if duplicates:
        warnings.warn(f"{source}: dropped {len(duplicates)} duplicate item(s) at {unit}(s) {line_numbers(duplicates)}.",
                      stacklevel=3)
    return items, report


def line_numbers(numbers: list[int], most: int = 20) -> str:
    shown = ", ".join(map(str, numbers[:most]))
    return shown + (f" and {len(numbers) - most} more" if len(numbers) > most else "")


def split_items(items: list[Item], validation_split: float, seed: int) -> tuple[list[Item], list[Item]]:
    """Deterministic split: the same file, share and seed always give the same validation items."""
    if validation_split <= 0 or len(items) < 2:
        return list(items), []
    order = list(range(len(items)))
    random.Random(seed).shuffle(order)
    n_val = min(len(items) - 1, max(1, math.ceil(len(items) * validation_split)))
    val = sorted(order[:n_val])
    train = sorted(order[n_val:])
    return [items[i] for i in train], [items[i] for i in val]


def items_from_records(records: Iterable[dict], source: str) -> list[Item]:
    """Prepared-split records (written by prepare/augment) back into Items."""
    items = []
    for i, rec in enumerate(records, start=1):
        items.append(Item(line=i, source=source, messages=rec.get("messages"), text=rec.get("text"),
                          kind=rec.get("kind", "original"), source_line=rec.get("source_line")))
    return items


# ----------------------------------------------------------------------------------------------------------
# Tokenisation. TRL's SFTTrainer infers one dataset type from its first row, but augmentation mixes chat
# items (loss on answers) with plain statements (loss on all), and we need token lengths before training
# to report and skip over-long items. So items are tokenised here, with the model's chat template, into
# TRL's own processed form (input_ids + completion_mask); TRL still builds labels, truncates and packs.
# ----------------------------------------------------------------------------------------------------------


