"""Prints the README's table of bad inputs and what each produces (the cases tests/test_data.py asserts).

    python scripts/bad_input_report.py
"""

import sys
import tempfile
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from bad_input_cases import CASES, GOOD  # noqa: E402

from unslothify.data import DataError, load_items  # noqa: E402


def main():
    print("| input | what happens |\n|---|---|")
    with tempfile.TemporaryDirectory() as td:
        path = Path(td) / "data.jsonl"
        for name, content, _ in CASES:
            path.write_bytes(content)
            try:
                load_items(path)
                outcome = "accepted (unexpected)"
            except DataError as e:
                outcome = "error: " + str(e).replace(str(path), "data.jsonl")
            print(f"| {name} | {outcome.replace('|', '/')} |")
        path.write_text("\n".join([GOOD[0], GOOD[1], GOOD[0]]) + "\n")
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            load_items(path)
        print(f"| duplicates (skip_duplicates: true, the default) | warning: "
              f"{str(caught[0].message).replace(str(path), 'data.jsonl')} |")
        try:
            load_items(path, skip_duplicates=False)
        except DataError as e:
            print(f"| duplicates (skip_duplicates: false) | error: {str(e).replace(str(path), 'data.jsonl')} |")


if __name__ == "__main__":
    main()
