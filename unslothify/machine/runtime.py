"""Set up a hosted runtime (Colab, brev.dev, vast.ai) from a notebook, keeping the runtime's own torch.

This module imports only the standard library: it runs before anything of ours is installed, from the
project folder the notebook's first cell cloned (`sys.path` holds that folder, not site-packages).

    from unslothify.machine.runtime import setup
    setup("mistral-unslothify")      # installs what is missing; a fast no-op once everything is there

What it installs, in this order (each step only if something of it is missing):
  1. requirements-hosted.txt, with a pip constraint that holds torch, torchvision, torchaudio, triton and
     the nvidia-* / cuda-* libraries at the versions the runtime has: Colab's torch is built for its driver,
     and replacing it costs minutes and can leave a torch that does not match the driver.
  2. requirements-nodeps.txt with --no-deps (Unsloth, unsloth_zoo, the embedded model).
  3. the project itself, editable, with --no-deps.
  4. xformers, on a CUDA runtime, where a wheel built for this torch exists (XFORMERS_FOR_TORCH).

`python -m unslothify.machine.runtime xformers` runs step 4 alone (`make install` calls it).
"""

from __future__ import annotations

import re
import subprocess
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path

# Where the notebooks clone the project from when it is not on the runtime; UNSLOTHIFY_REPO overrides it.
REPO_URL = "https://github.com/mistral-unslothify/mistral-unslothify"
REPO_ENV = "UNSLOTHIFY_REPO"

# Packages a hosted runtime brings built for its GPU driver: held at the runtime's versions, never replaced.
HELD = ("torch", "torchvision", "torchaudio", "triton")
HELD_PREFIXES = ("nvidia-", "cuda-")
# torch versions the pinned stack runs with: Unsloth 2026.10.9 asks for >=2.4,<2.15, transformers 5.17 for >=2.5.
TORCH_SUPPORTED = ((2, 5), (2, 15))

# xformers wheels on PyPI are built for one torch release each (their metadata pins torch==X), except
# 0.0.35, which asks for torch>=2.10. Read from each wheel's Requires-Dist (pip install --dry-run --report).
XFORMERS_FOR_TORCH = {
    "2.5.1": "0.0.28.post3",
    "2.6.0": "0.0.29.post3",
    "2.7.0": "0.0.30",
    "2.7.1": "0.0.31.post1",
    "2.8.0": "0.0.32.post2",
    "2.9.0": "0.0.33.post1",
    "2.9.1": "0.0.33.post2",
    "2.10.0": "0.0.34",
}
XFORMERS_FROM_2_10 = "0.0.35"


def _version_tuple(version: str) -> tuple[int, ...]:
    """'2.13.0+cpu' -> (2, 13, 0); enough to order release numbers without the packaging module."""
    return tuple(int(p) for p in re.findall(r"\d+", version.split("+")[0])[:3])


def _name(requirement_name: str) -> str:
    return re.sub(r"[-_.]+", "-", requirement_name).lower()


def installed_version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def read_requirements(path: str | Path) -> list[tuple[str, str | None]]:
    """[(name, exact version or None)] from a requirements file of `name` and `name==version` lines."""
    out = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        name, _, version = line.partition("==")
        out.append((name.strip(), version.strip() or None))
    return out


def unmet(requirements: list[tuple[str, str | None]]) -> list[str]:
    """The requirements that are not installed at their pinned version (or at all, when unpinned)."""
    missing = []
    for name, version in requirements:
        have = installed_version(name)
        if have is None or (version is not None and have != version):
            missing.append(f"{name}=={version}" if version else name)
    return missing


def xformers_for(torch_version: str) -> str | None:
    """The xformers release built for this torch, or None where PyPI has none."""
    base = torch_version.split("+")[0]
    if base in XFORMERS_FOR_TORCH:
        return XFORMERS_FOR_TORCH[base]
    if _version_tuple(base) >= (2, 10):
        return XFORMERS_FROM_2_10
    return None


def held_constraints() -> list[str]:
    """`name==version` for every installed package the runtime brings for its driver."""
    pins = []
    for dist in metadata.distributions():
        name = dist.metadata["Name"]
        if name and (_name(name) in HELD or _name(name).startswith(HELD_PREFIXES)):
            pins.append(f"{name}=={dist.version}")
    return sorted(set(pins))


def _pip(args: list[str], progress) -> None:
    """pip install, its output passed line by line to progress: in a notebook a child process's own output
    goes to the kernel's log, not to the cell, so a failure would otherwise be invisible."""
    cmd = [sys.executable, "-m", "pip", "install", "--disable-pip-version-check", "-q", *args]
    started = time.perf_counter()
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) as proc:
        for line in proc.stdout:
            if line.strip():
                progress("  " + line.rstrip())
    if proc.returncode != 0:
        raise RuntimeError(f"pip failed (exit {proc.returncode}): {' '.join(cmd[3:])}. Nothing of the runtime's own "
                           f"torch was changed; the message above says what pip could not install.")
    progress(f"  done in {time.perf_counter() - started:.0f} s")


def _cuda_available() -> bool:
    proc = subprocess.run([sys.executable, "-c", "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"],
                          capture_output=True)
    return proc.returncode == 0


def install_xformers(progress=print, cuda: bool | None = None) -> str:
    """Install the xformers built for this torch on a CUDA machine; say why not elsewhere."""
    torch_version = installed_version("torch")
    if torch_version is None:
        return "xformers: not installed (no torch)."
    cuda = _cuda_available() if cuda is None else cuda
    wanted = xformers_for(torch_version)
    if not cuda:
        return "xformers: not installed (no CUDA GPU; it only speeds up attention on NVIDIA GPUs)."
    if wanted is None:
        return f"xformers: not installed (PyPI has no wheel built for torch {torch_version}); attention uses SDPA."
    if installed_version("xformers") == wanted:
        return f"xformers {wanted}: already installed for torch {torch_version}."
    progress(f"Installing xformers {wanted} (built for torch {torch_version}) ...")
    _pip(["--no-deps", f"xformers=={wanted}"], progress)
    return f"xformers {wanted}: installed for torch {torch_version}."


def setup(project_dir: str | Path = ".", progress=print) -> dict:
    """Install what this runtime lacks to run the notebooks, holding its torch, and fetch llama.cpp's GGUF
    converter once; returns what was done."""
    started = time.perf_counter()
    project = Path(project_dir).resolve()
    torch_before = _check_python_and_torch()
    hosted = read_requirements(project / "requirements-hosted.txt")
    nodeps = read_requirements(project / "requirements-nodeps.txt")
    todo = {"hosted": unmet(hosted), "nodeps": unmet(nodeps), "project": installed_version("unslothify") is None}
    if installed_version("unslothify") is not None and not _installed_from(project):
        progress(f"unslothify is installed from another folder; this notebook imports {project} (it is first on "
                 f"sys.path). To make other kernels use it too: pip install --no-deps -e {project}")
    if not any(todo.values()):
        progress(f"Runtime ready: torch {torch_before}, everything pinned is installed; nothing to do.")
        _gguf_converter(progress)
        return {"installed": [], "torch": torch_before, "seconds": round(time.perf_counter() - started, 2)}
    imported_before = {n for n in sys.modules if "." not in n}
    done = _install(project, todo, torch_before, progress)
    progress(install_xformers(progress))
    _gguf_converter(progress)
    torch_after = installed_version("torch")
    if torch_before is not None and torch_after != torch_before:
        raise RuntimeError(f"torch changed from {torch_before} to {torch_after} during setup; this should not happen "
                           f"under the constraint. Restart the runtime and report it.")
    # Our own package is the project folder itself (editable), so importing it earlier did no harm.
    stale = sorted(n for n in imported_before if n != "unslothify" and _name(n) in {_name(r.split("==")[0]) for r in done})
    if stale:
        progress(f"Restart the runtime once (Colab: Runtime > Restart session) and run the cells again: "
                 f"{', '.join(stale)} were already imported in this session at their old versions.")
    seconds = round(time.perf_counter() - started, 1)
    progress(f"Runtime ready in {seconds:.0f} s: torch {torch_after} kept as it was; installed {len(done)} packages.")
    return {"installed": done, "torch": torch_after, "seconds": seconds, "restart": stale}


def _check_python_and_torch() -> str | None:
    """The runtime's torch version (None: no torch); an error where Python or torch is out of range."""
    if sys.version_info < (3, 10):
        raise RuntimeError(f"Python {sys.version.split()[0]} is too old: the project needs Python 3.10 or newer.")
    torch_before = installed_version("torch")
    if torch_before is not None and not (TORCH_SUPPORTED[0] <= _version_tuple(torch_before)[:2] < TORCH_SUPPORTED[1]):
        lo, hi = (".".join(map(str, v)) for v in TORCH_SUPPORTED)
        raise RuntimeError(f"This runtime has torch {torch_before}; the pinned stack (Unsloth 2026.10.9, transformers "
                           f"5.17) runs with torch >= {lo} and < {hi}. Pick another runtime image, or install a "
                           f"torch in that range built for this machine's CUDA, then run this cell again.")
    return torch_before


def _install(project: Path, todo: dict, torch_before: str | None, progress) -> list[str]:
    """pip installs of what `todo` lists, under a constraint that holds the runtime's torch and CUDA libraries."""
    done: list[str] = []
    with tempfile.TemporaryDirectory() as td:
        constraints = Path(td) / "held.txt"
        held = held_constraints()
        extra = []
        if torch_before is None:  # a bare Python: the lock's torch, as `make install` would give
            extra = [f"torch=={dict(read_requirements(project / 'requirements.lock'))['torch']}"]
            progress(f"No torch in this runtime: installing {extra[0]} (requirements.lock).")
            todo["hosted"] += extra
        constraints.write_text("".join(p + "\n" for p in held), encoding="utf-8")
        if todo["hosted"]:
            progress(f"Installing {len(todo['hosted'])} pinned libraries ({', '.join(todo['hosted'][:6])}"
                     f"{', ...' if len(todo['hosted']) > 6 else ''}), holding "
                     f"{', '.join(p for p in held if _name(p.split('==')[0]) in HELD) or 'nothing'} ...")
            _pip(["-c", str(constraints), "-r", str(project / "requirements-hosted.txt"), *extra], progress)
            done += todo["hosted"]
        if todo["nodeps"]:
            progress(f"Installing {', '.join(todo['nodeps'])} without dependencies ...")
            _pip(["--no-deps", "-r", str(project / "requirements-nodeps.txt")], progress)
            done += todo["nodeps"]
        if todo["project"]:
            progress(f"Installing the project from {project} (editable) ...")
            _pip(["--no-deps", "-e", str(project)], progress)
            done.append("unslothify")
    return done


def _gguf_converter(progress):
    """llama.cpp's GGUF converter, fetched once into the cache (notebook 03 exports GGUF by default). A failure
    is said, not raised: every other export works without it, and notebook 03 says how to fetch it later."""
    proc = subprocess.run([sys.executable, "-m", "unslothify", "setup-gguf"], capture_output=True, text=True)
    if proc.returncode != 0:
        progress("Could not fetch llama.cpp's GGUF converter now (GGUF export needs it; the others do not): "
                 + (proc.stderr.strip().splitlines() or ["no message"])[-1]
                 + ". Run `python -m unslothify setup-gguf` when the network is back.")


def _installed_from(project: Path) -> bool:
    """Whether the installed unslothify is the editable install of this project folder."""
    # Every distribution of that name: the project folder itself is on sys.path (the notebook put it there)
    # and may hold an unslothify.egg-info from the editable build, which has no direct_url.json.
    return any(project.as_uri() in (dist.read_text("direct_url.json") or "")
               for dist in metadata.distributions(name="unslothify"))


def main(argv: list[str]) -> int:
    if argv[:1] == ["xformers"]:
        print(install_xformers())
        return 0
    setup(argv[0] if argv else ".")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
