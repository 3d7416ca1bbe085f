"""The database: plain SQLAlchemy, one engine per app and one session per app context (``flask.g``)."""

from __future__ import annotations

from flask import Flask, current_app, g
from sqlalchemy import Engine, String, create_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

ENGINE = "todo_engine"  # app.extensions key


class Base(DeclarativeBase):
    pass


class Todo(Base):
    __tablename__ = "todos"

    id: Mapped[int] = mapped_column(primary_key=True)
    title: Mapped[str] = mapped_column(String(200))
    notified: Mapped[str | None] = mapped_column(String(300), default=None)


def init_app(app: Flask) -> None:
    # create_engine does not connect: a worker that forks (RQ, Celery's prefork pool) opens its
    # connections in the process that runs the job.
    app.extensions[ENGINE] = create_engine(app.config["DATABASE_URL"])
    app.teardown_appcontext(close_session)


def engine() -> Engine:
    found: Engine = current_app.extensions[ENGINE]
    return found


def session() -> Session:
    """This app context's session, closed when the context ends (a request, or a job)."""
    if "db_session" not in g:
        g.db_session = Session(engine())
    found: Session = g.db_session
    return found


def close_session(error: BaseException | None = None) -> None:
    found = g.pop("db_session", None)
    if found is not None:
        found.close()


def create_schema(app: Flask) -> None:
    with app.app_context():
        Base.metadata.create_all(engine())


def drop_schema(app: Flask) -> None:
    with app.app_context():
        Base.metadata.drop_all(engine())
        engine().dispose()
