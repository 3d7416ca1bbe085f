"""FastAPI (and Starlette) integration (``pip install "unijob[fastapi]"``): a lifespan that
configures unijob when the app starts and releases its broker connections when it stops::

    from unijob.contrib.fastapi import lifespan_with

    app = FastAPI(lifespan=lifespan_with(adapter="rq", url="redis://localhost:6379/0"))

    @app.post("/notes")
    async def create_note(note: Note) -> dict[str, str]:
        job = await index_note.aperform_later(note.id)  # the enqueue runs in a thread
        return {"job_id": job.job_id}

- ``lifespan``: the settings unijob reads anyway (``[tool.unijob]``, ``UNIJOB_*``), checked at
  startup; ``lifespan_with(**settings)`` configures unijob with the keywords of
  :func:`unijob.configure` first. Either builds every configured backend's adapter at startup,
  so a wrong adapter name, option or URL fails the startup rather than the first request.
- ``lifespan_with(inner, **settings)`` wraps the app's own lifespan; the state it yields is
  the app's state.
- At shutdown the adapters are closed (their connection pools with them); the settings stay,
  and the next use opens new connections.

Jobs may be ``async def``: each run is awaited to its end on the worker (an event loop of its
own per run, on every backend). Enqueue from async code with ``await job.aperform_later(...)``
and ``await unijob.aperform_all_later(...)``; in a sync endpoint (FastAPI runs it in a thread)
the plain ``perform_later`` does the same.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

from unijob import config

__all__ = ["Lifespan", "lifespan", "lifespan_with", "release", "start"]

Lifespan = Callable[[Any], AbstractAsyncContextManager[Any]]


def lifespan_with(inner: Lifespan | None = None, /, **settings: Any) -> Lifespan:
    """A lifespan that configures unijob with ``settings`` (the keywords of
    :func:`unijob.configure`) at startup, runs ``inner`` (the app's own lifespan) inside, and
    releases unijob's connections at shutdown."""
    config_settings = dict(settings)

    @contextlib.asynccontextmanager
    async def unijob_lifespan(app: Any) -> AsyncIterator[Any]:
        start(**config_settings)
        try:
            if inner is None:
                yield None
            else:
                async with inner(app) as state:
                    yield state
        finally:
            release()

    return unijob_lifespan


lifespan: Lifespan = lifespan_with()
"""The lifespan for an app whose unijob settings come from ``[tool.unijob]`` or ``UNIJOB_*``."""


def start(**settings: Any) -> config.Settings:
    """Configure unijob (when ``settings`` are given) and build every backend's adapter."""
    current = config.configure(**settings) if settings else config.settings()
    for backend in current.backends:
        config.get_adapter(backend)
    return current


def release() -> None:
    """Close every adapter's connections, keeping the settings: configuring unijob closes the
    adapters it replaces, and the next use builds new ones."""
    current = config.settings()
    config.configure(**{field.name: getattr(current, field.name) for field in dataclasses.fields(current)})
