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


# ----------------------------------------------------------------------------------------------------------
# Rooms: modules grouped by role; the shared vocabulary at the top
# ----------------------------------------------------------------------------------------------------------

ROOMS = {"model", "machine", "data", "score", "train", "export", "ui"}  # docs/usage.md, "How the code is laid out"
TOP_LEVEL = {"__init__", "__main__", "cli", "pipeline", "config", "knobs", "recipes", "runs", "errors", "fsutil"}


def test_modules_live_in_rooms_by_role():
    rooms = {p.parent.name for p in PACKAGE.glob("*/__init__.py")}
    assert rooms == ROOMS, "a new room goes into the architecture section of docs/usage.md too"
    assert {p.stem for p in PACKAGE.glob("*.py")} <= TOP_LEVEL, "a module does one room's job: put it in that room"


def test_no_class_is_longer_than_a_reader_holds():
    long = [f"{path.relative_to(ROOT)}:{node.lineno} {node.name} ({node.end_lineno - node.lineno + 1} lines)"
            for path in sorted(PACKAGE.rglob("*.py")) for node in ast.walk(ast.parse(path.read_text()))
            if isinstance(node, ast.ClassDef) and node.end_lineno - node.lineno + 1 > 200]
    assert long == []


# Private names of other libraries the package calls where they have no public equivalent, each with why.
THIRD_PARTY_PRIVATE: dict[str, str] = {}


def private_reaches(paths) -> list[str]:
    """`from x import _name` of our own modules, and `obj._name` on anything but self or cls."""
    out = []
    for path in paths:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and (node.level or (node.module or "").startswith("unslothify")):
                out += [f"{path.relative_to(ROOT)}:{node.lineno} imports {a.name}" for a in node.names
                        if a.name.startswith("_") and not a.name.startswith("__")]
            if isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__"):
                owner = node.value.id if isinstance(node.value, ast.Name) else None
                if owner not in ("self", "cls") and node.attr not in THIRD_PARTY_PRIVATE:
                    out.append(f"{path.relative_to(ROOT)}:{node.lineno} reads {owner or '(expression)'}.{node.attr}")
    return out


def test_no_module_reaches_into_another_objects_private_names():
    assert private_reaches([*PACKAGE.rglob("*.py"), *(ROOT / "scripts").glob("*.py")]) == []


def test_the_private_name_finder_finds_a_reach(tmp_path):
    sample = ROOT / "tests" / "_reach_sample.py"
    try:
        sample.write_text("from unslothify.runs import _hidden\n\ndef f(session):\n    return session._state\n")
        assert len(private_reaches([sample])) == 2
    finally:
        sample.unlink()


# ----------------------------------------------------------------------------------------------------------
# One home per value, and a short road from a knob to SFTConfig
# ----------------------------------------------------------------------------------------------------------

def knob_names() -> set[str]:
    import dataclasses

    from unslothify.config import AugmentConfig, knob_fields

    return {f.name for f in knob_fields()} | {f.name for f in dataclasses.fields(AugmentConfig)}


def recipe_literals(paths) -> list[str]:
    """Dicts in code that set two knobs or more to values written there: a recipe in Python (recipes are YAML,
    recipes/). A dict of what a run read from its config, or of slider ends keyed by knob, sets nothing."""
    knobs, out = knob_names(), []

    def sets(key, value) -> bool:
        if key not in knobs:
            return False
        if isinstance(value, ast.List):
            return all(isinstance(v, ast.Constant) for v in value.elts)
        return isinstance(value, ast.Constant) and value.value is not None and not isinstance(value.value, str) \
            or isinstance(value, ast.Constant) and key in ("optim", "lr_scheduler_type", "model", "recipe")

    for path in paths:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            pairs = []
            if isinstance(node, ast.Dict):
                pairs = [(k.value, v) for k, v in zip(node.keys, node.values) if isinstance(k, ast.Constant)]
            elif isinstance(node, ast.Call) and getattr(node.func, "id", None) == "dict":
                pairs = [(k.arg, k.value) for k in node.keywords]
            chosen = sorted(k for k, v in pairs if sets(k, v))
            if len(chosen) >= 2:
                out.append(f"{path.relative_to(ROOT)}:{node.lineno} {chosen}")
    return out


def test_no_recipe_value_lives_in_a_python_file():
    assert recipe_literals([*PACKAGE.rglob("*.py"), *(ROOT / "scripts").glob("*.py")]) == []


def test_scripts_run_as_modules_without_editing_sys_path():
    edits = []
    for path in sorted((ROOT / "scripts").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            target = node.func.value if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) else None
            targets = node.targets if isinstance(node, ast.Assign) else [target] if target is not None else []
            for t in targets:
                t = t.value if isinstance(t, ast.Subscript) else t
                if isinstance(t, ast.Attribute) and t.attr == "path" and getattr(t.value, "id", None) == "sys":
                    edits.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert edits == [], "python -m scripts.<name> from the project folder finds the package and the scripts"
    assert (ROOT / "scripts" / "__init__.py").exists()


@pytest.mark.slow
def test_a_recipe_value_reaches_sft_config_through_three_functions(tmp_path):
    """Walk the learning rate from a recipe file to the SFTConfig that TRL receives: load_config parses and
    validates it once (one Config made), the training call carries that object as it is (no Config made on the
    way), and sft_args hands the value over unchanged. The stack when SFTConfig is built holds the package's
    frames FineTune.train and sft_args alone."""
    from conftest import INVENTED
    from unslothify.config import Config, load_config
    from unslothify.data.prepare import prepare
    from unslothify.model.load import import_unsloth
    from unslothify.train.session import FineTune

    import_unsloth()  # before TRL, as in every road of the package
    import trl

    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("base: smollm2-cpu\nlearning_rate: 1.234e-3   # the value walked\n")
    data = tmp_path / "train.jsonl"
    data.write_text("".join((INVENTED / "train.jsonl").read_text().splitlines(keepends=True)[:8]))
    made, seen = [], []

    def watch(frame, event, arg):
        if event != "call":
            return
        if frame.f_code is Config.__init__.__code__:
            made.append(frame.f_back.f_code.co_qualname)
        elif frame.f_code.co_name == "__init__" and isinstance(frame.f_locals.get("self"), trl.SFTConfig):
            stack, f = [], frame.f_back
            while f is not None:
                if "/unslothify/" in f.f_code.co_filename:
                    stack.append(f.f_code.co_qualname)
                f = f.f_back
            seen.append((stack, frame.f_locals.get("learning_rate"), len(made)))

    import sys

    sys.setprofile(watch)
    try:
        cfg = load_config(None, model="embedded", recipe=str(recipe), data=str(data), output_dir=str(tmp_path / "run"),
                          objective="skill", validation_split=0.0, num_train_epochs=0.5, max_train_minutes=0,
                          augment={"enabled": False})
    finally:
        sys.setprofile(None)
    assert made == ["_build"] and cfg.learning_rate == 1.234e-3, "parsed and validated once"
    prepare(cfg, plot=False, progress=lambda *_: None)
    ft = FineTune.start(cfg, progress=lambda *_: None)
    made.clear()
    sys.setprofile(watch)
    try:
        version = ft.train(cfg)
    finally:
        sys.setprofile(None)
    (stack, learning_rate, configs_made_before), = seen[:1]
    assert stack == ["sft_args", "FineTune.train"], stack
    assert configs_made_before == 0, f"a Config was made on the way: {made}"
    assert learning_rate == 1.234e-3 and version.manifest["config"]["learning_rate"] == 1.234e-3
