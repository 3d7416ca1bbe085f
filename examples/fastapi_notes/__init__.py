"""A small FastAPI notes service on PostgreSQL (psycopg's async driver), with an ``async def`` job.

- ``app.py``: ``create_app(database_url, **unijob_settings)``; the lifespan
  (``unijob.contrib.fastapi.lifespan_with``) configures unijob at startup and releases its
  connections at shutdown. ``POST /notes`` saves a note and enqueues ``index_note`` with
  ``await index_note.aperform_later(...)``; ``POST /notes/reindex`` enqueues one per note with
  ``await unijob.aperform_all_later(...)``.
- ``jobs.py``: ``index_note`` is ``async def``; the stock worker awaits it to its end.
- ``db.py``: the table, and where the database is (``NOTES_DATABASE_URL``).
"""
