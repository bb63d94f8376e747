"""The error family lives in one module: every DigestError subclass is defined in digest.errors."""

import importlib
import inspect
import pkgutil
from types import ModuleType

import pytest

import digest
from digest import errors
from digest.errors import DigestError

RUNS_ON_IMPORT = {"digest.__main__"}  # ``python -m digest``: importing it runs the CLI


def digest_modules() -> list[ModuleType]:
    """Every module of the digest package, subpackages included, imported."""
    names = [
        info.name
        for info in pkgutil.walk_packages(digest.__path__, prefix="digest.")
        if info.name not in RUNS_ON_IMPORT
    ]
    return [importlib.import_module(name) for name in sorted(names)]


def family(base: type[DigestError]) -> list[type[DigestError]]:
    """``base`` and all its subclasses, however deep."""
    found = [base]
    for sub in base.__subclasses__():
        found.extend(family(sub))
    return found


def test_the_walk_sees_subpackages() -> None:
    names = {module.__name__ for module in digest_modules()}
    assert {"digest.errors", "digest.query.syntax", "digest.store", "digest.web.app"} <= names


def test_every_digest_error_is_defined_in_errors() -> None:
    """Checked both ways: module by module, and over every subclass imported anywhere."""
    outside = {
        f"{module.__name__}.{name}"
        for module in digest_modules()
        for name, value in vars(module).items()
        if inspect.isclass(value)
        and issubclass(value, DigestError)
        and value.__module__ == module.__name__
        and module.__name__ != errors.__name__
    }
    outside |= {
        f"{cls.__module__}.{cls.__qualname__}"
        for cls in family(DigestError)
        if cls.__module__.startswith("digest.") and cls.__module__ != errors.__name__
    }
    assert not outside, f"define these in digest/errors.py: {sorted(outside)}"


@pytest.mark.parametrize(
    ("module", "name"),
    [
        ("digest.render", "RenderError"),
        ("digest.dump_reader", "WorkerError"),
        ("digest.scheduler", "AlreadyRunning"),
        ("digest.lifecycle", "Refused"),
    ],
)
def test_moved_errors_still_resolve_where_they_were(module: str, name: str) -> None:
    assert getattr(importlib.import_module(module), name) is getattr(errors, name)
