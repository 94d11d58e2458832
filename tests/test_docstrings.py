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


# ---------------------------------------------------------------- the public API: full Google-style sections
def _has_section(doc: str, *names: str) -> bool:
    return any(line.strip() == f"{name}:" for line in doc.splitlines() for name in names)


def thin_docstring_problems(source: str) -> list[str]:
    """What a public API definition's docstring lacks, for the source text of one function or class.

    A function with arguments (besides self / cls) needs an "Args:" section; one annotated to return
    something other than None needs "Returns:" (or "Yields:" for a generator / context manager). A class
    that takes arguments (an `__init__` with parameters, or dataclass fields) needs "Args:" or "Attributes:".

    Args:
        source: the Python text of one top-level `def` or `class` (decorators allowed), dedented.

    Returns:
        list[str]: one phrase per missing section (empty when the docstring is complete).

    Raises:
        SyntaxError: `source` does not parse. ValueError: it holds no function or class.
    """
    node = next((n for n in ast.parse(source).body if isinstance(n, (ast.FunctionDef, ast.ClassDef))), None)
    if node is None:
        raise ValueError("no function or class in the source")
    doc = ast.get_docstring(node) or ""
    problems: list[str] = []
    if not doc:
        return ["no docstring"]
    if isinstance(node, ast.FunctionDef):
        args = node.args
        names = [a.arg for a in args.posonlyargs + args.args + args.kwonlyargs]
        names += [a.arg for a in (args.vararg, args.kwarg) if a is not None]
        if [n for n in names if n not in ("self", "cls")] and not _has_section(doc, "Args"):
            problems.append("no Args: section")
        returns = node.returns
        returns_none = returns is None or (isinstance(returns, ast.Constant) and returns.value in (None, "None"))
        if not returns_none and not _has_section(doc, "Returns", "Yields"):
            problems.append("no Returns: section")
    else:
        init = next((n for n in node.body if isinstance(n, ast.FunctionDef) and n.name == "__init__"), None)
        takes = bool(init and len(init.args.args) + len(init.args.kwonlyargs) > 1)
        takes = takes or any(isinstance(n, ast.AnnAssign) for n in node.body)
        if takes and not _has_section(doc, "Args", "Attributes"):
            problems.append("no Args: or Attributes: section")
    return problems


def test_thin_docstring_checker():
    """The checker fails a one-line docstring and passes a complete one (it can fail)."""
    thin = 'def load(settings: int) -> str:\n    """Load it."""\n'
    assert thin_docstring_problems(thin) == ["no Args: section", "no Returns: section"]
    full = (
        'def load(settings: int) -> str:\n    """Load it.\n\n    Args:\n        settings: x.\n\n'
        '    Returns:\n        y.\n    """\n'
    )
    assert thin_docstring_problems(full) == []
    assert thin_docstring_problems('def f() -> None:\n    """Do."""\n') == []
    ctx = '@contextmanager\ndef f(a):\n    """Do.\n\n    Args:\n        a: x.\n    """\n    yield\n'
    assert thin_docstring_problems(ctx) == []
    gen = 'def f(a) -> Iterator[int]:\n    """Do.\n\n    Args:\n        a: x.\n    """\n'
    assert thin_docstring_problems(gen) == ["no Returns: section"]
    assert thin_docstring_problems('@dataclass\nclass C:\n    """Doc."""\n\n    x: int\n') == [
        "no Args: or Attributes: section"
    ]
    assert thin_docstring_problems('class E(Exception):\n    """Doc."""\n') == []


def test_public_api_docstrings_have_sections():
    """Every name in steering.__all__: Args / Returns (functions), Args or Attributes (classes)."""
    import inspect
    import textwrap

    import steering

    problems: list[str] = []
    for name in steering.__all__:
        obj = inspect.unwrap(getattr(steering, name))
        source = textwrap.dedent(inspect.getsource(obj))
        problems += [f"steering.{name}: {p}" for p in thin_docstring_problems(source)]
    if problems:
        pytest.fail(f"{len(problems)} thin public docstrings:\n" + "\n".join(problems))
