"""The Django app of unijob: ``INSTALLED_APPS = [..., "unijob.contrib.django"]``.

``ready()`` configures unijob from the ``UNIJOB`` setting, switches the integration on (models by
reference, enqueue after commit, connections closed around jobs in workers), and imports each
installed app's ``jobs`` module (and, when a ``TASKS`` backend is unijob's, its ``tasks`` module),
so a worker knows every job and task of the project. ``override_settings(UNIJOB=...)`` in a test
configures unijob again.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from django.apps import AppConfig
from django.conf import settings
from django.core import checks
from django.core.signals import setting_changed
from django.utils.module_loading import autodiscover_modules, import_string

from unijob import config
from unijob.contrib.django import SETTING, TASKS_BACKEND, configure_from_settings, install
from unijob.errors import Error


class UnijobConfig(AppConfig):  # type: ignore[misc]
    name = "unijob.contrib.django"
    label = "unijob"
    verbose_name = "unijob"

    def ready(self) -> None:
        configure_from_settings()
        install()
        setting_changed.connect(_setting_changed, dispatch_uid="unijob-setting-changed")
        checks.register(check_backends)
        autodiscover_modules("jobs")
        if uses_tasks_backend():
            autodiscover_modules("tasks")


def uses_tasks_backend() -> bool:
    """Whether a backend of the ``TASKS`` setting is unijob's (or a subclass of it)."""
    for params in (getattr(settings, "TASKS", None) or {}).values():
        path = params.get("BACKEND") if isinstance(params, dict) else None
        if not isinstance(path, str):
            continue
        try:
            backend_class = import_string(path)
        except ImportError:
            continue  # the Tasks framework says so, in its own words
        if isinstance(backend_class, type) and any(
            f"{cls.__module__}.{cls.__qualname__}" == TASKS_BACKEND for cls in backend_class.__mro__
        ):
            return True
    return False


def _setting_changed(*, setting: str, **kwargs: Any) -> None:
    if setting == SETTING:
        config.reset()
        configure_from_settings()


def check_backends(app_configs: Sequence[AppConfig] | None = None, **kwargs: Any) -> Iterable[checks.CheckMessage]:
    """Each configured unijob backend's adapter builds (its library is installed, its options known)."""
    errors = []
    for name in config.settings().backends:
        try:
            config.get_adapter(name)
        except Error as error:
            errors.append(
                checks.Error(
                    f"unijob backend {name!r} cannot be built: {error}",
                    hint=f"fix backend {name!r} in the {SETTING} setting",
                    obj=SETTING,
                    id="unijob.E001",
                )
            )
    return errors
