from collections.abc import Iterator

import pytest

from examples.celery_shop import services
from examples.celery_shop.celery import app


@pytest.fixture(autouse=True)
def eager_tasks() -> Iterator[None]:
    """Tasks run at once, in the test (Celery's eager mode), retries included."""
    app.conf.task_always_eager = True
    yield
    app.conf.task_always_eager = False


@pytest.fixture(autouse=True)
def ledger() -> Iterator[None]:
    services.clear()
    yield
    services.clear()
