"""Bad training files and what each must produce: used by tests/test_data.py and by
scripts/bad_input_report.py (which prints the README's table of messages)."""

M = '{"messages": [{"role": "user", "content": "Q%d?"}, {"role": "assistant", "content": "A%d."}]}'
GOOD = [M % (i, i) for i in range(1, 4)]

# (name, file bytes, substrings the message must contain)
CASES = [
    ("malformed JSON on a line", "\n".join([GOOD[0], '{"messages": [}', GOOD[1]]).encode(),
     ["line 2", "not valid JSON"]),
    ("missing field", "\n".join([GOOD[0], '{"instruction": "Say hi"}']).encode(),
     ["line 2", "missing field 'output'"]),
    ("unknown field", "\n".join([GOOD[0], '{"text": "hi", "colour": "red"}']).encode(),
     ["line 2", "unknown field 'colour'"]),
    ("unknown field in a message", '{"messages": [{"role": "user", "content": "Q", "name": "x"}, '
                                   '{"role": "assistant", "content": "A"}]}'.encode(),
     ["line 1", "messages[0].name"]),
    ("empty file", b"", ["empty"]),
    ("only blank lines", b"\n\n  \n", ["empty"]),
    ("empty string", '{"prompt": "Why?", "completion": "  "}'.encode(), ["line 1", "'completion' is empty"]),
    ("non-UTF-8 bytes", GOOD[0].encode() + b"\n" + '{"text": "k\xf6ttbullar"}'.encode("latin-1"),
     ["line 2", "not UTF-8", "iconv"]),
    ("wrong chat role", '{"messages": [{"role": "human", "content": "Q"}, {"role": "assistant", "content": "A"}]}'.encode(),
     ["line 1", "messages[0].role", "'human'"]),
    ("wrong turn order", '{"messages": [{"role": "assistant", "content": "A"}, {"role": "user", "content": "Q"}]}'.encode(),
     ["line 1", "messages[0].role", "alternate"]),
    ("chat ending on the user", '{"messages": [{"role": "user", "content": "Q"}]}'.encode(),
     ["line 1", "must end with an assistant message"]),
    ("system message in the middle", ('{"messages": [{"role": "user", "content": "Q"}, {"role": "system", "content": "S"},'
                                      ' {"role": "assistant", "content": "A"}]}').encode(),
     ["line 1", "system message may only come first"]),
    ("mixed formats in one file", "\n".join([GOOD[0], '{"text": "plain"}']).encode(),
     ["line 2", "text format", "line 1 set the file's format to messages"]),
    ("a JSON array, not JSONL", b'[{"text": "a"},\n {"text": "b"}]', ["line 1", "one JSON array"]),
    ("a CSV file", b"question,answer\nWhat?,That.\n", ["line 1", "not valid JSON", "CSV"]),
    ("not an object", b'"just a string"\n', ["line 1", "expected a JSON object"]),
    ("no known format", b'{"query": "Q", "reply": "A"}\n', ["line 1", "no known format"]),
    ("content not a string", '{"messages": [{"role": "user", "content": 5}, {"role": "assistant", "content": "A"}]}'.encode(),
     ["line 1", "messages[0].content", "must be a string"]),
]


def _parquet(rows):
    def write(path):
        import pandas as pd

        pd.DataFrame(rows).to_parquet(path)
    return write


# Other file types (unslothify/data/sources.py): (name, file name, bytes or a writer of the file, columns knob,
# substrings the message must contain).
SOURCE_CASES = [
    ("CSV: an empty cell", "data.csv", b"question,answer\nWhat?,That.\nWhy?,\n", {},
     ["row 2", "column 'answer' is empty"]),
    ("CSV: an unknown column", "data.csv", b"question,answer,colour\nWhat?,That.,red\n", {},
     ["row 1", "unknown column 'colour'", "columns:"]),
    ("CSV: columns of no known format", "data.csv", b"q,a\nWhat?,That.\n", {},
     ["row 1", "no known format in columns ['a', 'q']", "columns:"]),
    ("CSV: a row with an extra cell", "data.csv", b"question,answer\nWhat?,That.\nWhy?,Because.,extra\n", {},
     ["could not be read as CSV", "line 3"]),
    ("CSV: a mapped column that is not there", "data.csv", b"q,a\nWhat?,That.\n", {"q": "question", "answr": "answer"},
     ["columns knob maps 'answr'", "columns: q, a"]),
    ("CSV: a mapped column left empty", "data.csv", b"q,a\nWhat?,That.\nWhy?,\n", {"q": "question", "a": "answer"},
     ["row 2", "column 'a' is empty"]),
    ("TSV: non-UTF-8 bytes", "data.tsv", "question\tanswer\nWhat?\tK\xf6ttbullar.\n".encode("latin-1"), {},
     ["line 2", "not UTF-8", "iconv"]),
    ("JSON array: a record with a missing field", "data.json",
     b'[{"instruction": "Say hi", "output": "Hi."}, {"instruction": "Say bye"}]', {},
     ["row 2", "missing column 'output'"]),
    ("JSON array: a wrong chat role", "data.json",
     b'[{"messages": [{"role": "human", "content": "Q"}, {"role": "assistant", "content": "A"}]}]', {},
     ["row 1", "messages[0].role", "'human'"]),
    ("Parquet: an empty answer", "data.parquet", _parquet([{"prompt": "What?", "completion": "That."},
                                                            {"prompt": "Why?", "completion": " "}]), {},
     ["row 2", "column 'completion' is empty"]),
]
