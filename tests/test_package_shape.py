"""The package's shape: no import cycles (imports inside functions count), short modules, a light import."""

import ast
import subprocess
import sys

import pytest

from conftest import ROOT

PACKAGE = ROOT / "unslothify"


def module_name(path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path) -> set[str]:
    """Every unslothify module the file imports, at the top or inside a function. Importing a submodule
    runs its package's __init__ first, so the packages on the way count as imported too (not a module's
    own packages: they are being imported already when it runs)."""
    name = module_name(path)
    ancestors = {".".join(name.split(".")[:i]) for i in range(1, len(name.split(".")))}
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in executed_nodes(ast.parse(path.read_text(encoding="utf-8"))):
        targets = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                stem = ".".join(base + ([node.module] if node.module else []))
            else:
                stem = node.module or ""
            targets = [stem] + [f"{stem}.{a.name}" for a in node.names]
        for t in targets:
            parts = t.split(".")
            for i in range(1, len(parts) + 1):
                candidate = ".".join(parts[:i])
                if candidate.startswith("unslothify") and candidate != name and candidate not in ancestors \
                        and module_exists(candidate):
                    found.add(candidate)
    return found


def executed_nodes(tree):
    """ast.walk, less the `if TYPE_CHECKING:` blocks (imports for annotations only, never run)."""
    todo = [tree]
    while todo:
        node = todo.pop()
        yield node
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and getattr(child.test, "id", None) == "TYPE_CHECKING":
                todo.extend(child.orelse)
                continue
            todo.append(child)


def module_exists(name: str) -> bool:
    path = ROOT.joinpath(*name.split("."))
    return path.with_suffix(".py").exists() or (path / "__init__.py").exists()


def import_graph() -> dict[str, set[str]]:
    return {module_name(p): imports_of(p) for p in PACKAGE.rglob("*.py")}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1 on the stack, 2 done
    stack: list[str] = []

    def visit(node):
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                cycle = visit(nxt)
                if cycle:
                    return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            cycle = visit(node)
            if cycle:
                return cycle
    return None


def test_the_package_has_no_import_cycles():
    graph = import_graph()
    assert "unslothify.model.choice" in graph["unslothify.config"], "the graph sees imports"
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph))


def test_the_cycle_finder_finds_one_made_by_an_import_inside_a_function(tmp_path):
    graph = import_graph()
    graph["unslothify.model.load"] = graph["unslothify.model.load"] | {"unslothify.train.session"}  # as pipeline once did
    assert find_cycle(graph) is not None


@pytest.mark.parametrize("path", sorted(PACKAGE.rglob("*.py")), ids=lambda p: str(p.relative_to(ROOT)))
def test_modules_are_short(path):
    assert len(path.read_text(encoding="utf-8").splitlines()) <= 450, "split it by what it does"


def test_importing_the_package_and_its_cli_loads_nothing_heavy():
    code = ("import sys, unslothify.cli, unslothify.config, unslothify.machine.runtime; "
            "print([m for m in ('torch', 'transformers', 'trl', 'unsloth', 'yaml') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "['yaml']", "only the config's YAML reader loads at import"
    runtime = subprocess.run([sys.executable, "-c", "import sys, unslothify.machine.runtime; print(sorted(m for m in sys.modules "
                              "if m.split('.')[0] in ('yaml', 'torch', 'unslothify')))"],
                             capture_output=True, text=True, cwd=ROOT)
    assert runtime.stdout.strip() == "['unslothify', 'unslothify.machine', 'unslothify.machine.runtime']", "runtime runs before anything is installed"


def functions_over(limit: int) -> list[str]:
    out = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1
                if n > limit:
                    out.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name} ({n} lines)")
    return out


def test_functions_are_short():
    assert functions_over(60) == [], "a function a reader holds in their head: split it into named steps"
