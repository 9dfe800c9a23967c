"""A fake Hub token set for whole runs, and a scan of everything they wrote for it."""

from pathlib import Path

FAKE_TOKEN = "hf_unslothifyTESTtoken0123456789abcdefXYZ"


def files_containing_token(*roots: Path) -> list[str]:
    hits = []
    needle = FAKE_TOKEN.encode()
    for root in roots:
        paths = [root] if root.is_file() else [p for p in root.rglob("*") if p.is_file()]
        for path in paths:
            if needle in path.read_bytes():
                hits.append(str(path))
    return hits
