"""The test suite's own layout (issue 11 item 10): helpers live in helper modules (fixtures.py, cli_helpers.py,
app_harness.py, ...), never in test modules that others import; conftest.py holds fixtures; nothing edits sys.path
(pytest.ini's `pythonpath` puts the checkout and tests/ on it)."""

from __future__ import annotations

import ast
from pathlib import Path

TESTS = Path(__file__).resolve().parent


def _tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text(), filename=str(path))


def _imported_modules(tree: ast.Module) -> list[str]:
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.append(node.module)
            if node.module == "tests":  # from tests import test_x
                names += [f"tests.{alias.name}" for alias in node.names]
    return names


def test_no_test_module_is_imported_by_another_module():
    found = [
        f"{path.name}: {name}"
        for path in sorted(TESTS.glob("*.py"))
        for name in _imported_modules(_tree(path))
        if name.rpartition(".")[2].startswith("test_") or name == "conftest" or name.startswith("tests.conftest")
    ]
    assert not found, found


def test_nothing_edits_sys_path():
    edits = [
        f"{path.name}:{node.lineno}"
        for path in sorted(TESTS.glob("*.py"))
        for node in ast.walk(_tree(path))
        if isinstance(node, ast.Attribute)
        and node.attr in {"insert", "append", "extend"}
        and isinstance(node.value, ast.Attribute)
        and node.value.attr == "path"
        and isinstance(node.value.value, ast.Name)
        and node.value.value.id == "sys"
    ]
    assert not edits, edits


def test_conftest_holds_fixtures_only():
    """Every public function of conftest.py is a fixture; it imports only names it uses and re-exports none (tests
    import helpers from fixtures.py, not from conftest)."""
    text = (TESTS / "conftest.py").read_text()
    assert "noqa: F401" not in text  # the mark of a re-export "for older tests"
    tree = _tree(TESTS / "conftest.py")
    functions = [node for node in tree.body if isinstance(node, ast.FunctionDef) and not node.name.startswith("_")]
    assert functions
    for function in functions:
        decorators = [ast.unparse(d) for d in function.decorator_list]
        assert any(d.startswith("pytest.fixture") for d in decorators), function.name
    imported = {
        alias.asname or alias.name for node in tree.body if isinstance(node, ast.ImportFrom) for alias in node.names
    } - {"annotations"}
    used = {node.id for node in ast.walk(tree) if isinstance(node, ast.Name)}
    assert imported <= used, imported - used
