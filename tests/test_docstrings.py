"""Every public function, class and public method under steering/ has a docstring (issue 11 item 9).

Walks the source with `ast` (no import, so it is fast and needs no model). Public means: a module-level
function or class whose name does not start with "_", and a method (properties included) of such a class
whose name does not start with "_". Dunder methods (`__init__`, `__call__`, ...) are exempt; so are the
methods a dataclass generates, since they are not in the source.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "steering"


def _is_public(name: str) -> bool:
    return not name.startswith("_")


def _is_overload(node: ast.AST) -> bool:
    for deco in getattr(node, "decorator_list", []):
        target = deco.attr if isinstance(deco, ast.Attribute) else getattr(deco, "id", None)
        if target == "overload":
            return True
    return False


def _is_setter_or_deleter(node: ast.AST) -> bool:
    """`@x.setter` / `@x.deleter`: documented by the property's getter."""
    for deco in getattr(node, "decorator_list", []):
        if isinstance(deco, ast.Attribute) and deco.attr in ("setter", "deleter"):
            return True
    return False


def missing_docstrings(source: str, filename: str) -> list[str]:
    """Return "file:line name" for each public function, class or public method without a docstring.

    source: a module's Python text; filename: how to name it in the result.
    Raises SyntaxError if `source` does not parse.
    """
    tree = ast.parse(source, filename=filename)
    missing: list[str] = []
    funcs = (ast.FunctionDef, ast.AsyncFunctionDef)
    for node in tree.body:
        if isinstance(node, funcs) and _is_public(node.name) and not _is_overload(node):
            if ast.get_docstring(node) is None:
                missing.append(f"{filename}:{node.lineno} {node.name}")
        elif isinstance(node, ast.ClassDef) and _is_public(node.name):
            if ast.get_docstring(node) is None:
                missing.append(f"{filename}:{node.lineno} {node.name}")
            for item in node.body:
                if (
                    isinstance(item, funcs)
                    and _is_public(item.name)
                    and not _is_overload(item)
                    and not _is_setter_or_deleter(item)
                    and ast.get_docstring(item) is None
                ):
                    missing.append(f"{filename}:{item.lineno} {node.name}.{item.name}")
    return missing


def _package_files() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts)


def test_checker_finds_undocumented_items():
    """The checker itself: it flags what it should and nothing else (guards against a test that cannot fail)."""
    source = '''
def public():
    pass

def _private():
    pass

def documented():
    """Doc."""

class Thing:
    def method(self):
        pass

    @property
    def size(self):
        return 1

    @size.setter
    def size(self, value):
        pass

    def __init__(self):
        pass

    def _helper(self):
        pass

    def fine(self):
        """Doc."""

class _Hidden:
    def method(self):
        pass

class Good:
    """Doc."""

    def nested_ok(self):
        """Doc."""
        def inner():
            pass
'''
    found = missing_docstrings(source, "x.py")
    assert found == [
        "x.py:2 public",
        "x.py:11 Thing",
        "x.py:12 Thing.method",
        "x.py:16 Thing.size",
    ]


def test_package_files_found():
    files = _package_files()
    names = {p.name for p in files}
    assert "engine.py" in names and "hooks.py" in names, names


def test_every_public_item_has_a_docstring():
    missing: list[str] = []
    root = PACKAGE.parent
    for path in _package_files():
        missing += missing_docstrings(path.read_text(encoding="utf-8"), str(path.relative_to(root)))
    if missing:
        pytest.fail(f"{len(missing)} public items without a docstring:\n" + "\n".join(missing))
