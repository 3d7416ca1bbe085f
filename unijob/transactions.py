"""Enqueue after commit: where a database transaction is open, a job asked to wait for it
(``set(after_commit=True)``, or the ``enqueue_after_commit`` setting) is enqueued when it commits,
and never when it rolls back.

The core knows no database: integrations (``unijob.contrib.django``, ``unijob.contrib.sqlalchemy``)
register a provider that says whether a transaction is open here, and runs a callback when it ends.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol


class TransactionProvider(Protocol):
    def defer(self, on_commit: Callable[[], object], on_rollback: Callable[[], object]) -> bool:
        """Run ``on_commit`` once the transaction open here commits (``on_rollback`` if it rolls
        back, where the database says so), and return True; return False when none is open."""
        ...


_providers: list[TransactionProvider] = []


def register(provider: TransactionProvider) -> None:
    if provider not in _providers:
        _providers.append(provider)


def unregister(provider: TransactionProvider) -> None:
    if provider in _providers:
        _providers.remove(provider)


def defer(on_commit: Callable[[], object], on_rollback: Callable[[], object]) -> bool:
    """Hand the callbacks to the first provider with an open transaction; False if there is none."""
    return any(provider.defer(on_commit, on_rollback) for provider in _providers)
