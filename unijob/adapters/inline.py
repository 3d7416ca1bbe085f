"""Runs each job at once, in the caller, after a full JSON round trip of its envelope.

A delay (``wait``/``wait_until``) is not waited for: the job runs immediately and keeps its
``scheduled_at``, so code that schedules work behaves the same in development as in a worker,
only sooner. The job's exception propagates to the caller of ``perform_later``.
"""

from __future__ import annotations

from unijob.adapters.base import Adapter, Capabilities
from unijob.envelope import Envelope
from unijob.execution import execute


class InlineAdapter(Adapter):
    name = "inline"
    display_name = "Inline"
    capabilities = Capabilities(
        priority=True,
        timeout=True,
        in_process=True,
        notes="runs at once in the caller; a delay is not waited for, a time limit not enforced",
    )

    @property
    def description(self) -> str:
        return "Inline (in this process)"

    def store_url(self) -> str:
        return "memory://"

    def enqueue(self, envelope: Envelope) -> str | None:
        execute(Envelope.from_json(envelope.to_json()), adapter=self)
        return envelope.job_id
