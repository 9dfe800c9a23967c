"""Training data the way users have it: `data:` names a JSONL, JSON (an array), CSV, TSV or Parquet file, a
folder written by `datasets.save_to_disk`, a local folder laid out like a Hub dataset repository, or a Hub
dataset id, each with an optional split after a colon (`owner/name:train`, `my_folder:validation`).

Everything but JSONL is read by `datasets` (JSONL keeps its own reader in data.py, which names the line and
field of a bad record). Columns map to the formats by name (question/answer, instruction/output,
prompt/completion, messages, text, ...) or through the `columns:` knob ({their column: our field}); the
rows then go through the same validation as JSONL lines, and errors name the file, the row and the column.

    items, report = load_items(cfg.data, cfg.skip_duplicates, cfg.columns)
    fingerprint(cfg.data)      # SHA-256 of the file (of a folder's files; of the loaded rows for a Hub id)
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

from .items import DataError, FORMAT_KEYS, METADATA_KEYS, items_from_rows, read_jsonl

# File suffix -> the `datasets` builder that reads it (and its options).
FILE_KINDS = {".jsonl": "jsonl", ".json": "json", ".csv": "csv", ".tsv": "tsv", ".parquet": "parquet"}
# Fields a column may be mapped to: every format's own, plus the metadata any record may carry.
FIELDS = sorted({f for req, opt in FORMAT_KEYS.values() for f in req | opt} | METADATA_KEYS)
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
SPLIT = re.compile(r"^(?P<base>.+):(?P<split>[A-Za-z_][\w.\-\[\]%]*)$")


@dataclass
class Source:
    kind: str  # jsonl, json, csv, tsv, parquet, disk (save_to_disk folder), hub (Hub id or a repo-like folder)
    where: str  # the path or id, as errors name it
    split: str | None = None

    @property
    def local(self) -> bool:
        return self.kind != "hub" or Path(self.where).is_dir()


def parse(spec: str) -> Source:
    """What `data:` names. A path that exists wins; then `base:split`; then a Hub id `owner/name`."""
    spec = str(spec)
    base, split = spec, None
    m = SPLIT.match(spec)
    if not Path(spec).exists() and m and (Path(m["base"]).exists() or HUB_ID.match(m["base"])):
        base, split = m["base"], m["split"]
    path = Path(base)
    if path.is_dir():
        saved = (path / "dataset_info.json").exists() or (path / "dataset_dict.json").exists()
        return Source("disk" if saved else "hub", base, split)
    if path.exists():
        # An unknown suffix is read as JSONL, as every data file was before other types were accepted.
        return Source(FILE_KINDS.get(path.suffix.lower(), "jsonl"), base, split)
    if HUB_ID.match(base) and path.suffix.lower() not in FILE_KINDS:
        return Source("hub", base, split)
    raise DataError(f"{spec}: file not found.")


# ----------------------------------------------------------------------------------------------------------
# Reading rows
# ----------------------------------------------------------------------------------------------------------

def _check_utf8(path: Path):
    """pandas and pyarrow name neither the line nor the byte of a non-UTF-8 text file; this does."""
    for number, chunk in enumerate(path.read_bytes().split(b"\n"), start=1):
        try:
            chunk.decode("utf-8")
        except UnicodeDecodeError as e:
            raise DataError(f"{path}, line {number}: byte {e.start + 1} is not UTF-8 "
                            f"({chunk[e.start:e.start + 1]!r}). Save the file as UTF-8 "
                            f"(e.g. `iconv -f latin1 -t utf-8`).") from None


def _first_line(e: BaseException) -> str:
    cause = e
    while cause.__cause__ is not None or cause.__context__ is not None:  # the reader's own message is deepest
        cause = cause.__cause__ or cause.__context__
    text = (str(cause).strip() or type(cause).__name__).splitlines()[0]
    return text[:300]


def _pick_split(ds, src: Source):
    """A Dataset from a Dataset or DatasetDict, by src.split (default: 'train', or the only split)."""
    from datasets import DatasetDict

    if not isinstance(ds, DatasetDict):
        return ds
    split = src.split or ("train" if "train" in ds or len(ds) != 1 else next(iter(ds)))
    if split not in ds:
        raise DataError(f"{src.where}: no split {split!r}; it has {', '.join(ds)}. Name one after a colon "
                        f"({src.where}:{next(iter(ds))}).")
    return ds[split]


def _load_dataset(src: Source):
    """The rows of a non-JSONL source as a `datasets.Dataset`."""
    import datasets

    if src.kind == "disk":
        try:
            return _pick_split(datasets.load_from_disk(src.where), src)
        except DataError:
            raise
        except Exception as e:
            raise DataError(f"{src.where}: not a readable datasets folder ({_first_line(e)}).") from None
    if src.kind == "hub":
        return _load_hub(src)
    path = Path(src.where)
    if not path.stat().st_size:
        raise DataError(f"{path}: the file is empty.")
    if src.kind in ("csv", "tsv", "json"):
        _check_utf8(path)
    builder, options = {"csv": ("csv", {}), "tsv": ("csv", {"sep": "\t"}), "json": ("json", {}),
                        "parquet": ("parquet", {})}[src.kind]
    # A throwaway cache: a local file is read once per prepare, and nothing is left in ~/.cache.
    with tempfile.TemporaryDirectory() as cache:
        try:
            ds = datasets.load_dataset(builder, data_files=str(path), split="train", cache_dir=cache,
                                       keep_in_memory=True, **options)
        except Exception as e:
            raise DataError(f"{path}: could not be read as {src.kind.upper()} ({_first_line(e)}).") from None
        return ds


@contextlib.contextmanager
def _quiet():
    """The libraries' own log lines (huggingface_hub's retries, datasets' 'Failed to read file') off while a
    source is read: they would bury the one line that says what happened, which the DataError carries."""
    loggers = [logging.getLogger(name) for name in ("huggingface_hub", "datasets")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def _load_hub(src: Source):
    """`datasets.load_dataset(id, split=...)`: a Hub dataset, or a local folder laid out like one (the same
    call; the tests use such a folder, as nothing here reaches the Hub)."""
    import datasets

    try:
        return datasets.load_dataset(src.where, split=src.split or "train")
    except ValueError as e:
        if "split" in str(e).lower():
            raise DataError(f"{src.where}: {_first_line(e)}") from None
        raise DataError(f"{src.where}: could not be loaded as a dataset ({_first_line(e)}).") from None
    except datasets.exceptions.DatasetNotFoundError as e:  # the Hub answered: no such (visible) dataset
        raise DataError(f"{src.where}: no such dataset on the Hugging Face Hub, or it is private or gated (log in "
                        f"with `hf auth login`) ({_first_line(e)}).") from None
    except (ConnectionError, OSError) as e:
        if src.local:
            raise DataError(f"{src.where}: could not be loaded as a dataset ({_first_line(e)}).") from None
        raise DataError(f"{src.where}: not a local file or folder, and the Hugging Face Hub could not be reached "
                        f"to load it as a dataset ({type(e).__name__}); check the id and the network, or point "
                        f"data: at a local copy.") from None
    except Exception as e:
        raise DataError(f"{src.where}: could not be loaded as a dataset ({type(e).__name__}: "
                        f"{_first_line(e)}).") from None


def _drop_nulls(value):
    """Arrow unifies the keys of all rows, so a key one row lacks is null there: drop it again, so that each
    record has the keys it was written with (and a wrong one is named at its own row)."""
    if isinstance(value, dict):
        return {k: _drop_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_drop_nulls(v) for v in value]
    return value


def read_rows(src: Source) -> tuple[list[tuple[int, dict]], list[str]]:
    """([(row number from 1, record)], column names) of a non-JSONL source."""
    import datasets

    bars = datasets.is_progress_bar_enabled()
    datasets.disable_progress_bars()  # a bar per small file read is noise in a notebook cell
    try:
        with _quiet():
            ds = _load_dataset(src)
    finally:
        if bars:
            datasets.enable_progress_bars()
    columns = list(ds.column_names)
    if not len(ds):
        raise DataError(f"{src.where}: no rows.")
    if src.kind in ("csv", "tsv"):  # a table's empty cell is an empty value, not a missing column
        rows = [{k: ("" if v is None else v) for k, v in r.items()} for r in ds.to_list()]
    else:
        rows = [_drop_nulls(r) for r in ds.to_list()]
    return list(enumerate(rows, start=1)), columns


# ----------------------------------------------------------------------------------------------------------
# Columns and items
# ----------------------------------------------------------------------------------------------------------

def _check_mapping(columns: dict, available: list[str], where: str):
    for column, name in columns.items():
        if available and column not in available:
            raise DataError(f"{where}: the columns knob maps {column!r}, which is not a column here (columns: "
                            f"{', '.join(available)}).")
        if name not in FIELDS:
            raise DataError(f"{where}: the columns knob maps {column!r} to {name!r}, which is not a field of any "
                            f"format; use one of {', '.join(FIELDS)}.")


def _mapped(record: dict, columns: dict) -> dict:
    return {columns[k]: v for k, v in record.items() if k in columns}


def _in_their_words(message: str, columns: dict, tabular: bool) -> str:
    """A validation message in the user's column names (errors are raised in our field names)."""
    back = {field: column for column, field in columns.items()}
    for field, column in back.items():
        message = re.sub(rf"(?<=['\[ ]){re.escape(field)}(?=['\].,\s])", column, message)
    if tabular:
        message = (message.replace("field '", "column '").replace("fields", "columns")
                   .replace("delete the line", "delete the row"))
        if any(w in message for w in ("unknown column", "no known format", "missing column")):
            message += (" Or map your columns in the config, e.g. columns: {your_question_column: question, "
                        "your_answer_column: answer}.")
    return message


def load_items(spec: str, skip_duplicates: bool = True, columns: dict | None = None):
    """(items, LoadReport) from any supported source; DataError naming the source, row and column."""
    src = parse(spec)
    columns = dict(columns or {})
    if src.kind == "jsonl":
        if src.split:
            raise DataError(f"{spec}: a JSONL file has no splits; name the file alone.")
        rows, available, unit = read_jsonl(src.where), [], "line"
    else:
        rows, available = read_rows(src)
        unit = "row"
    if columns:
        _check_mapping(columns, available, src.where)
        rows = [(n, _mapped(r, columns)) for n, r in rows]
    where = src.where if src.kind != "hub" or src.local else f"{src.where} (Hub dataset)"
    try:
        return items_from_rows(rows, where + (f" [{src.split}]" if src.split else ""), unit, skip_duplicates)
    except DataError as e:
        raise DataError(_in_their_words(str(e), columns, unit == "row")) from None


def fingerprint(spec: str) -> str:
    """SHA-256 of what `data:` names: the file's bytes, a folder's files (names and bytes), or for a Hub
    dataset its rows as JSON (the Hub's own revision is not kept by a local cache)."""
    from ..fsutil import sha256_file

    src = parse(spec)
    path = Path(src.where)
    if path.is_file():
        return sha256_file(path)
    h = hashlib.sha256()
    if path.is_dir():
        for f in sorted(p for p in path.rglob("*") if p.is_file()):
            h.update(str(f.relative_to(path)).encode() + b"\0" + sha256_file(f).encode() + b"\0")
    else:
        h.update(json.dumps([r for _, r in read_rows(src)[0]], sort_keys=True, default=str).encode())
    h.update(f"split={src.split}".encode())
    return h.hexdigest()


def display_name(spec: str) -> str:
    """A short name for titles and file names: the file or folder name, or the Hub id's name."""
    src = parse(spec)
    return Path(src.where).name + (f"-{src.split}" if src.split else "")
