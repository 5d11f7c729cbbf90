"""The engine's public surface: ``engine.__all__`` is sorted and complete, and jobs/ keeps to it."""

from __future__ import annotations

import ast
import importlib
import inspect
import pkgutil
import re
import subprocess
import sys
from pathlib import Path

import pytest

import engine

JOBS_DIR = Path(__file__).resolve().parent.parent / "jobs"
ENGINE_MODULES = sorted(
    f"engine.{m.name}" for m in pkgutil.iter_modules(engine.__path__) if m.name != "__main__"
)


def isort_style(name: str) -> tuple[int, str]:
    """ruff RUF022's order: SCREAMING_SNAKE_CASE, then CamelCase, then everything else."""
    if name.isupper():
        return (0, name)
    if name[:1].isupper():
        return (1, name)
    return (2, name)


def test_version_is_the_installed_packages() -> None:
    """``engine.__version__`` (the User-Agent's) is the version pip installed (the metadata's)."""
    from importlib.metadata import version

    assert engine.__version__ == version("ghl-migrate")


def test_all_is_sorted() -> None:
    """``engine.__all__`` is in ruff's isort-style order (RUF022)."""
    assert engine.__all__ == sorted(engine.__all__, key=isort_style)


def test_all_has_no_duplicates() -> None:
    """No name is listed twice in ``engine.__all__``."""
    assert len(engine.__all__) == len(set(engine.__all__))


def test_every_exported_name_resolves() -> None:
    """Every name in ``engine.__all__`` is an attribute of the package."""
    missing = [name for name in engine.__all__ if not hasattr(engine, name)]

    assert missing == []


def test_all_is_complete() -> None:
    """The names the package imports on first use are exactly those in ``__all__``."""
    assert sorted(engine._MODULE_OF) == sorted(engine.__all__)


def test_each_name_comes_from_the_module_that_defines_it() -> None:
    """Each exported class or function is fetched from its own module, not from a re-export
    (``from engine import RunConfig`` must not load the runner)."""
    elsewhere = {
        name: value.__module__
        for name in engine.__all__
        if isinstance(value := getattr(engine, name), type) or inspect.isfunction(value)
        if value.__module__.startswith("engine.")  # not an alias of str
        and value.__module__ != f"engine.{engine._MODULE_OF[name]}"
    }

    assert elsewhere == {}


def test_type_checkers_see_what_the_package_imports_on_first_use() -> None:
    """The ``if TYPE_CHECKING:`` imports name the same module for each name as ``__getattr__``."""
    tree = ast.parse(Path(engine.__file__).read_text(encoding="utf-8"))
    guarded = next(
        node
        for node in tree.body
        if isinstance(node, ast.If)
        and isinstance(node.test, ast.Name)
        and node.test.id == "TYPE_CHECKING"
    )
    seen = {
        alias.name: node.module
        for node in guarded.body
        if isinstance(node, ast.ImportFrom)
        for alias in node.names
    }

    assert seen == engine._MODULE_OF


def test_importing_the_package_imports_none_of_its_modules() -> None:
    """``import engine`` loads no engine module (nor aiohttp): each loads when a name needs it."""
    code = "import sys, engine; print(sorted(m for m in sys.modules if m.startswith(LOADED)))"
    code = code.replace("LOADED", repr(("engine.", "aiohttp")))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)

    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("module_name", ENGINE_MODULES)
def test_every_engine_module_declares_a_valid_all(module_name: str) -> None:
    """Each engine module has an ``__all__`` of unique names that all resolve."""
    module = importlib.import_module(module_name)

    exported = module.__all__
    assert len(exported) == len(set(exported))
    assert [name for name in exported if not hasattr(module, name)] == []


def _engine_imports(path: Path) -> list[tuple[int, str, list[str]]]:
    """(line, module, names) for every import of ``engine`` or a submodule in ``path``."""
    found: list[tuple[int, str, list[str]]] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module == "engine" or node.module.startswith("engine."):
                found.append((node.lineno, node.module, [a.name for a in node.names]))
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == "engine" or alias.name.startswith("engine."):
                    found.append((node.lineno, alias.name, []))
    return found


JOBS_FILES = sorted(JOBS_DIR.rglob("*.py"))


def test_jobs_files_are_found() -> None:
    """The jobs/ scan below really sees the job modules."""
    assert {p.name for p in JOBS_FILES} >= {"__init__.py", "associations.py"}


@pytest.mark.parametrize("path", JOBS_FILES, ids=lambda p: str(p.relative_to(JOBS_DIR)))
def test_jobs_import_only_public_engine_names(path: Path) -> None:
    """jobs/ modules import only public engine modules and only names those modules export."""
    problems: list[str] = []
    for line, module_name, names in _engine_imports(path):
        where = f"{path.name}:{line}"
        if any(part.startswith("_") for part in module_name.split(".")):
            problems.append(f"{where}: private module {module_name}")
            continue
        exported = set(importlib.import_module(module_name).__all__)
        problems.extend(
            f"{where}: {module_name}.{name} is not in its __all__"
            for name in names
            if name not in exported
        )

    assert problems == []


def _drawn_tree(doc: str) -> dict[str, str]:
    """Class name -> the name drawn as its parent, from an indented ├─/└─ tree."""
    parents: dict[str, str] = {}
    stack: list[tuple[int, str]] = []  # (column of the name, name), outermost first
    for line in doc.splitlines():
        match = re.match(r"^([\s│├└─]*)([A-Z]\w+)\b", line)
        if not match or not line.startswith("    "):
            continue
        column, name = len(match.group(1)), match.group(2)
        while stack and stack[-1][0] >= column:
            stack.pop()
        parents[name] = stack[-1][1] if stack else ""
        stack.append((column, name))
    return parents


def test_the_error_tree_draws_every_engine_error() -> None:
    """errors.py's docstring tree draws every EngineError the package exports, under its base."""
    import engine.errors

    drawn = _drawn_tree(engine.errors.__doc__ or "")
    exported = [getattr(engine, name) for name in engine.__all__]
    errors = [e for e in exported if isinstance(e, type) and issubclass(e, engine.EngineError)]
    assert {e.__name__: drawn.get(e.__name__) for e in errors} == {
        e.__name__: "" if e is engine.EngineError else e.__mro__[1].__name__ for e in errors
    }
