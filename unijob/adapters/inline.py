"""Runs each job at once, in the caller, after a full JSON round trip of its envelope.

A delay (``wait``/``wait_until``) is not waited for: the job runs immediately and keeps its
``scheduled_at``, so code that schedules work behaves the same in development as in a worker,
only sooner. The job's exception propagates to the caller of ``perform_later``.
"""

from __future__ import annotations

import json

from unijob.adapters.base import Adapter, Capabilities, process_memory_store
from unijob.batch_stores import BatchStore
from unijob.envelope import Envelope


class InlineAdapter(Adapter):
    name = "inline"
    display_name = "Inline"
    capabilities = Capabilities(delay=True, priority=True, notes="runs at once in the caller; a delay is not waited for")

    def make_batch_store(self) -> BatchStore:
        return process_memory_store()

    def enqueue(self, envelope: Envelope) -> str | None:
        from unijob.execution import execute

        execute(json.loads(envelope.to_json()), adapter=self)
        return envelope.job_id
