"""What the stock worker imports (``UNIJOB_IMPORTS=examples.flask_todo.worker``): building the
app registers it with unijob (``init_app``), so every job runs inside its app context."""

from __future__ import annotations

from examples.flask_todo import create_app

app = create_app()
