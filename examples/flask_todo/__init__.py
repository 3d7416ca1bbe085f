"""A small Flask to-do app on PostgreSQL (plain SQLAlchemy), whose jobs run in its app context.

- ``create_app(test_config)`` is the app factory: settings from ``TODO_*`` environment variables
  (``app.config.from_prefixed_env("TODO")``: ``TODO_DATABASE_URL``, ``TODO_NOTIFY_FROM``,
  ``TODO_UNIJOB`` as JSON), then ``test_config`` over them; ``unijob_ext.init_app(app)``
  configures unijob from ``app.config["UNIJOB"]``.
- ``views.py``: ``POST /todos`` saves a to-do and enqueues ``notify_created`` after the commit;
  ``POST /todos/import`` saves many and enqueues them in bulk after the commit.
- ``jobs.py``: ``notify_created`` reads the app's config and database session (``flask.g``).
- ``worker.py`` builds the app: it is the module the stock worker imports
  (``UNIJOB_IMPORTS=examples.flask_todo.worker``), so the jobs run in that app's context.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flask import Flask

from unijob.contrib.flask import UnijobFlask

from . import db

unijob_ext = UnijobFlask()


def create_app(test_config: Mapping[str, Any] | None = None) -> Flask:
    app = Flask(__name__)
    app.config.from_mapping(
        DATABASE_URL="postgresql+psycopg://postgres@127.0.0.1:5432/test",
        NOTIFY_FROM="todo",
        UNIJOB={},  # unijob's settings: the keys of [tool.unijob] (empty: the environment's, pyproject.toml's)
    )
    app.config.from_prefixed_env("TODO")
    if test_config:
        app.config.update(test_config)
    db.init_app(app)
    unijob_ext.init_app(app)

    from . import views

    app.register_blueprint(views.bp)
    return app
