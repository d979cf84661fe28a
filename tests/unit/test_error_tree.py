"""Every exception class of ``mcmp`` hangs from one root, ``mcmp.errors.PublisherError``: a static check.

``except PublisherError`` is then a promise a caller can rely on: it catches every error we raise
on purpose and nothing a library raised. A new exception on a bare ``Exception`` (or
``ValueError``…) fails here; keep a built-in base beside the root where callers catch it
(``class BadInput(PublisherError, ValueError)``).

The scan reads the source rather than importing every module: importing ``mcmp.worker.app``
outside a test's settings would bind the Celery app to the wrong broker for the tests that
follow. It sees classes nested in functions too, follows re-exports (``from mcmp.connectors
import ValidationError``) and imports only third-party bases to ask whether they are exceptions.
"""

from __future__ import annotations

import ast
import builtins
import importlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from tests import ROOT
from tests.python_source import parse

ROOT_ERROR = "mcmp.errors.PublisherError"


@dataclass
class Module:
    name: str
    aliases: dict[str, str] = field(default_factory=dict)  # local name -> dotted name it imports
    classes: dict[str, list[ast.expr]] = field(default_factory=dict)  # class name -> its bases
    nested: dict[str, list[ast.expr]] = field(default_factory=dict)  # "f.<locals>.C" -> its bases


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _read(path: Path) -> Module:
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    tree = parse(path.read_text(), str(path))
    module = Module(name)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                local = alias.asname or alias.name.partition(".")[0]
                module.aliases[local] = alias.name if alias.asname else local
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{anchor}.{base}" if base else anchor
            for alias in node.names:
                module.aliases[alias.asname or alias.name] = f"{base}.{alias.name}"
    for node in tree.body:
        if isinstance(node, ast.ClassDef):
            module.classes[node.name] = node.bases
    for scope in ast.walk(tree):
        if isinstance(scope, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            for node in ast.walk(scope):
                if isinstance(node, ast.ClassDef) and node is not scope:
                    module.nested[f"{scope.name}.<locals>.{node.name}"] = node.bases
    return module


class Scan:
    def __init__(self) -> None:
        self.modules = {m.name: m for m in map(_read, sorted((ROOT / "mcmp").rglob("*.py")))}

    def resolve(self, module: Module, base: ast.expr) -> str:
        """The dotted name a base expression refers to (``builtins.ValueError``, ``mcmp.x.C``)."""
        if isinstance(base, ast.Subscript):  # Generic[T]
            return self.resolve(module, base.value)
        if isinstance(base, ast.Attribute):
            return f"{self.resolve(module, base.value)}.{base.attr}"
        assert isinstance(base, ast.Name), f"{module.name}: cannot read base {ast.unparse(base)}"
        if base.id in module.classes:
            return f"{module.name}.{base.id}"
        if base.id in module.aliases:
            return self.canonical(module.aliases[base.id])
        assert hasattr(builtins, base.id), f"{module.name}: {base.id} is neither imported nor defined"
        return f"builtins.{base.id}"

    def canonical(self, dotted: str) -> str:
        """Follow re-exports of ours to the module that defines the class."""
        owner, _, attr = dotted.rpartition(".")
        module = self.modules.get(owner)
        if module is None or dotted in self.modules or attr in module.classes:
            return dotted
        assert attr in module.aliases, f"{dotted} is not defined in {owner}"
        return self.canonical(module.aliases[attr])

    def ancestors(self, module: Module, bases: list[ast.expr]) -> Iterator[str]:
        for base in bases:
            dotted = self.resolve(module, base)
            yield dotted
            owner, _, attr = dotted.rpartition(".")
            if owner in self.modules:
                yield from self.ancestors(self.modules[owner], self.modules[owner].classes[attr])

    def exceptions(self) -> dict[str, set[str]]:
        """Each exception class defined in ``mcmp`` -> every class it descends from."""
        found = {}
        for module in self.modules.values():
            for name, bases in (module.classes | module.nested).items():
                ancestry = set(self.ancestors(module, bases))
                if any(_is_foreign_exception(dotted) for dotted in ancestry):
                    found[f"{module.name}.{name}"] = ancestry
        return found


def _is_foreign_exception(dotted: str) -> bool:
    if dotted.startswith("mcmp."):
        return False
    owner, _, attr = dotted.rpartition(".")
    value = getattr(importlib.import_module(owner), attr)
    return isinstance(value, type) and issubclass(value, BaseException)


def test_every_exception_of_ours_descends_from_the_root() -> None:
    found = Scan().exceptions()
    # The scan sees every layer (a scan that found nothing would pass vacuously).
    assert {
        "mcmp.config.settings.SettingsError",
        "mcmp.models.schedule.ScheduleTimeError",
        "mcmp.connectors.graph.classify.GraphNotFound",
        "mcmp.connectors.tenant_fetch.transport.NotResolved",
        "mcmp.worker.publishing.validation.PostInvalid",
        "mcmp.worker.services.errors.NothingToRetry",
        "mcmp.api.admission.BodyTooLarge",
        "mcmp.cli.dev.ChildDied",
    } <= found.keys()

    rootless = sorted(name for name, ancestry in found.items() if ROOT_ERROR not in ancestry | {name})
    assert not rootless, f"exceptions outside the {ROOT_ERROR} tree (drawn in mcmp/errors.py): {rootless}"


def test_built_in_bases_still_catch_what_they_caught() -> None:
    """The root was added beside the library bases callers catch (``except ValueError``, httpx's
    mapping of ``httpcore.ConnectError``, FastAPI's handling of ``HTTPException``), not instead."""
    import httpcore
    from starlette.exceptions import HTTPException

    from mcmp.api.admission import BodyTooLarge
    from mcmp.cli.dev import ChildDied
    from mcmp.config.settings import SettingsError
    from mcmp.connectors.registry import UnknownPlatformError
    from mcmp.connectors.signing import WeakSecretError
    from mcmp.connectors.tenant_fetch.transport import NotResolved
    from mcmp.errors import PublisherError
    from mcmp.models.db import IndexMismatch
    from mcmp.models.schedule import ScheduleTimeError
    from mcmp.worker.accounts.crypto import TokenKeyError
    from mcmp.worker.scheduling.posting_windows import PostingWindowError

    expected: dict[type[BaseException], type[BaseException]] = {
        ScheduleTimeError: ValueError,
        WeakSecretError: ValueError,
        PostingWindowError: ValueError,
        SettingsError: RuntimeError,
        IndexMismatch: RuntimeError,
        TokenKeyError: RuntimeError,
        ChildDied: RuntimeError,
        UnknownPlatformError: LookupError,
        NotResolved: httpcore.ConnectError,
        BodyTooLarge: HTTPException,
    }
    for cls, base in expected.items():
        assert issubclass(cls, PublisherError) and issubclass(cls, base), cls
    assert BodyTooLarge(10).status_code == 413
