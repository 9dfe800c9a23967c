"""The four notebooks, executed end to end on CPU with the embedded model, as users run them:
00 -> 01 -> 02 (final cell run twice, then a restarted kernel continues) -> 03. State passes through files."""

import json
import shutil
from pathlib import Path

import nbformat
import pytest

from conftest import INVENTED, ROOT
from secrets_scan import FAKE_TOKEN, files_containing_token

NOTEBOOKS = ROOT / "notebooks"


def run_papermill(name, out_dir, parameters):
    import papermill

    out = out_dir / name
    papermill.execute_notebook(str(NOTEBOOKS / name), str(out), parameters=parameters, kernel_name="python3",
                               cwd=str(NOTEBOOKS), progress_bar=False)
    return nbformat.read(out, as_version=4)


def with_parameters(nb, parameters):
    """Insert the parameter assignments after the cell tagged `parameters`, as papermill does."""
    index = next(i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", []))
    source = "# Parameters\n" + "".join(f"{k} = {v!r}\n" for k, v in parameters.items())
    nb.cells.insert(index + 1, nbformat.v4.new_code_cell(source))
    return nb


def outputs_text(cell) -> str:
    parts = []
    for o in cell.get("outputs", []):
        if o.get("output_type") == "stream":
            parts.append(o["text"])
        elif "data" in o:
            parts.append(o["data"].get("text/plain", ""))
            parts.append(o["data"].get("text/html", ""))
    return "".join(parts)


def has_image(cell) -> bool:
    return any("image/png" in o.get("data", {}) for o in cell.get("outputs", []))


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    import os

    previous = os.environ.get("HF_TOKEN")
    os.environ["HF_TOKEN"] = FAKE_TOKEN  # kernels inherit it: a user who is logged in
    work = tmp_path_factory.mktemp("nb")
    data = work / "train.jsonl"
    shutil.copy2(INVENTED / "train.jsonl", data)  # augmentation writes beside the data file: keep it out of the repo
    overrides = {"output_dir": str(work / "run"), "data": str(data),
                 "eval_questions": str(INVENTED / "questions.jsonl"), "num_train_epochs": 1,
                 "augment": {"replay": 8},  # augmentation on, as shipped, with a short replay to keep CI quick
                 "max_train_minutes": 0}  # as notebook 02 sets it: no time cap in a notebook
    yield work, {"project_dir": str(ROOT), "overrides": overrides}
    if previous is None:
        os.environ.pop("HF_TOKEN", None)
    else:
        os.environ["HF_TOKEN"] = previous


@pytest.mark.slow
def test_notebook_series(project):
    from nbclient import NotebookClient

    work, params = project
    run = Path(params["overrides"]["output_dir"])

    nb = run_papermill("00_gpu_check.ipynb", work, params)
    assert "No CUDA GPU: the embedded SmolLM2-135M-Instruct will be used" in "".join(map(outputs_text, nb.cells))
    assert json.loads((run / "gpu_check.json").read_text())["cuda_available"] is False

    nb = run_papermill("01_prepare_data.ipynb", work, params)
    report = json.loads((run / "prepared" / "report.json").read_text())
    assert report["train_items"] == 80 and report["objective_chosen"] == "knowledge" and report["format"] == "messages"
    assert any(has_image(c) for c in nb.cells), "the length histogram is shown"

    # 02: run top to bottom in one kernel, then run the final cell again: two versions, one history
    nb = with_parameters(nbformat.read(NOTEBOOKS / "02_train.ipynb", as_version=4), params)
    client = NotebookClient(nb, kernel_name="python3", timeout=1800, resources={"metadata": {"path": str(NOTEBOOKS)}})
    with client.setup_kernel():
        for index, cell in enumerate(nb.cells):
            client.execute_cell(cell, index)
        last = len(nb.cells) - 1
        assert "Saved v001" in outputs_text(nb.cells[last])
        client.execute_cell(nb.cells[last], last)
        assert "Saved v002" in outputs_text(nb.cells[last])
    assert any(has_image(c) for c in nb.cells), "the loss plot is drawn"
    v1 = json.loads((run / "v001" / "history.json").read_text())
    v2 = json.loads((run / "v002" / "history.json").read_text())
    assert v2[: len(v1)] == v1 and max(h["epoch"] for h in v2) == pytest.approx(2.0)
    assert json.loads((run / "v002" / "manifest.json").read_text())["parent"] == "v001"

    # a restarted kernel continues from the latest version: a third version, same history
    nb = run_papermill("02_train.ipynb", work, {**params, "continue_from": "latest"})
    v3 = json.loads((run / "v003" / "history.json").read_text())
    assert v3[: len(v2)] == v2 and max(h["epoch"] for h in v3) == pytest.approx(3.0)
    manifest = json.loads((run / "v003" / "manifest.json").read_text())
    assert manifest["parent"] == "v002" and manifest["cumulative_epochs"] == pytest.approx(3.0)
    assert "v003" in outputs_text(nb.cells[-1])

    nb = run_papermill("03_merge_export_chat.ipynb", work, {**params, "version": "latest"})
    text = "".join(map(outputs_text, nb.cells))
    assert "Merged model verified" in text and "transformers read the GGUF back" in text
    exports = json.loads((run / "exports" / "exports.json").read_text())
    assert exports["version"] == "v003" and exports["merge_check"]["relative"] <= exports["merge_check"]["tolerance"]
    assert Path(exports["gguf"]).exists() and (run / "exports" / "merged" / "model.safetensors").exists()
    scores = json.loads((run / "eval" / "v003.json").read_text())["summary"]
    assert scores["n"] == 40 and scores["tuned_recall"] >= scores["base_recall"] + 0.2, "3 epochs teach facts"
    assert any(has_image(c) for c in nb.cells), "the recall chart is drawn"
    assert files_containing_token(work) == [], "no notebook output, manifest, log or export holds the Hub token"


def test_notebooks_are_stored_without_outputs_and_match_their_source():
    from scripts.build_notebooks import build

    for name, text in build().items():
        stored = (NOTEBOOKS / name).read_text(encoding="utf-8")
        assert stored == text, f"{name} differs from scripts/build_notebooks.py: run `make notebooks`"
        nb = nbformat.reads(stored, as_version=4)
        for cell in nb.cells:
            if cell.cell_type == "code":
                assert cell.outputs == [] and cell.execution_count is None, name
        assert nb.cells[0].cell_type == "markdown"
        assert any("parameters" in c.metadata.get("tags", []) for c in nb.cells), name


def test_a_user_error_shows_as_its_message_and_other_errors_as_tracebacks():
    """In a kernel, bad data shows what is wrong and where, not a traceback through the package; a bug in the
    package still shows its traceback."""
    from nbclient import NotebookClient

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("from unslothify.ui.notebook import show_errors_as_messages\n"
                                          "show_errors_as_messages()"),
                nbformat.v4.new_code_cell("from unslothify.data.items import read_jsonl_items\n"
                                          f"read_jsonl_items({str(ROOT / 'README.md')!r})"),
                nbformat.v4.new_code_cell("from unslothify.runs import format_table\nformat_table([{'a': 1}, {}])")]
    NotebookClient(nb, timeout=120, kernel_name="python3", allow_errors=True).execute()
    (user,), (bug,) = nb.cells[1].outputs, nb.cells[2].outputs
    assert user.output_type == "error" and user.ename == "DataError" and "README.md, line 1" in user.evalue
    assert len(user.traceback) == 2 and "%tb" in user.traceback[0], "the message alone, and how to see the rest"
    assert bug.output_type == "error" and bug.ename == "KeyError" and len(bug.traceback) > 2, "a bug keeps its trace"
