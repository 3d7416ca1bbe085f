"""The notes service's job: ``async def``, awaited to its end by every backend's stock worker."""

from __future__ import annotations

import unijob

from . import db


@unijob.job
async def index_note(note_id: int) -> int:
    """Count the note's words and store the count: the job awaits the database throughout."""
    async with await db.connect() as connection:
        cursor = await connection.execute("select body from notes where id = %s", (note_id,))
        row = await cursor.fetchone()
        if row is None:
            raise LookupError(f"note {note_id} does not exist")
        words = len(str(row[0]).split())
        await connection.execute("update notes set words = %s, indexed_at = now() where id = %s", (words, note_id))
    return words  # the connection block committed the update
