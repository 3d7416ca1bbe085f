"""Configuration: which backends exist, and the adapters built from them.

A *backend* is a name (``default``, ``reports``) jobs are sent to; its *adapter* says what runs it
(``rq``, ``celery``, ...), with a URL and options. Sources, strongest first: :func:`configure` in
code, the environment (``UNIJOB_ADAPTER``, ``UNIJOB_URL``, ``UNIJOB_IMPORTS``, ``UNIJOB_OPTIONS``),
``[tool.unijob]`` in the nearest ``pyproject.toml``, and the built-in default. A source that
changes a backend's adapter replaces that backend's URL-independent options from weaker sources.
Adapters are built lazily, on first use, and are handed everything they need.
"""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import json
import os
import random
import sys
import threading
import warnings
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Final, Literal

from unijob.adapters import adapter_class, check_adapter_name
from unijob.adapters.base import Adapter
from unijob.constants import DEFAULT_ADAPTER, DEFAULT_BACKEND
from unijob.errors import ConfigurationError, Error, UnsupportedOptionError

OnUnsupported = Literal["error", "warn"]
ENVIRONMENT: Final = ("UNIJOB_ADAPTER", "UNIJOB_URL", "UNIJOB_IMPORTS", "UNIJOB_OPTIONS")
_RENAMED: Final = {"UNIJOB_BACKEND": "UNIJOB_ADAPTER"}


@dataclasses.dataclass(frozen=True)
class BackendSettings:
    """One named backend: its adapter, where its broker is, and adapter options."""

    adapter: str
    url: str | None = None
    options: Mapping[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class Route:
    """Send a job to another backend than its own, on every call or on ``percent`` of the calls
    (a migration moved one job at a time, or rolled out gradually)."""

    backend: str
    percent: float = 100.0


@dataclasses.dataclass(frozen=True)
class Settings:
    backends: Mapping[str, BackendSettings] = dataclasses.field(
        default_factory=lambda: {DEFAULT_BACKEND: BackendSettings(DEFAULT_ADAPTER)}
    )
    imports: tuple[str, ...] = ()  # job modules a worker imports, like Celery's ``include``
    log_arguments: bool = True
    on_unsupported: OnUnsupported = "error"  # or "warn": degrade with a warning
    bulk_chunk_size: int = 1000
    batch_retention: float = 7 * 24 * 3600  # seconds a finished batch's record is kept
    results: bool = False  # keep every job's status and return value (a job may choose: store_result)
    result_retention: float = 24 * 3600  # seconds a job's result record is kept
    routes: Mapping[str, Route] = dataclasses.field(default_factory=dict)  # job name -> another backend
    enqueue_after_commit: bool = False  # jobs enqueued in a database transaction wait for it to commit
    unique_for: float = 24 * 3600  # seconds a unique job's key is held at most (its job lost)
    recurring: Mapping[str, Mapping[str, Any]] = dataclasses.field(default_factory=dict)  # name -> schedule


SETTING_NAMES: Final = tuple(field.name for field in dataclasses.fields(Settings))
TABLE_KEYS: Final = frozenset({*SETTING_NAMES, "adapter", "url", "options"})  # [tool.unijob]


class _State:
    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.settings: Settings | None = None
        self.adapters: dict[str, Adapter] = {}
        self.pinned: Adapter | None = None  # when set (tests), every backend resolves to it


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
    adapter: str | None = None,
    url: str | None = None,
    *,
    backends: Mapping[str, Mapping[str, Any] | BackendSettings] | None = None,
    imports: list[str] | tuple[str, ...] | None = None,
    log_arguments: bool | None = None,
    on_unsupported: OnUnsupported | None = None,
    bulk_chunk_size: int | None = None,
    batch_retention: float | None = None,
    results: bool | None = None,
    result_retention: float | None = None,
    routes: Mapping[str, str | Mapping[str, Any] | Route] | None = None,
    enqueue_after_commit: bool | None = None,
    unique_for: float | None = None,
    recurring: Mapping[str, Mapping[str, Any]] | None = None,
    **options: Any,
) -> Settings:
    """Configure unijob in code, over what the environment and pyproject.toml say.

    ``adapter``/``url``/``**options`` set the ``default`` backend; ``backends`` adds named ones::

        unijob.configure("rq", "redis://localhost:6379/0",
                         backends={"reports": {"adapter": "celery", "url": "amqp://..."}})
    """
    base = load_settings()
    named = dict(base.backends)
    if adapter is not None or url is not None or options:
        named[DEFAULT_BACKEND] = _layer(named.get(DEFAULT_BACKEND), adapter, url, dict(options), replace_options=True)
    for name, spec in (backends or {}).items():
        named[name] = spec if isinstance(spec, BackendSettings) else _backend_from_mapping(name, spec)
    new = dataclasses.replace(
        base,
        backends=named,
        imports=tuple(imports) if imports is not None else base.imports,
        log_arguments=base.log_arguments if log_arguments is None else log_arguments,
        on_unsupported=on_unsupported or base.on_unsupported,
        bulk_chunk_size=base.bulk_chunk_size if bulk_chunk_size is None else bulk_chunk_size,
        batch_retention=base.batch_retention if batch_retention is None else batch_retention,
        results=base.results if results is None else results,
        result_retention=base.result_retention if result_retention is None else result_retention,
        routes={**base.routes, **_routes(routes or {})},
        enqueue_after_commit=base.enqueue_after_commit if enqueue_after_commit is None else enqueue_after_commit,
        unique_for=base.unique_for if unique_for is None else unique_for,
        recurring={**base.recurring, **(recurring or {})},
    )
    _validate(new)
    _install(new)
    return new


def get_adapter(backend: str = DEFAULT_BACKEND) -> Adapter:
    """The adapter of a configured backend, built on first use."""
    pinned = _state.pinned
    if pinned is not None:
        return pinned
    adapter = _state.adapters.get(backend)
    if adapter is not None:
        return adapter
    with _state.lock:
        adapter = _state.adapters.get(backend)
        if adapter is None:
            adapter = _state.adapters[backend] = _build(backend)
    return adapter


def _build(backend: str) -> Adapter:
    spec = settings().backends.get(backend)
    if spec is None:
        known = ", ".join(sorted(settings().backends))
        raise ConfigurationError(f"no backend named {backend!r} is configured (configured: {known})")
    cls = adapter_class(spec.adapter)
    try:
        return cls(alias=backend, url=spec.url, options=spec.options)
    except Error:
        raise
    except Exception as exc:  # a library's own complaint about the URL or an option
        raise ConfigurationError(
            f"the {spec.adapter} adapter of backend {backend!r} could not start: {type(exc).__name__}: {exc}"
        ) from exc


@contextlib.contextmanager
def override(pin: Adapter | None = None, /, **configuration: Any) -> Iterator[Settings]:
    """Temporarily reconfigure (tests): the keywords are those of :func:`configure`. With an
    adapter instance, every backend resolves to it: ``with unijob.override(TestAdapter()):``."""
    with _state.lock:
        saved = (_state.settings, _state.adapters, _state.pinned)
        _state.adapters = {}
    try:
        new = configure(**configuration) if configuration else settings()
        _state.pinned = pin
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
    for old, new in _RENAMED.items():
        if env.get(old):
            raise ConfigurationError(f"{old} is not a unijob setting; the adapter is set with {new} (for example {new}=rq)")
    named = {name: _backend_from_mapping(name, spec) for name, spec in (table.get("backends") or {}).items()}
    default = named.get(DEFAULT_BACKEND)
    if "adapter" in table or "url" in table or "options" in table:
        default = _layer(default, table.get("adapter"), table.get("url"), table.get("options"))
    if env.get("UNIJOB_ADAPTER") or env.get("UNIJOB_URL") or env.get("UNIJOB_OPTIONS"):
        options = None
        if env.get("UNIJOB_OPTIONS"):
            try:
                options = json.loads(env["UNIJOB_OPTIONS"])
            except ValueError as exc:
                raise ConfigurationError(f"UNIJOB_OPTIONS must be a JSON object: {exc}") from exc
            if not isinstance(options, dict):
                raise ConfigurationError(f"UNIJOB_OPTIONS must be a JSON object, not {type(options).__name__}")
        default = _layer(default, env.get("UNIJOB_ADAPTER") or None, env.get("UNIJOB_URL") or None, options)
    named[DEFAULT_BACKEND] = default or BackendSettings(DEFAULT_ADAPTER)
    imports = tuple(table.get("imports", ()))
    if env.get("UNIJOB_IMPORTS"):
        imports = tuple(name.strip() for name in env["UNIJOB_IMPORTS"].split(",") if name.strip())
    result = Settings(
        backends=named,
        imports=imports,
        log_arguments=table.get("log_arguments", True),
        on_unsupported=table.get("on_unsupported", "error"),
        bulk_chunk_size=table.get("bulk_chunk_size", 1000),
        batch_retention=table.get("batch_retention", 7 * 24 * 3600),
        results=table.get("results", False),
        result_retention=table.get("result_retention", 24 * 3600),
        routes=_routes(table.get("routes") or {}),
        enqueue_after_commit=table.get("enqueue_after_commit", False),
        unique_for=table.get("unique_for", 24 * 3600),
        recurring=table.get("recurring") or {},
    )
    _validate(result)
    return result


def _layer(
    weaker: BackendSettings | None,
    adapter: str | None,
    url: str | None,
    options: Mapping[str, Any] | None,
    *,
    replace_options: bool = False,
) -> BackendSettings:
    """A stronger source's settings over a weaker one's. Options belong to an adapter: a stronger
    source that names another adapter leaves the weaker source's options behind."""
    if weaker is None:
        return BackendSettings(adapter or DEFAULT_ADAPTER, url, dict(options or {}))
    changes_adapter = adapter is not None and adapter != weaker.adapter
    if options is None and not replace_options:
        options = {} if changes_adapter else weaker.options
    return BackendSettings(adapter or weaker.adapter, url if url is not None else weaker.url, dict(options or {}))


def route(job_name: str) -> str | None:
    """The backend a route sends this call of ``job_name`` to, if any (drawn at random for a rollout)."""
    found = settings().routes.get(job_name)
    if found is None or (found.percent < 100 and random.random() * 100 >= found.percent):
        return None
    return found.backend


def _routes(table: Mapping[str, Any]) -> dict[str, Route]:
    routes = {}
    for name, spec in table.items():
        if isinstance(spec, Route):
            routes[name] = spec
        elif isinstance(spec, str):
            routes[name] = Route(spec)
        elif isinstance(spec, Mapping) and set(spec) <= {"backend", "percent"} and "backend" in spec:
            routes[name] = Route(spec["backend"], float(spec.get("percent", 100)))
        else:
            raise ConfigurationError(
                f"route {name!r}: give a backend name, or {{backend = NAME, percent = 0..100}}, not {spec!r}"
            )
    return routes


def _backend_from_mapping(name: str, spec: Mapping[str, Any]) -> BackendSettings:
    spec = dict(spec)
    if "backend" in spec and "adapter" not in spec:
        raise ConfigurationError(f"backend {name!r}: say adapter = {spec['backend']!r}, not backend = (the adapter runs it)")
    if "adapter" not in spec:
        raise ConfigurationError(f"backend {name!r} needs an 'adapter' key (for example 'rq' or 'celery')")
    adapter = spec.pop("adapter")
    url = spec.pop("url", None)
    options = {**spec.pop("options", {}), **spec}
    return BackendSettings(adapter, url, options)


def _validate(new: Settings) -> None:
    if new.on_unsupported not in ("error", "warn"):
        raise ConfigurationError(f"on_unsupported must be 'error' or 'warn', not {new.on_unsupported!r}")
    if type(new.bulk_chunk_size) is not int or new.bulk_chunk_size < 1:
        raise ConfigurationError(f"bulk_chunk_size must be a whole number of at least 1, not {new.bulk_chunk_size!r}")
    for name in ("batch_retention", "result_retention", "unique_for"):
        value = getattr(new, name)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
            raise ConfigurationError(f"{name} must be a number of seconds, not {value!r}")
    for name in ("log_arguments", "results", "enqueue_after_commit"):
        if not isinstance(getattr(new, name), bool):
            raise ConfigurationError(f"{name} must be true or false, not {getattr(new, name)!r}")
    for spec in new.backends.values():
        check_adapter_name(spec.adapter)  # a typo fails here, with a suggestion
    for name, chosen in new.routes.items():
        if chosen.backend not in new.backends:
            raise ConfigurationError(f"route {name!r} names backend {chosen.backend!r}, which is not configured")
        if not 0 <= chosen.percent <= 100:
            raise ConfigurationError(f"route {name!r}: percent must be from 0 to 100, not {chosen.percent!r}")


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
            if not isinstance(table, dict):
                return {}
            _check_keys(table, candidate)
            return table
    return {}


def _check_keys(table: Mapping[str, Any], source: Path) -> None:
    for key in table:
        if key in TABLE_KEYS:
            continue
        if key == "backend":
            raise ConfigurationError(
                f"{source}: [tool.unijob] says backend = {table[key]!r}; the key is adapter = {table[key]!r}"
            )
        close = difflib.get_close_matches(key, TABLE_KEYS, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ConfigurationError(f"{source}: unknown key {key!r} in [tool.unijob]{hint} (keys: {', '.join(sorted(TABLE_KEYS))})")


def unsupported(message: str, remedy: str, *, stacklevel: int) -> None:
    """Something asked for cannot be honoured: ``UnsupportedOptionError`` (``message; remedy``), or
    with ``on_unsupported = "warn"`` a warning, and the caller drops it."""
    if settings().on_unsupported == "error":
        raise UnsupportedOptionError(f"{message}; {remedy}")
    warnings.warn(f"{message} (ignored, on_unsupported='warn')", RuntimeWarning, stacklevel=stacklevel + 1)


def no_equivalent(owner: str, what: str, why: str) -> None:
    """An option of existing Celery or RQ code (the migration kits) that unijob cannot honour;
    the warning names the line of the user's code two calls above the kit's check."""
    unsupported(
        f"{owner}: {what} has no equivalent in unijob ({why})",
        "remove it, or set on_unsupported='warn' to drop it with a warning",
        stacklevel=4,
    )
