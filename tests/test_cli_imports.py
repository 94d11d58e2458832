"""The package's import structure: no import cycle among steering's modules (module-level imports, read with
ast), no module outside steering/cli reaching for the CLI's private helpers, and the CLI importable without torch."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

from steering.config import PROJECT_ROOT

PACKAGE = PROJECT_ROOT / "steering"


def _module_name(path: Path, root: Path = PROJECT_ROOT) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules(package: Path = PACKAGE) -> dict[str, Path]:
    return {_module_name(path, package.parent): path for path in sorted(package.rglob("*.py"))}


def _top_level_imports(tree: ast.Module) -> list[ast.Import | ast.ImportFrom]:
    """Imports run when the module is imported: module level, including under if/try (not `if TYPE_CHECKING`)."""
    found: list[ast.Import | ast.ImportFrom] = []

    def visit(body: list[ast.stmt]) -> None:
        for node in body:
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                found.append(node)
            elif isinstance(node, ast.If):
                if not (isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING"):
                    visit(node.body)
                visit(node.orelse)
            elif isinstance(node, ast.Try):
                for block in (node.body, node.orelse, node.finalbody, *[h.body for h in node.handlers]):
                    visit(block)

    visit(tree.body)
    return found


def _all_imports(tree: ast.Module) -> list[ast.Import | ast.ImportFrom]:
    """Every import that can run: functions included, `if TYPE_CHECKING:` blocks (type hints only) left out."""
    hints = {
        id(node)
        for block in ast.walk(tree)
        if isinstance(block, ast.If) and isinstance(block.test, ast.Name) and block.test.id == "TYPE_CHECKING"
        for statement in block.body
        for node in ast.walk(statement)
    }
    return [n for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom)) and id(n) not in hints]


def _targets(node: ast.Import | ast.ImportFrom, module: str, is_package: bool, known: set[str]) -> set[str]:
    """The steering modules an import statement loads (`from a import b`: a.b when that is a module, else a)."""
    if isinstance(node, ast.Import):
        names = [alias.name for alias in node.names]
    else:
        base = node.module or ""
        if node.level:  # relative import
            anchor = module.split(".") if is_package else module.split(".")[:-1]
            anchor = anchor[: len(anchor) - (node.level - 1)]
            base = ".".join(anchor + ([base] if base else []))
        names = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base for alias in node.names]
    out = set()
    for name in names:
        while name and name not in known:  # `import steering.x.y` where y is a name: its module
            name = name.rpartition(".")[0]
        if name:
            out.add(name)
    return out


def import_graph(package: Path = PACKAGE, anywhere: bool = False) -> dict[str, set[str]]:
    """Module -> the package's modules it imports at module level (a package's own submodules included);
    `anywhere`: imports inside functions too (the ones that only dodge a cycle hide it from the first graph)."""
    modules = _modules(package)
    known = set(modules)
    graph = {}
    for name, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        edges: set[str] = set()
        for node in _all_imports(tree) if anywhere else _top_level_imports(tree):
            edges |= _targets(node, name, path.name == "__init__.py", known)
        edges.discard(name)
        graph[name] = edges
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def connect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            connect(v)
    return found


def test_no_import_cycle_among_steering_modules():
    graph = import_graph()
    assert "steering.cli.parser" in graph and "steering.cli.chat" in graph["steering.cli.parser"]  # the graph is real
    assert cycles(graph) == [], "import cycles (module-level imports): " + "; ".join(
        " <-> ".join(c) for c in cycles(graph)
    )


# Cycles closed only by an import inside a function, each with the reason it is still there.
KNOWN_LAZY_CYCLES = {
    # RefusalDetector.from_config reads the refusal card's judge (behaviors.judge_for), which falls back to
    # refusal.DEFAULT_REFUSAL_PHRASES without a card. (normalise moved to core.judges: no longer part of it.)
    ("steering.core.behaviors", "steering.evaluation.refusal"),
}


def test_no_cycle_hidden_by_an_import_inside_a_function():
    """bench <-> cli <-> evaluate used to be dodged by imports inside functions; none is left but the known ones."""
    found = {tuple(c) for c in cycles(import_graph(anywhere=True))}
    assert found <= KNOWN_LAZY_CYCLES, (
        f"new import cycles through imports inside functions: {found - KNOWN_LAZY_CYCLES}"
    )


def test_the_cycle_check_finds_a_cycle(tmp_path):
    """Self-test on a sample package: a -> b -> c -> a is found, the parent-package import is not a cycle."""
    pkg = tmp_path / "steering"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("from steering.sub import a\n")
    (pkg / "sub" / "a.py").write_text("from steering.sub.b import f\n")
    (pkg / "sub" / "b.py").write_text("import steering.sub.c\ndef f():\n    from steering.sub import a\n")
    (pkg / "sub" / "c.py").write_text("from . import a\n")
    (pkg / "sub" / "d.py").write_text("from steering.sub import b\nif TYPE_CHECKING:\n    from steering.sub import a\n")
    graph = import_graph(pkg)
    assert graph["steering.sub.b"] == {"steering.sub.c"}  # the import inside a function does not count
    assert graph["steering.sub.d"] == {"steering.sub.b"}  # nor one under `if TYPE_CHECKING`
    assert import_graph(pkg, anywhere=True)["steering.sub.d"] == {"steering.sub.b"}  # type hints only: no cycle
    assert cycles(graph) == [["steering.sub.a", "steering.sub.b", "steering.sub.c"]]
    assert cycles(import_graph(pkg, anywhere=True)) == [["steering.sub.a", "steering.sub.b", "steering.sub.c"]]
    (pkg / "sub" / "c.py").write_text("def g():\n    from . import a\n")  # only inside a function now
    assert cycles(import_graph(pkg)) == []
    assert cycles(import_graph(pkg, anywhere=True)) == [["steering.sub.a", "steering.sub.b", "steering.sub.c"]]


def _imported_names(path: Path) -> list[tuple[str, str, int]]:
    """(module, name, line) of every `from steering.cli... import name` anywhere in the file, functions included."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("steering.cli"):
            found += [(node.module or "", alias.name, node.lineno) for alias in node.names]
    return found


def test_no_module_outside_the_cli_imports_its_private_helpers():
    outside = [p for p in PACKAGE.rglob("*.py") if "cli" not in p.relative_to(PACKAGE).parts]
    outside += [PROJECT_ROOT / "app.py", *sorted((PROJECT_ROOT / "scripts").glob("*.py"))]
    private = [
        f"{path.relative_to(PROJECT_ROOT)}:{line} {module}.{name}"
        for path in outside
        if path.exists()
        for module, name, line in _imported_names(path)
        if name.startswith("_")
    ]
    assert private == []


def test_importing_the_cli_does_not_import_torch():
    """`steering --help` stays light: the command modules import the model code only when a command runs."""
    code = "import sys, steering.cli; print('torch' in sys.modules, 'transformers' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=PROJECT_ROOT)
    assert out.stdout.split() == ["False", "False"]
