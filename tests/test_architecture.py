"""The package's shape, checked from its source (ast, nothing imported): the import graph of
vaekit follows the layer table of issue 29 (no import of a higher layer, no cycle), few modules
sit flat in vaekit/, and no function is long."""

from __future__ import annotations

import ast
from pathlib import Path

import vaekit

ROOT = Path(vaekit.__file__).parent

# Low -> high. A module imports only from its own layer or lower ones. A package name covers its
# submodules; "vaekit" itself (its __init__: vaekit.load and the lazy names) is the top.
LAYERS = {
    1: ("vaekit.config", "vaekit.errors", "vaekit.outputs", "vaekit._version"),
    2: ("vaekit.losses", "vaekit.likelihoods"),
    3: ("vaekit.priors",),
    4: ("vaekit.models", "vaekit.objectives"),
    5: ("vaekit.checkpoint",),
    6: ("vaekit.data", "vaekit.runtime"),
    7: ("vaekit.training", "vaekit.evaluation", "vaekit.figures", "vaekit.formats"),
    8: ("vaekit.explorer",),
    9: ("vaekit.api",),
    10: ("vaekit.cli", "vaekit.__main__"),
}
TOP = max(LAYERS)

MAX_FUNCTION_LINES = 80
MAX_FLAT_MODULES = 10
NOT_COUNTED = {"__init__.py", "__main__.py", "_version.py"}


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    """Every module of vaekit by dotted name (a package by its own name)."""
    return {module_name(p): p for p in sorted(ROOT.rglob("*.py"))}


def layer(module: str) -> int:
    """The layer of a module by the longest entry of LAYERS that is it or holds it."""
    if module == "vaekit":
        return TOP
    found = [
        (len(prefix), n)
        for n, prefixes in LAYERS.items()
        for prefix in prefixes
        if module == prefix or module.startswith(prefix + ".")
    ]
    assert found, f"{module} is in no layer of LAYERS: give it one"
    return max(found)[1]


def type_checking_only(tree: ast.Module) -> set[ast.AST]:
    """The nodes under `if TYPE_CHECKING:` (never run: not an import at run time)."""
    skipped = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.body:
                skipped |= set(ast.walk(child))
    return skipped


def imports(name: str, path: Path, known: set[str]) -> set[str]:
    """The vaekit modules that a module imports, at the top or inside functions: `from .x import
    y` is x (or x.y when that is a module), `from . import y` is y."""
    tree = ast.parse(path.read_text())
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    skipped = type_checking_only(tree)
    targets = set()
    for node in ast.walk(tree):
        if node in skipped:
            continue
        if isinstance(node, ast.Import):
            targets |= {a.name for a in node.names if a.name.split(".")[0] == "vaekit"}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{base}.{node.module}" if node.module else base
            elif (node.module or "").split(".")[0] == "vaekit":
                base = node.module
            else:
                continue
            targets |= {
                f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names
            }
    out = set()
    for t in targets:
        while t not in known:  # vaekit.x.name (not a module) -> vaekit.x
            t = t.rsplit(".", 1)[0]
        out.add(t)
    return out - {name}


def import_graph() -> dict[str, set[str]]:
    found = modules()
    return {name: imports(name, path, set(found)) for name, path in found.items()}


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
    """Each import of a module of a higher layer, as "a (layer i) imports b (layer j)"."""
    return [
        f"{m} (layer {layer(m)}) imports {t} (layer {layer(t)})"
        for m, targets in sorted(graph.items())
        for t in sorted(targets)
        if layer(t) > layer(m)
    ]


def cycles(graph: dict[str, set[str]]) -> list[str]:
    """The import cycles a depth-first walk meets, as "a -> b -> a"."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    found = []

    def visit(m: str, path: list[str]) -> None:
        state[m] = 1
        for t in sorted(graph.get(m, ())):
            if state.get(t) == 1:
                found.append(" -> ".join([*path[path.index(t) :], t]))
            elif t not in state:
                visit(t, [*path, t])
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m, [m])
    return found


def test_no_module_imports_from_a_higher_layer():
    assert upward_imports(import_graph()) == []


def test_the_import_graph_has_no_cycle():
    assert cycles(import_graph()) == []


def test_the_checks_find_an_upward_import_and_a_cycle(tmp_path):
    """The checks themselves, on a made-up module: its imports are read (relative, absolute,
    in a function; not under TYPE_CHECKING), an upward one and a cycle are reported."""
    fake = tmp_path / "x.py"
    fake.write_text(
        "from typing import TYPE_CHECKING\n"
        "from ..training import fit\n"
        "from .. import checkpoint\n"
        "if TYPE_CHECKING:\n    from ..cli import main\n"
        "def f():\n    import vaekit.losses\n"
    )
    known = {"vaekit", "vaekit.data", "vaekit.data.x", "vaekit.training", "vaekit.checkpoint"}
    known |= {"vaekit.cli", "vaekit.losses"}
    graph = {"vaekit.data.x": imports("vaekit.data.x", fake, known)}
    assert graph["vaekit.data.x"] == {"vaekit.training", "vaekit.checkpoint", "vaekit.losses"}
    assert upward_imports(graph) == ["vaekit.data.x (layer 6) imports vaekit.training (layer 7)"]
    graph |= {"vaekit.training": {"vaekit.data.x"}}
    assert cycles(graph) == ["vaekit.data.x -> vaekit.training -> vaekit.data.x"]


def test_few_modules_sit_flat_in_vaekit():
    flat = sorted(p.name for p in ROOT.glob("*.py") if p.name not in NOT_COUNTED)
    assert len(flat) <= MAX_FLAT_MODULES, flat


def test_no_function_is_longer_than_80_lines():
    long = []
    for path in sorted(ROOT.rglob("*.py")):
        rel = path.relative_to(ROOT.parent).as_posix()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    long.append(f"{rel}:{node.lineno} {node.name}: {lines} lines")
    assert long == []


def test_the_operations_names_are_free_at_the_top_level():
    """vaekit.evaluate, vaekit.metrics, vaekit.export, vaekit.explore name the operations' functions
    (issue 29), so no module or package of vaekit/ may take those names."""
    taken = {p.stem for p in ROOT.glob("*.py")} | {p.name for p in ROOT.iterdir() if p.is_dir()}
    names = {"train", "evaluate", "sample", "reconstruct", "traverse", "interpolate", "encode"}
    names |= {"score", "metrics", "export", "explore", "prior"}
    assert sorted(taken & names) == []
