"""The app's jobs. On the worker each runs inside the app's context: ``current_app``, ``flask.g``
and the app's database session work as in a view."""

from __future__ import annotations

from flask import current_app

import unijob

from . import db


@unijob.job
def notify_created(todo_id: int) -> str:
    session = db.session()  # the job's own session, kept in flask.g and closed when it ends
    todo = session.get(db.Todo, todo_id)
    if todo is None:  # never happens when the job waited for the commit
        raise LookupError(f"to-do {todo_id} does not exist")
    todo.notified = f"{current_app.config['NOTIFY_FROM']}: {todo.title}"
    session.commit()
    return todo.notified
