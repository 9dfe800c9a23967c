"""A hosted runtime (Colab, brev, vast) started from a notebook alone, simulated without network.

The runtime is a fresh venv with its own torch (a different release from the lock's) and a Jupyter kernel,
and nothing of ours. Notebook 00 is copied alone into an empty folder, the repository URL points at a
local clone of this working tree, and the notebook's setup cell has to do the rest: clone the project,
install the pinned libraries without touching torch, and run. Notebook 01 then prepares data there.
"""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from conftest import INVENTED, ROOT

HOSTED_TORCH = "2.13.0"  # not the lock's torch (2.14.1), as on Colab: the runtime's own build must stay


def lock_torch() -> str:
    from unslothify.machine.runtime import read_requirements

    return dict(read_requirements(ROOT / "requirements.lock"))["torch"]


def run(cmd, cwd="/", **kw):
    """A command from a neutral folder, so that Python does not import this checkout from the working directory."""
    return subprocess.run([str(c) for c in cmd], capture_output=True, text=True, cwd=cwd, **kw)


def torch_version(python: Path) -> str:
    proc = run([python, "-c", "import torch; print(torch.__version__)"])
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout.strip()


def local_repository(target: Path) -> Path:
    """A git repository holding this working tree's files (committed or not), as a clone would see them."""
    files = run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT).stdout.split("\0")
    for name in filter(None, files):
        src = ROOT / name
        if src.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, target / name)
    for cmd in (["git", "init", "-q", "-b", "main"], ["git", "add", "-A"],
                ["git", "-c", "user.name=test", "-c", "user.email=test@example.com", "commit", "-q", "-m", "snapshot"]):
        proc = run(cmd, cwd=target)
        assert proc.returncode == 0, proc.stderr
    return target


def hosted_python(root: Path) -> Path:
    """A venv like a hosted runtime's: Python, a torch of its own and Jupyter's kernel; nothing of ours."""
    proc = run([sys.executable, "-m", "venv", root])
    assert proc.returncode == 0, proc.stderr
    python = root / "bin" / "python"
    proc = run([python, "-m", "pip", "install", "-q", f"torch=={HOSTED_TORCH}", "ipykernel"], timeout=3600)
    if proc.returncode != 0 and "No matching distribution" in proc.stderr:
        pytest.skip(f"the package registry serves no torch=={HOSTED_TORCH} for this Python: cannot simulate a runtime "
                    f"whose torch differs from the lock's")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return python


def kernel_for(python: Path, jupyter_dir: Path) -> str:
    spec = jupyter_dir / "kernels" / "hosted"
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [str(python), "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "hosted runtime", "language": "python"}))
    return "hosted"


def text_of(nb) -> str:
    out = []
    for cell in nb.cells:
        for o in cell.get("outputs", []):
            out.append(o.get("text", "") if o.get("output_type") == "stream" else o.get("data", {}).get("text/plain", ""))
    return "".join(out)


@pytest.mark.slow
def test_notebooks_set_up_a_hosted_runtime_from_the_notebook_alone(tmp_path, monkeypatch):
    import papermill

    assert HOSTED_TORCH != lock_torch()
    python = hosted_python(tmp_path / "runtime")
    before = torch_version(python)
    assert before.split("+")[0] == HOSTED_TORCH and run([python, "-c", "import unslothify"]).returncode != 0

    repository = local_repository(tmp_path / "origin")
    colab = tmp_path / "content"  # what Colab's file browser shows: the notebook, nothing else
    colab.mkdir()
    for name in ("00_gpu_check.ipynb", "01_prepare_data.ipynb"):
        shutil.copy2(ROOT / "notebooks" / name, colab / name)
    data = tmp_path / "facts.jsonl"
    shutil.copy2(INVENTED / "train.jsonl", data)
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    monkeypatch.setenv("UNSLOTHIFY_REPO", repository.as_uri())
    monkeypatch.setenv("UNSLOTHIFY_CACHE", str(tmp_path / "cache"))  # the runtime has no converted model yet
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    kernel = kernel_for(python, tmp_path / "jupyter")
    params = {"overrides": {"output_dir": str(tmp_path / "run"), "data": str(data),
                            "eval_questions": str(INVENTED / "questions.jsonl"), "augment": {"replay": 0}}}

    def execute(name):
        out = tmp_path / f"out-{name}"
        papermill.execute_notebook(str(colab / name), str(out), parameters=params, kernel_name=kernel,
                                   cwd=str(colab), progress_bar=False, execution_timeout=3600)
        return text_of(nbformat.read(out, as_version=4))

    first = execute("00_gpu_check.ipynb")
    assert (colab / "mistral-unslothify" / "unslothify" / "machine" / "runtime.py").exists(), "the project was cloned"
    assert "Runtime ready in" in first and "kept as it was" in first, first[-3000:]
    assert "Will it fit?" in first and "Attention: SDPA" in first
    assert torch_version(python) == before, "the runtime's torch was replaced"
    proc = run([python, "-c", "import unslothify, unsloth, trl; print(unslothify.__file__)"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert str(colab / "mistral-unslothify") in proc.stdout

    second = execute("01_prepare_data.ipynb")  # opened on its own after 00 ran: setup is a no-op
    assert "nothing to do" in second, second[-3000:]
    report = json.loads((tmp_path / "run" / "prepared" / "report.json").read_text())
    # the knowledge objective trains every item; validation holds reworded probes of them
    assert report["train_items"] == 80 and report["validation_items"] > 0
    assert torch_version(python) == before
    assert not (colab / "mistral-unslothify" / "mistral-unslothify").exists(), "re-running did not clone again"
