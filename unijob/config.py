"""Configuration: which backends exist, and the adapters built from them.

Sources, strongest first: :func:`configure` in code, the environment (``UNIJOB_BACKEND``,
``UNIJOB_URL``, ``UNIJOB_IMPORTS``, ``UNIJOB_OPTIONS``), ``[tool.unijob]`` in the nearest
``pyproject.toml``, and the built-in default. Adapters are built lazily, on first use.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import sys
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Literal

from unijob.errors import ConfigurationError

if TYPE_CHECKING:
    from unijob.adapters.base import Adapter

DEFAULT_ALIAS: Final = "default"
DEFAULT_BACKEND: Final = "huey"  # on unijob.sqlite3 in the working directory: no server
OnUnsupported = Literal["error", "warn"]


@dataclasses.dataclass(frozen=True)
class BackendSettings:
    """One named backend: which adapter, where its broker is, and adapter options."""

    backend: str
    url: str | None = None
    options: Mapping[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class Settings:
    backends: Mapping[str, BackendSettings] = dataclasses.field(
        default_factory=lambda: {DEFAULT_ALIAS: BackendSettings(DEFAULT_BACKEND)}
    )
    imports: tuple[str, ...] = ()  # job modules a worker imports, like Celery's ``include``
    log_arguments: bool = True
    on_unsupported: OnUnsupported = "error"  # or "warn": degrade with a warning
    bulk_chunk_size: int = 1000
    batch_retention: float = 7 * 24 * 3600  # seconds a finished batch's record is kept


class _State:
    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.settings: Settings | None = None
        self.adapters: dict[str, Adapter] = {}
        self.pinned: Adapter | None = None  # when set (tests), every alias resolves to it


_state = _State()


def settings() -> Settings:
    current = _state.settings
    if current is None:
        with _state.lock:
            if _state.settings is None:
                _state.settings = load_settings()
            current = _state.settings
    return current


def configure(
    backend: str | None = None,
    url: str | None = None,
    *,
    backends: Mapping[str, Mapping[str, Any] | BackendSettings] | None = None,
    imports: list[str] | tuple[str, ...] | None = None,
    log_arguments: bool | None = None,
    on_unsupported: OnUnsupported | None = None,
    bulk_chunk_size: int | None = None,
    batch_retention: float | None = None,
    **options: Any,
) -> Settings:
    """Configure unijob in code, over what the environment and pyproject.toml say.

    ``backend``/``url``/``**options`` set the ``default`` backend; ``backends`` adds named ones::

        unijob.configure("rq", "redis://localhost:6379/0",
                         backends={"reports": {"backend": "celery", "url": "amqp://..."}})
    """
    base = load_settings()
    named = dict(base.backends)
    if backend is not None or url is not None or options:
        previous = named.get(DEFAULT_ALIAS)
        if backend is None and previous is not None:
            backend = previous.backend
        named[DEFAULT_ALIAS] = BackendSettings(backend or DEFAULT_BACKEND, url, dict(options))
    for alias, spec in (backends or {}).items():
        named[alias] = spec if isinstance(spec, BackendSettings) else _backend_from_mapping(alias, spec)
    new = dataclasses.replace(
        base,
        backends=named,
        imports=tuple(imports) if imports is not None else base.imports,
        log_arguments=base.log_arguments if log_arguments is None else log_arguments,
        on_unsupported=on_unsupported or base.on_unsupported,
        bulk_chunk_size=bulk_chunk_size or base.bulk_chunk_size,
        batch_retention=base.batch_retention if batch_retention is None else batch_retention,
    )
    _validate(new)
    _install(new)
    return new


def get_adapter(alias: str = DEFAULT_ALIAS) -> Adapter:
    """The adapter for a named backend, built on first use."""
    pinned = _state.pinned
    if pinned is not None:
        return pinned
    adapter = _state.adapters.get(alias)
    if adapter is not None:
        return adapter
    with _state.lock:
        adapter = _state.adapters.get(alias)
        if adapter is None:
            spec = settings().backends.get(alias)
            if spec is None:
                known = ", ".join(sorted(settings().backends))
                raise ConfigurationError(f"no backend named {alias!r} is configured (configured: {known})")
            from unijob.adapters import adapter_class

            adapter = adapter_class(spec.backend)(alias=alias, url=spec.url, options=spec.options)
            _state.adapters[alias] = adapter
    return adapter


@contextlib.contextmanager
def override(adapter: Adapter | None = None, **configuration: Any) -> Iterator[Settings]:
    """Temporarily reconfigure (tests). With ``adapter``, every backend alias resolves to it."""
    with _state.lock:
        saved = (_state.settings, _state.adapters, _state.pinned)
        _state.adapters = {}
    try:
        new = configure(**configuration) if configuration else settings()
        _state.pinned = adapter
        yield new
    finally:
        with _state.lock:
            _close_all(_state.adapters)
            _state.settings, _state.adapters, _state.pinned = saved


def reset() -> None:
    """Forget the configuration in code; the next use reloads it from environment and pyproject."""
    _install(None)


def _install(new: Settings | None) -> None:
    with _state.lock:
        old, _state.adapters = _state.adapters, {}
        _state.settings = new
    _close_all(old)


def _close_all(adapters: Mapping[str, Adapter]) -> None:
    for adapter in adapters.values():
        adapter.close()


# --- loading -----------------------------------------------------------------------------------


def load_settings(cwd: Path | None = None) -> Settings:
    """Settings from pyproject.toml's ``[tool.unijob]``, then the environment over it."""
    table = _pyproject_table(cwd or Path.cwd())
    env = os.environ
    named: dict[str, BackendSettings] = {}
    for alias, spec in (table.get("backends") or {}).items():
        named[alias] = _backend_from_mapping(alias, spec)
    default = named.get(DEFAULT_ALIAS) or BackendSettings(DEFAULT_BACKEND)
    if "backend" in table or "url" in table or "options" in table:
        default = BackendSettings(
            table.get("backend", default.backend), table.get("url", default.url), table.get("options", default.options)
        )
    if env.get("UNIJOB_BACKEND") or env.get("UNIJOB_URL") or env.get("UNIJOB_OPTIONS"):
        options = default.options
        if env.get("UNIJOB_OPTIONS"):
            try:
                options = json.loads(env["UNIJOB_OPTIONS"])
            except ValueError as exc:
                raise ConfigurationError(f"UNIJOB_OPTIONS must be a JSON object: {exc}") from exc
        default = BackendSettings(env.get("UNIJOB_BACKEND") or default.backend, env.get("UNIJOB_URL") or default.url, options)
    named[DEFAULT_ALIAS] = default
    imports = tuple(table.get("imports", ()))
    if env.get("UNIJOB_IMPORTS"):
        imports = tuple(name.strip() for name in env["UNIJOB_IMPORTS"].split(",") if name.strip())
    result = Settings(
        backends=named,
        imports=imports,
        log_arguments=bool(table.get("log_arguments", True)),
        on_unsupported=table.get("on_unsupported", "error"),
        bulk_chunk_size=int(table.get("bulk_chunk_size", 1000)),
        batch_retention=float(table.get("batch_retention", 7 * 24 * 3600)),
    )
    _validate(result)
    return result


def _backend_from_mapping(alias: str, spec: Mapping[str, Any]) -> BackendSettings:
    spec = dict(spec)
    if "backend" not in spec:
        raise ConfigurationError(f"backend {alias!r} needs a 'backend' key (for example 'rq' or 'celery')")
    backend = spec.pop("backend")
    url = spec.pop("url", None)
    options = {**spec.pop("options", {}), **spec}
    return BackendSettings(backend, url, options)


def _validate(new: Settings) -> None:
    if new.on_unsupported not in ("error", "warn"):
        raise ConfigurationError(f"on_unsupported must be 'error' or 'warn', not {new.on_unsupported!r}")
    if new.bulk_chunk_size < 1:
        raise ConfigurationError("bulk_chunk_size must be at least 1")
    from unijob.adapters import check_backend_name

    for spec in new.backends.values():
        check_backend_name(spec.backend)  # a typo fails here, with a suggestion


def _pyproject_table(start: Path) -> dict[str, Any]:
    for folder in (start, *start.parents):
        candidate = folder / "pyproject.toml"
        if candidate.is_file():
            if sys.version_info >= (3, 11):
                import tomllib
            else:  # pragma: no cover - Python 3.10
                import tomli as tomllib
            with candidate.open("rb") as handle:
                data = tomllib.load(handle)
            table = data.get("tool", {}).get("unijob", {})
            return table if isinstance(table, dict) else {}
    return {}
