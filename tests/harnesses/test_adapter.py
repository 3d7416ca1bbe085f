import datetime as dt

from tests.harness import Harness
from unijob import config
from unijob.adapters.test import TestAdapter


class TestAdapterHarness(Harness):
    """The test adapter records jobs; ``tick`` plays the worker by running the due ones."""

    __test__ = False
    name = "test"
    adapter = "test"
    runs_elsewhere = False

    def tick(self, strict: bool = False) -> None:
        adapter = config.get_adapter()
        assert isinstance(adapter, TestAdapter)
        try:
            adapter.perform_enqueued_jobs(at=dt.datetime.now(dt.timezone.utc))
        except Exception:  # a job that failed for good: a worker would log it and go on
            if strict:
                raise


HARNESS = TestAdapterHarness()
