"""Registered jobs, by name. A worker runs only what is here; nothing named in a payload is imported."""

from __future__ import annotations

from typing import TYPE_CHECKING

from unijob.errors import UnknownJobError

if TYPE_CHECKING:
    from unijob.core import BaseJob

_jobs: dict[str, type[BaseJob]] = {}


def register(job_class: type[BaseJob]) -> None:
    name = job_class.name
    existing = _jobs.get(name)
    if existing is not None and existing is not job_class and _origin(existing) != _origin(job_class):
        raise ValueError(
            f"job name {name!r} is taken by {_origin(existing)}; give {_origin(job_class)} another name with name=..."
        )
    _jobs[name] = job_class


def lookup(name: str) -> type[BaseJob]:
    try:
        return _jobs[name]
    except KeyError:
        raise UnknownJobError(
            f"refusing job {name!r}: no job of that name is registered in this process; "
            "list its module in the unijob 'imports' setting so the worker loads it"
        ) from None


def is_registered(name: str) -> bool:
    return name in _jobs


def registered() -> dict[str, type[BaseJob]]:
    return dict(_jobs)


def _origin(job_class: type[BaseJob]) -> str:
    target = getattr(job_class, "function", job_class)
    return f"{target.__module__}.{target.__qualname__}"
