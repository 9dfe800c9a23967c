"""Requirement files hold names and versions only, and the hosted-runtime file fits the lock."""

import re

import pytest
import yaml

from conftest import ROOT
from unslothify.machine.runtime import HELD, HELD_PREFIXES, XFORMERS_FOR_TORCH, read_requirements, xformers_for

REQUIREMENT_FILES = sorted(ROOT.glob("requirements*.txt")) + [ROOT / "requirements.lock"]
# A URL, a local path, a direct reference (name @ ...), an editable or an option that points somewhere.
NOT_A_NAME_AND_VERSION = re.compile(r"://|@|^\s*-e\b|^\s*--?(find-links|index-url|extra-index-url|f)\b|^\s*[./~]|\\")


def requirement_lines():
    for path in REQUIREMENT_FILES:
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            line = line.split("#", 1)[0].strip()
            if line:
                yield f"{path.name}:{number}", line
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    for dep in env["dependencies"]:
        for line in dep["pip"] if isinstance(dep, dict) else [dep]:
            if not line.startswith("-r "):
                yield "environment.yml", line
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    for line in project["dependencies"] + [d for ds in project["optional-dependencies"].values() for d in ds]:
        yield "pyproject.toml", line


def test_requirements_are_names_and_versions_only():
    bad = [f"{where}: {line}" for where, line in requirement_lines() if NOT_A_NAME_AND_VERSION.search(line)]
    assert bad == [], "a requirement points at a URL or a path, which a fresh machine does not have"


@pytest.mark.parametrize("line", ["llama_cpp_python @ file:///work/wheelcache/x.whl", "pkg @ https://x/y.whl",
                                  "-e /home/me/pkg", "--find-links /opt/wheels", "./local/pkg", "git+https://x/y"])
def test_the_check_catches_what_broke_a_fresh_install(line):
    assert NOT_A_NAME_AND_VERSION.search(line)


def test_hosted_requirements_pin_no_runtime_libraries_and_match_the_lock():
    hosted = read_requirements(ROOT / "requirements-hosted.txt")
    lock = {name.lower().replace("_", "-"): v for name, v in read_requirements(ROOT / "requirements.lock")}
    names = [n.lower().replace("_", "-") for n, _ in hosted]
    held = [n for n in names if n in HELD or n.startswith(HELD_PREFIXES)]
    jupyter = [n for n in names if n.startswith(("jupyter", "notebook", "ipykernel", "nbclient", "nbformat"))]
    assert held == [] and jupyter == [], "the runtime's torch, CUDA and Jupyter stay as they are"
    for name, version in hosted:
        key = name.lower().replace("_", "-")
        if version is not None:
            assert lock.get(key) == version, f"{name}=={version} in requirements-hosted.txt, {lock.get(key)} in the lock"
    for must in ("transformers", "trl", "peft", "datasets", "bitsandbytes", "accelerate"):
        assert must in names


def test_xformers_is_chosen_by_the_torch_it_was_built_for():
    assert xformers_for("2.6.0+cu124") == "0.0.29.post3"
    assert xformers_for("2.8.0") == "0.0.32.post2"
    assert xformers_for("2.13.0+cpu") == "0.0.35" and xformers_for("2.10.0") == XFORMERS_FOR_TORCH["2.10.0"]
    assert xformers_for("2.4.1") is None, "no wheel is pinned for torch 2.4: leave xformers out"
