"""Django integration: ``INSTALLED_APPS = [..., "unijob.contrib.django"]``.

The app (:mod:`unijob.contrib.django.apps`) configures unijob from the ``UNIJOB`` setting (the keys
of ``[tool.unijob]``), imports every installed app's ``jobs`` module, passes model instances by
reference (their primary key, loaded fresh in the worker), closes database connections around
each job in a worker, and makes ``set(after_commit=True)`` and the ``enqueue_after_commit``
setting wait for ``transaction.on_commit`` inside ``atomic()`` blocks.

Workers: ``python manage.py unijob_worker`` starts a backend's stock worker with the environment
it needs; the worker imports :mod:`unijob.contrib.django.bootstrap` (``django.setup()``) first.
Django Tasks (``@task``): :mod:`unijob.contrib.django.tasks`. The guide: docs/frameworks/django.md.

This module holds the pieces the app, the bootstrap, the Tasks backend and the command share;
importing it reads no setting.
"""

from __future__ import annotations

import difflib
import importlib.util
import json
import os
import threading
import weakref
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Final

from unijob import config, middleware, serializers, transactions
from unijob.constants import DEFAULT_BACKEND
from unijob.core import BaseJob
from unijob.errors import BackendNotInstalledError, ConfigurationError, SerializationError

try:
    from django.apps import apps as django_apps
    from django.conf import settings as django_settings
    from django.core.exceptions import ImproperlyConfigured
    from django.db import connections, models, transaction
except ImportError as exc:  # pragma: no cover - Django comes with the extra
    raise BackendNotInstalledError('unijob.contrib.django needs Django: pip install "unijob[django]"') from exc

SETTING: Final = "UNIJOB"
APP: Final = "unijob.contrib.django"
BOOTSTRAP: Final = "unijob.contrib.django.bootstrap"
TASKS_BACKEND: Final = "unijob.contrib.django.tasks.UnijobBackend"
# The UNIJOB keys: those of [tool.unijob] (adapter, url, options, backends, imports, results, ...).
KEYS: Final = config.TABLE_KEYS


class _State:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.installed = False
        self.configured = False  # configure_from_settings() ran (the app is ready)
        self.worker = False  # this process is a worker (the bootstrap ran)


_state = _State()


# --- the UNIJOB setting --------------------------------------------------------------------------


def unijob_setting() -> dict[str, Any] | None:
    """The ``UNIJOB`` setting, its keys checked; None when the project has none (then unijob reads
    the environment and pyproject.toml, as everywhere else)."""
    value = getattr(django_settings, SETTING, None)
    if value is None:
        return None
    return check_setting(value)


def check_setting(value: object) -> dict[str, Any]:
    """``value`` as a ``UNIJOB`` setting: a mapping whose keys are those of ``[tool.unijob]``.
    Raises ``ImproperlyConfigured`` naming a key it does not know, with a suggestion."""
    if not isinstance(value, Mapping):
        raise ImproperlyConfigured(f"the {SETTING} setting must be a dict (the keys of [tool.unijob]), not {value!r}")
    for key in value:
        if key not in KEYS:
            close = difflib.get_close_matches(str(key), KEYS, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ImproperlyConfigured(f"unknown key {key!r} in the {SETTING} setting{hint} (keys: {', '.join(sorted(KEYS))})")
    options = value.get("options")
    if options is not None and not isinstance(options, Mapping):
        raise ImproperlyConfigured(f"{SETTING}['options'] must be a dict of adapter options, not {options!r}")
    return dict(value)


def configure_from_settings(value: Mapping[str, Any] | None = None) -> config.Settings | None:
    """Configure unijob with the ``UNIJOB`` setting (or ``value``), as ``unijob.configure`` in code:
    it wins over the environment and pyproject.toml. Does nothing without the setting."""
    table = unijob_setting() if value is None else check_setting(value)
    if table is None:
        _state.configured = True
        return None
    table = dict(table)
    adapter, url = table.pop("adapter", None), table.pop("url", None)
    options = dict(table.pop("options", None) or {})
    clash = sorted(set(options) & set(table))
    if clash:
        raise ImproperlyConfigured(f"{SETTING}['options'] names {', '.join(clash)}, which are settings, not adapter options")
    try:
        configured = config.configure(adapter, url, **table, **options)
    except ConfigurationError as error:
        raise ImproperlyConfigured(f"the {SETTING} setting: {error}") from error
    _state.configured = True
    return configured


def is_configured() -> bool:
    """Whether unijob's configuration is final in this process: the app configured it from the
    ``UNIJOB`` setting (until then, a backend's adapter would be built from other sources)."""
    return _state.configured or getattr(django_settings, SETTING, None) is None


# --- models by reference -----------------------------------------------------------------------


def identify(instance: models.Model) -> Any:
    """A model instance's primary key: what travels in its place."""
    if instance.pk is None:
        raise SerializationError(
            f"an unsaved {instance._meta.label} has no primary key, so it cannot be passed to a job: save it first"
        )
    return instance.pk


def locate(model: type[models.Model], pk: Any) -> models.Model:
    """The row of ``model`` with primary key ``pk``, loaded now with the default manager."""
    try:
        return model._default_manager.get(pk=pk)
    except model.DoesNotExist:
        raise model.DoesNotExist(
            f"no {model._meta.label} with primary key {pk!r}: it was deleted, or its transaction had not "
            "committed, before the job ran"
        ) from None


# --- enqueue after commit -----------------------------------------------------------------------


class DjangoTransactions:
    """unijob's transaction provider for Django: inside ``atomic()``, a job that waits for the
    commit is handed to ``transaction.on_commit`` of that connection. Django drops the callbacks
    of a transaction (or savepoint) that rolls back; the job then records that it was never sent
    (``TransactionRolledBackError``) as soon as Django lets go of its callback."""

    def defer(self, on_commit: Callable[[], object], on_rollback: Callable[[], object]) -> bool:
        if not django_apps.ready:
            return False
        for connection in connections.all(initialized_only=True):
            if connection.in_atomic_block:
                transaction.on_commit(_commit_hook(on_commit, on_rollback), using=connection.alias)
                return True
        return False


def _commit_hook(on_commit: Callable[[], object], on_rollback: Callable[[], object]) -> Callable[[], None]:
    ran = [False]

    def run() -> None:
        ran[0] = True
        on_commit()

    # Django keeps the callback until the transaction ends: it runs it on commit and drops it on
    # rollback. Dropped without having run, the job was not sent.
    finalizer = weakref.finalize(run, _dropped, ran, on_rollback)
    finalizer.atexit = False
    return run


def _dropped(ran: list[bool], on_rollback: Callable[[], object]) -> None:
    if not ran[0]:
        on_rollback()


# --- database connections in workers ------------------------------------------------------------


class CloseConnections(middleware.Middleware):
    """``close_old_connections()`` around each job in a worker, as Django does around each request:
    a connection that broke, or outlived ``CONN_MAX_AGE``, is not handed to the next job. A
    connection inside an ``atomic()`` block is left alone (a job performed inside a transaction)."""

    def before_perform(self, job: BaseJob) -> None:
        close_old_connections()

    def after_attempt(self, job: BaseJob) -> None:
        close_old_connections()


def close_old_connections() -> None:
    if not _state.worker:
        return  # in the web process, requests open and close connections
    for connection in connections.all(initialized_only=True):
        if not connection.in_atomic_block:
            connection.close_if_unusable_or_obsolete()


_PROVIDER: Final = DjangoTransactions()
_CONNECTIONS: Final = CloseConnections()


def install() -> None:
    """Switch the integration on in this process (idempotent): models by reference, the transaction
    provider and the connections middleware."""
    with _state.lock:
        if _state.installed:
            return
        serializers.register_locator(models.Model, identify, locate)
        transactions.register(_PROVIDER)
        middleware.install(_CONNECTIONS)
        _state.installed = True


def mark_worker() -> None:
    """This process runs jobs for a stock worker: connections are closed around each job."""
    _state.worker = True


# --- the worker's environment -------------------------------------------------------------------


def worker_environment() -> dict[str, str]:
    """The environment a stock worker needs to read the same settings as the site: the default
    backend's ``UNIJOB_*`` variables, the bootstrap first in ``UNIJOB_IMPORTS``, the settings module,
    and the folder it is imported from on ``PYTHONPATH``."""
    module = django_settings.SETTINGS_MODULE
    if not module:
        raise ConfigurationError(
            "a worker loads Django from DJANGO_SETTINGS_MODULE, and these settings were configured in code "
            "(settings.configure()); put them in a settings module"
        )
    current = config.settings()
    default = current.backends[DEFAULT_BACKEND]
    try:
        options = json.dumps(dict(default.options))
    except (TypeError, ValueError) as error:
        raise ConfigurationError(f"the options of the default backend cannot travel to a worker as JSON: {error}") from error
    imports = dict.fromkeys([BOOTSTRAP, *current.imports])
    paths = [_import_root(module), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    return {
        "DJANGO_SETTINGS_MODULE": module,
        "UNIJOB_ADAPTER": default.adapter,
        "UNIJOB_URL": default.url or "",
        "UNIJOB_OPTIONS": options,
        "UNIJOB_IMPORTS": ",".join(imports),
        "PYTHONPATH": os.pathsep.join(dict.fromkeys(paths)),
    }


def _import_root(module: str) -> str:
    """The folder the settings module is imported from (its top-level package's parent)."""
    spec = importlib.util.find_spec(module.partition(".")[0])
    if spec is None:  # pragma: no cover - the settings module is imported already
        return os.getcwd()
    if spec.submodule_search_locations:
        return str(Path(next(iter(spec.submodule_search_locations))).parent)
    return str(Path(spec.origin or os.getcwd()).parent)
