"""pytest plugin (registered through the ``pytest11`` entry point).

The ``unijob_test`` fixture makes every backend the test adapter for one test and restores the
configuration afterwards::

    def test_signup_sends_welcome(unijob_test):
        signup("ada@example.com")
        unijob_test.assert_enqueued(send_welcome, args=[42], queue="mail")
        unijob_test.perform_enqueued_jobs()
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from unijob import config
from unijob.adapters.test import TestAdapter


@pytest.fixture
def unijob_test() -> Iterator[TestAdapter]:
    adapter = TestAdapter(alias="test")
    with config.override(adapter):
        yield adapter
