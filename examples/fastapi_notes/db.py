"""The notes table, on PostgreSQL through psycopg (its async connections in the app and the job)."""

from __future__ import annotations

import os

import psycopg

SCHEMA = """
create table if not exists notes (
    id serial primary key,
    title text not null,
    body text not null,
    words integer,
    indexed_at timestamptz
)
"""


def database_url() -> str:
    """Where the notes are: ``NOTES_DATABASE_URL`` (the worker reads it too)."""
    return os.environ.get("NOTES_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")


async def connect(url: str | None = None) -> psycopg.AsyncConnection[tuple[object, ...]]:
    return await psycopg.AsyncConnection.connect(url or database_url())


def create_schema(url: str | None = None) -> None:
    with psycopg.connect(url or database_url()) as connection:
        connection.execute(SCHEMA)
