"""Adapter names to adapter classes, resolved lazily (kombu's transport alias table).

A name is one of the aliases below or a ``"package.module:ClassName"`` path to a custom
:class:`~unijob.adapters.base.Adapter` subclass. Nothing is imported until an adapter is built.
"""

from __future__ import annotations

import difflib
import importlib
from typing import Final, NamedTuple

from unijob.adapters.base import Adapter
from unijob.errors import BackendNotInstalledError, ConfigurationError


class _Alias(NamedTuple):
    module: str
    cls: str
    extra: str | None  # the ``unijob[...]`` extra that installs the queue library


ALIASES: Final[dict[str, _Alias]] = {
    "inline": _Alias("unijob.adapters.inline", "InlineAdapter", None),
    "test": _Alias("unijob.adapters.test", "TestAdapter", None),
    "huey": _Alias("unijob.adapters.huey", "HueyAdapter", "huey"),
    "celery": _Alias("unijob.adapters.celery", "CeleryAdapter", "celery"),
    "rq": _Alias("unijob.adapters.rq", "RQAdapter", "rq"),
    "dramatiq": _Alias("unijob.adapters.dramatiq", "DramatiqAdapter", "dramatiq"),
}


def check_adapter_name(name: str) -> None:
    """Fail on a name that is neither an alias nor a ``module:Class`` path, with a suggestion."""
    _lookup(name)


def _lookup(name: str) -> _Alias:
    if not isinstance(name, str):
        raise ConfigurationError(f"an adapter is named by a string, not {name!r} (known: {', '.join(ALIASES)})")
    alias = ALIASES.get(name)
    if alias is None and ":" in name:
        module, _, cls = name.partition(":")
        alias = _Alias(module, cls, None)
    if alias is None:
        close = difflib.get_close_matches(name.lower(), ALIASES, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ConfigurationError(f"unknown unijob adapter {name!r}{hint} (known: {', '.join(ALIASES)})")
    return alias


def adapter_class(name: str) -> type[Adapter]:
    """The adapter class for an adapter name, importing its module (and queue library) now."""
    alias = _lookup(name)
    try:
        module = importlib.import_module(alias.module)
    except ImportError as exc:
        if alias.extra is not None and not (exc.name or "").startswith("unijob"):
            raise BackendNotInstalledError(
                f'the {name!r} adapter needs {exc.name!r}, which is not installed: pip install "unijob[{alias.extra}]"'
            ) from exc
        if alias.extra is not None:
            raise
        raise ConfigurationError(f"adapter {name!r}: cannot import {alias.module!r}: {exc}") from exc
    cls = getattr(module, alias.cls, None)
    if not (isinstance(cls, type) and issubclass(cls, Adapter)):
        raise ConfigurationError(f"adapter {name!r}: {alias.module} has no Adapter subclass named {alias.cls!r}")
    return cls
