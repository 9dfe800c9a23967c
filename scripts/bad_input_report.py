"""Prints the README's table of bad inputs and what each produces (the cases tests/test_data.py asserts).

    python -m scripts.bad_input_report
"""

import tempfile
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

from tests.bad_input_cases import CASES, GOOD, SOURCE_CASES  # noqa: E402

from unslothify.data.items import DataError, read_jsonl_items  # noqa: E402
from unslothify.data.sources import load_items as load_source  # noqa: E402


def main():
    print("| input | what happens |\n|---|---|")
    with tempfile.TemporaryDirectory() as td:
        path = Path(td) / "data.jsonl"
        for name, content, _ in CASES:
            path.write_bytes(content)
            try:
                read_jsonl_items(path)
                outcome = "accepted (unexpected)"
            except DataError as e:
                outcome = "error: " + str(e).replace(str(path), "data.jsonl")
            print(f"| {name} | {outcome.replace('|', '/')} |")
        path.write_text("\n".join([GOOD[0], GOOD[1], GOOD[0]]) + "\n")
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            read_jsonl_items(path)
        print(f"| duplicates (skip_duplicates: true, the default) | warning: "
              f"{str(caught[0].message).replace(str(path), 'data.jsonl')} |")
        try:
            read_jsonl_items(path, skip_duplicates=False)
        except DataError as e:
            print(f"| duplicates (skip_duplicates: false) | error: {str(e).replace(str(path), 'data.jsonl')} |")
        for name, file_name, content, columns, _ in SOURCE_CASES:
            path = Path(td) / file_name
            content(path) if callable(content) else path.write_bytes(content)
            try:
                load_source(str(path), columns=columns)
                outcome = "accepted (unexpected)"
            except DataError as e:
                outcome = "error: " + str(e).replace(str(path), file_name)
            given = f" (columns: {columns})" if columns else ""
            print(f"| {name}{given} | {outcome.replace('|', '/')} |")


if __name__ == "__main__":
    main()
