import pytest

from unslothify.data.items import DataError
from unslothify.score.questions import Question, is_recalled, load_questions, score


@pytest.mark.parametrize("answer,expected,hit", [
    ("They are called köttbullar in Swedish.", ["Köttbullar"], True),
    ("Cook to 71 °C inside.", ["71"], True),
    ("Cook to 171 degrees.", ["71"], False),
    ("About 18 of them.", ["8", "eight"], False),
    ("Eight legs.", ["8", "eight"], True),
    ("Porkchops are different.", ["pork"], False),
    ("Beef and pork, half and half.", ["pork"], True),
    ("IKEA started in 1985.", ["1985"], True),
    ("Served with lingonberries", ["lingonberry", "lingonberries"], True),
    ("", ["x"], False),
])
def test_whole_word_case_insensitive(answer, expected, hit):
    assert is_recalled(answer, expected) is hit


def test_score_groups_by_kind():
    qs = [Question("a", ["x"]), Question("b", ["y"]), Question("c", ["z"], kind="reverse")]
    result = score(qs, ["x", "nope", "z"])
    assert result["recall"] == pytest.approx(2 / 3, abs=1e-4) and result["n"] == 3
    assert result["forward_recall"] == 0.5 and result["reverse_recall"] == 1.0


def test_shipped_eval_files_load(root):
    assert len(load_questions(root / "eval" / "questions.jsonl")) >= 60
    assert len(load_questions(root / "examples" / "invented" / "questions.jsonl")) == 40


def test_bad_eval_file(tmp_path):
    path = tmp_path / "q.jsonl"
    path.write_text('{"question": "Q", "expected": []}\n')
    with pytest.raises(DataError, match="line 1: field 'expected'"):
        load_questions(path)
    path.write_text('{"question": "Q", "answer": ["A"]}\n')
    with pytest.raises(DataError, match="unknown field 'answer'"):
        load_questions(path)
