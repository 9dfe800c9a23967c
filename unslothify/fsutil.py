"""Atomic writes: everything a later step loads is written beside its target and renamed into place,
so a crash or an interrupt never leaves a half-written file or folder that looks finished."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path

# The project folder: the package, and beside it what it ships (eval/, recipes/).
PROJECT_DIR = Path(__file__).resolve().parents[1]


def atomic_write_text(path: Path, text: str) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return path


def atomic_write_json(path: Path, obj) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=2, ensure_ascii=False) + "\n")


def read_json(path: Path):
    return json.loads(Path(path).read_text(encoding="utf-8"))


def write_jsonl(path: Path, records) -> Path:
    return atomic_write_text(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))


@contextlib.contextmanager
def atomic_dir(target: Path, overwrite: bool = False):
    """Yield a temporary folder beside `target`; on success it is renamed to `target`.

    On any exception (KeyboardInterrupt included) the temporary folder is removed and `target` is
    left as it was. With overwrite=False an existing target is an error before anything is written.
    """
    target = Path(target)
    if target.exists() and not overwrite:
        raise FileExistsError(f"{target} already exists; it is never overwritten.")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.", suffix=".partial"))
    try:
        yield tmp
        if target.exists():
            old = target.with_name(f".{target.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(target, old)
            os.replace(tmp, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def sha256_file(path: Path) -> str:
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def check_disk(folder: Path, needed: int, what: str):
    """Refuse before writing when the folder's disk has less than needed (+10 % and 256 MiB) free."""
    from .errors import ExportError

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(folder).free
    margin = int(needed * 1.1) + (256 << 20)
    if free < margin:
        raise ExportError(f"Not enough disk space for {what} in {folder}: needs about {margin / 2**30:.1f} GiB, "
                          f"{free / 2**30:.1f} GiB free. Free some space or choose another --output folder "
                          f"(a merged 7B model takes about 15 GB).")


def cache_dir() -> Path:
    """Where converted models, fetched tools and per-model filters are kept between runs ($UNSLOTHIFY_CACHE)."""
    return Path(os.environ.get("UNSLOTHIFY_CACHE", Path.home() / ".cache" / "unslothify"))
