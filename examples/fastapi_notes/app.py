"""The notes API: async endpoints that enqueue with ``aperform_later`` and ``aperform_all_later``.

Run it with ``uvicorn examples.fastapi_notes.app:app``; the worker imports
``examples.fastapi_notes.jobs`` (``UNIJOB_IMPORTS``) and reads ``NOTES_DATABASE_URL``.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, HTTPException, Request
from pydantic import BaseModel

import unijob
from unijob.contrib.fastapi import lifespan_with

from . import db
from .jobs import index_note


class NoteIn(BaseModel):
    title: str
    body: str


def create_app(database_url: str | None = None, **unijob_settings: Any) -> FastAPI:
    """The app; ``unijob_settings`` are the keywords of ``unijob.configure`` (none: the
    settings of ``[tool.unijob]`` and ``UNIJOB_*``)."""
    app = FastAPI(title="notes", lifespan=lifespan_with(**unijob_settings))
    app.state.database_url = database_url or db.database_url()

    @app.post("/notes", status_code=201)
    async def create_note(note: NoteIn, request: Request) -> dict[str, Any]:
        async with await db.connect(request.app.state.database_url) as connection:
            cursor = await connection.execute(
                "insert into notes (title, body) values (%s, %s) returning id", (note.title, note.body)
            )
            row = await cursor.fetchone()
        assert row is not None
        note_id = int(row[0])  # committed when the connection block ended: the job can read it
        job = await index_note.aperform_later(note_id)
        return {"id": note_id, "job_id": job.job_id}

    @app.get("/notes/{note_id}")
    async def show_note(note_id: int, request: Request) -> dict[str, Any]:
        async with await db.connect(request.app.state.database_url) as connection:
            cursor = await connection.execute("select id, title, words from notes where id = %s", (note_id,))
            row = await cursor.fetchone()
        if row is None:
            raise HTTPException(status_code=404, detail="no such note")
        return {"id": row[0], "title": row[1], "words": row[2]}

    @app.post("/notes/reindex")
    async def reindex(request: Request) -> dict[str, int]:
        async with await db.connect(request.app.state.database_url) as connection:
            cursor = await connection.execute("select id from notes order by id")
            ids = [int(row[0]) for row in await cursor.fetchall()]
        enqueued = await unijob.aperform_all_later(index_note.new(note_id) for note_id in ids)
        return {"enqueued": enqueued}

    return app


app = create_app()
