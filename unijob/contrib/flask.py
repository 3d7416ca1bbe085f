"""Flask integration (``pip install "unijob[flask]"``): configuration from ``app.config`` and
jobs that run inside the application context::

    unijob_ext = UnijobFlask()          # in extensions.py

    def create_app() -> Flask:          # the app factory
        app = Flask(__name__)
        app.config["UNIJOB"] = {"adapter": "rq", "url": "redis://localhost:6379/0"}
        unijob_ext.init_app(app)
        return app

``init_app`` reads ``app.config["UNIJOB"]`` (the keys of ``[tool.unijob]``), configures unijob
with it over the environment and ``pyproject.toml``, and installs a middleware that runs every
job inside an application context, so ``current_app``, ``flask.g`` and extensions work in jobs:
the context is pushed before the job runs and popped (teardown functions included) when the run
ends, whatever its outcome, retries included. A job run where an app context is active (in a
view, a test, the inline adapter) gets a fresh context of that app, as it would on a worker;
elsewhere, the app last passed to ``init_app`` in this process.

How a worker gets the app: the stock worker imports the modules of the ``imports`` setting
(``UNIJOB_IMPORTS`` or ``[tool.unijob]``); name a module that builds the app, such as a
``wsgi.py`` that calls ``create_app()``, and its ``init_app`` registers that app for the jobs.
Configuring unijob again with settings equal to those in force changes nothing, so an app whose
``UNIJOB`` agrees with the worker's settings leaves the worker's connections alone.
"""

from __future__ import annotations

import contextvars
import difflib
import inspect
import logging
from collections.abc import Mapping
from typing import Any, Final

import flask
from flask.ctx import AppContext

from unijob import config, middleware
from unijob.core import BaseJob
from unijob.errors import ConfigurationError

__all__ = ["CONFIG_KEY", "APP_CONTEXT", "AppContextMiddleware", "UnijobFlask", "configure_arguments"]

CONFIG_KEY: Final = "UNIJOB"
EXTENSION_NAME: Final = "unijob"
logger = logging.getLogger("unijob")


class AppContextMiddleware(middleware.Middleware):
    """Runs each job inside a Flask application context: pushed in ``before_perform``, popped
    in ``after_attempt``."""

    def __init__(self) -> None:
        self.app: flask.Flask | None = None  # the app jobs run in when no app context is active
        self._pushed: contextvars.ContextVar[tuple[tuple[BaseJob, AppContext], ...]] = contextvars.ContextVar(
            "unijob_flask_contexts", default=()
        )

    def before_perform(self, job: BaseJob) -> None:
        app = _active_app() or self.app
        if app is None:
            return
        context = app.app_context()
        context.push()
        self._pushed.set((*self._pushed.get(), (job, context)))

    def after_attempt(self, job: BaseJob) -> None:
        pushed = self._pushed.get()
        if not pushed or pushed[-1][0] is not job:
            return  # nothing was pushed for this run (an earlier before_perform hook raised)
        self._pushed.set(pushed[:-1])
        try:
            pushed[-1][1].pop()
        except Exception:  # a teardown function failed: the job's own outcome stands
            logger.exception("Popping the Flask app context of job %s (Job ID: %s) failed", job.display_name, job.job_id)


APP_CONTEXT: Final = AppContextMiddleware()


def _active_app() -> flask.Flask | None:
    if not flask.has_app_context():
        return None
    app: flask.Flask = flask.current_app._get_current_object()  # type: ignore[attr-defined]
    return app


class UnijobFlask:
    """The Flask extension: ``UnijobFlask(app)``, or ``UnijobFlask()`` then ``init_app(app)``."""

    def __init__(self, app: flask.Flask | None = None) -> None:
        if app is not None:
            self.init_app(app)

    def init_app(self, app: flask.Flask) -> None:
        """Configure unijob from ``app.config["UNIJOB"]`` and run jobs in this app's context."""
        table = app.config.get(CONFIG_KEY)
        if table is None:
            table = {}
        if not isinstance(table, Mapping):
            raise ConfigurationError(
                f"app.config[{CONFIG_KEY!r}] must be a mapping with the keys of [tool.unijob], not {type(table).__name__}"
            )
        if table:
            arguments = configure_arguments(table, f"app.config[{CONFIG_KEY!r}] of {app.name}")
            with config.override(**arguments) as wanted:  # what configure() would make of them, not installed
                pass
            if wanted != config.settings():
                config.configure(**arguments)
        app.extensions[EXTENSION_NAME] = self
        APP_CONTEXT.app = app
        middleware.install(APP_CONTEXT)

    @property
    def app(self) -> flask.Flask | None:
        """The app jobs run in when no app context is active (the last one initialized)."""
        return APP_CONTEXT.app


_CONFIGURE_PARAMETERS: Final = frozenset(
    name
    for name, parameter in inspect.signature(config.configure).parameters.items()
    if parameter.kind is not parameter.VAR_KEYWORD
)


def configure_arguments(table: Mapping[str, Any], source: str = "the settings") -> dict[str, Any]:
    """The keyword arguments of :func:`unijob.configure` for a table with the keys of
    ``[tool.unijob]`` (``options`` become the default backend's adapter options)."""
    arguments: dict[str, Any] = {}
    for key, value in table.items():
        if key not in config.TABLE_KEYS:
            if key == "backend":
                raise ConfigurationError(f"{source} says backend = {value!r}; the key is adapter = {value!r}")
            close = difflib.get_close_matches(str(key), config.TABLE_KEYS, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ConfigurationError(f"{source}: unknown key {key!r}{hint} (keys: {', '.join(sorted(config.TABLE_KEYS))})")
        if key != "options":
            arguments[key] = value
    options = table.get("options") or {}
    if not isinstance(options, Mapping):
        raise ConfigurationError(f"{source}: options must be a mapping of adapter options, not {type(options).__name__}")
    clash = sorted(set(options) & _CONFIGURE_PARAMETERS)
    if clash:
        raise ConfigurationError(f"{source}: {', '.join(clash)} cannot be adapter options (they are settings of their own)")
    arguments.update(options)
    return arguments
