"""The views: each saves to-dos and enqueues their notification once the transaction commits."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, abort, request

import unijob
from unijob.contrib.sqlalchemy import transaction

from . import db
from .jobs import notify_created

bp = Blueprint("todos", __name__)


@bp.post("/todos")
def create_todo() -> tuple[dict[str, Any], int]:
    session = db.session()
    with transaction(session):
        todo = db.Todo(title=request.get_json()["title"])
        session.add(todo)
        session.flush()  # the id
        todo_id = todo.id
        job = notify_created.set(after_commit=True).perform_later(todo_id)  # waits for the commit...
        session.commit()  # ...and is sent here (a rollback would drop it)
    return {"id": todo_id, "job_id": job.job_id}, 201


@bp.post("/todos/import")
def import_todos() -> tuple[dict[str, Any], int]:
    session = db.session()
    with transaction(session):
        todos = [db.Todo(title=title) for title in request.get_json()["titles"]]
        session.add_all(todos)
        session.flush()
        ids = [todo.id for todo in todos]
        unijob.perform_all_later(notify_created.set(after_commit=True).new(todo_id) for todo_id in ids)
        session.commit()  # all of them are sent here, in bulk
    return {"ids": ids}, 201


@bp.get("/todos/<int:todo_id>")
def show_todo(todo_id: int) -> dict[str, Any]:
    todo = db.session().get(db.Todo, todo_id)
    if todo is None:
        abort(404)
    return {"id": todo.id, "title": todo.title, "notified": todo.notified}
