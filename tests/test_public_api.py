"""The engine's public surface: ``engine.__all__`` is sorted and complete, and jobs/ keeps to it."""

from __future__ import annotations

import ast
import importlib
import pkgutil
import re
from pathlib import Path
from types import ModuleType

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
    """Every public name the package imports is exported in ``__all__``."""
    public = {
        name
        for name, value in vars(engine).items()
        if not name.startswith("_") and not isinstance(value, ModuleType) and name != "annotations"
    }

    assert public - set(engine.__all__) == set()


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
