"""The repository's promises about itself: the README's commands, CI, generated sections."""

import subprocess
import sys

from conftest import ROOT


def test_readme_names_the_two_commands_and_ci_calls_the_test_one():
    readme = (ROOT / "README.md").read_text()
    assert "make run" in readme and "make test" in readme
    ci = (ROOT / ".ci" / "run").read_text()
    assert "make test" in ci


def test_readme_generated_sections_are_current():
    proc = subprocess.run([sys.executable, "-m", "scripts.update_readme", "--check"], cwd=ROOT)
    assert proc.returncode == 0, "run: python -m scripts.update_readme"
