"""The library's import rules (README, "Architecture"), read from the source:

* no private name crosses a module: ``from tts_lib.x import _y`` (or ``from .x import _y``)
  only inside ``x`` itself, in the library, its tests, scripts, assignments and the book's
  notebooks (``tts_lib._checks`` is a private *module* of public checks: importing its
  public names is the rule, not an exception);
* no import cycle between the library's modules (every ``import`` statement counts, also
  inside functions);
* ``import tts_lib.gpt2`` and the GPT-2 command line load neither matplotlib nor tqdm.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LIB = ROOT / "tts_lib"

#: private names that cross a module in files another branch owns, each with the fix that
#: branch is asked to merge; the test fails when such an import disappears (stale entry)
PENDING: dict[tuple[str, str], str] = {
}


def _module_of(path: Path) -> str | None:
    """``tts_lib.x`` for a library file, None for any other file."""
    try:
        rel = path.relative_to(LIB)
    except ValueError:
        return None
    return "tts_lib." + rel.with_suffix("").as_posix().replace("/", ".").removesuffix(".__init__")


def _imports(tree: ast.AST, module: str | None) -> list[tuple[str, list[str]]]:
    """(imported module, names) of every import statement, relative imports resolved."""
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                if module is None:
                    continue
                # relative to the module's package (a package's own __init__ is named by the package)
                parts = module.split(".")
                package = parts if module == "tts_lib" else parts[:-1]
                base = package[: len(package) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            out.append((target, [a.name for a in node.names]))
        elif isinstance(node, ast.Import):
            out.extend((a.name, []) for a in node.names)
    return out


def _sources() -> list[tuple[str, str, str | None]]:
    """(label, source, module) of every Python source and notebook code cell to check."""
    files = [p for d in ("tts_lib", "tests", "scripts", "assignments") for p in sorted((ROOT / d).rglob("*.py"))]
    out = [(p.relative_to(ROOT).as_posix(), p.read_text(encoding="utf-8"), _module_of(p)) for p in files]
    for nb in sorted((ROOT / "book").glob("*.ipynb")) + sorted((ROOT / "assignments").rglob("*.ipynb")):
        cells = json.loads(nb.read_text(encoding="utf-8"))["cells"]
        for i, cell in enumerate(cells):
            if cell["cell_type"] == "code":
                src = "".join(cell["source"])
                lines = [ln for ln in src.splitlines() if not ln.lstrip().startswith(("%", "!"))]
                out.append((f"{nb.relative_to(ROOT).as_posix()}[cell {i}]", "\n".join(lines), None))
    return out


def _crossings() -> set[tuple[str, str]]:
    found = set()
    for label, src, module in _sources():
        try:
            tree = ast.parse(src)
        except SyntaxError:
            continue  # a notebook cell of shell magics or a deliberately broken exercise
        for target, names in _imports(tree, module):
            if not target.startswith("tts_lib") or target == module:
                continue
            found |= {(label, f"{target}.{n}") for n in names if n.startswith("_") and not n.startswith("__")}
    return found


def test_no_private_name_crosses_a_module():
    found = _crossings()
    new = sorted(found - set(PENDING))
    assert not new, f"private names imported across modules (make them public or keep them home): {new}"
    stale = sorted(set(PENDING) - found)
    assert not stale, f"PENDING lists imports that are gone: remove {stale}"


def test_the_checker_sees_a_private_import(tmp_path):
    """The rule fires on the forms it must catch (absolute and relative)."""
    src = "from tts_lib.prompts import _draw_prompts\nfrom .train import check_run, _x\n"
    got = _imports(ast.parse(src), "tts_lib.cot_training")
    assert got == [("tts_lib.prompts", ["_draw_prompts"]), ("tts_lib.train", ["check_run", "_x"])]


def _graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for path in sorted(LIB.rglob("*.py")):
        module = _module_of(path)
        targets = {t for t, _ in _imports(ast.parse(path.read_text(encoding="utf-8")), module)}
        # `from . import x` names submodules: resolve `tts_lib` + name
        for t, names in _imports(ast.parse(path.read_text(encoding="utf-8")), module):
            if t == "tts_lib":
                targets |= {f"tts_lib.{n}" for n in names}
        graph[module] = {t for t in targets if t.startswith("tts_lib.") and t != module}
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected set of two or more modules (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_no_import_cycle():
    graph = _graph()
    assert not _cycles(graph), f"import cycles between tts_lib modules: {_cycles(graph)}"
    # the GPT-2 layers: checkpoints load without the training code; nothing imports the CLI
    assert not {"tts_lib.gpt2_train", "tts_lib.gpt2_trainer"} & graph["tts_lib.gpt2_checkpoint"]
    assert not [m for m, deps in graph.items() if "tts_lib.gpt2_train" in deps]  # the CLI is on top


def test_the_cycle_finder_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


GPT2_MODULES = ("tts_lib.gpt2", "tts_lib.gpt2_train", "tts_lib.gpt2_checkpoint")


@pytest.fixture(scope="module")
def plotting_loaded() -> dict[str, list[str]]:
    """Beyond what torch itself loads (torch imports tqdm for its hub): which of matplotlib,
    tqdm and ipywidgets each ``import module`` newly loads, in one fresh interpreter that
    imports the GPT-2 modules one after another, then ``tts_lib.plotting`` (the control: a
    module that does load them). A module that loads one is named, whatever the order: a
    later module cannot hide what an earlier one loaded."""
    code = ("import json, sys, torch\nout = {}\n"
            f"for name in {[*GPT2_MODULES, 'tts_lib.plotting']!r}:\n"
            "    before = set(sys.modules)\n"
            "    __import__(name)\n"
            "    new = {m.split('.')[0] for m in set(sys.modules) - before}\n"
            "    out[name] = sorted(new & {'matplotlib', 'tqdm', 'ipywidgets'})\n"
            "print(json.dumps(out))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    return json.loads(out.stdout)


@pytest.mark.parametrize("module", GPT2_MODULES)
def test_gpt2_imports_no_plotting(module, plotting_loaded):
    """The GPT-2 modules load no matplotlib, tqdm or ipywidgets."""
    assert plotting_loaded[module] == [], f"import {module} loaded {plotting_loaded[module]}"


def test_the_plotting_probe_can_fail(plotting_loaded):
    assert "matplotlib" in plotting_loaded["tts_lib.plotting"]


def test_modules_load_on_first_use():
    code = "import tts_lib; t = tts_lib.theory; from tts_lib import plotting; print(t.__name__, plotting.__name__)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.split() == ["tts_lib.theory", "tts_lib.plotting"]
