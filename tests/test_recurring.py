"""Recurring jobs: their ticks, their configuration, Celery beat_schedule import, a broker outage."""

from __future__ import annotations

import datetime as dt
import logging
import uuid

import pytest

import unijob
from tests import jobs
from tests.harness import free_port, require_service, wait_until
from unijob.recurring import Recurring, enqueue_due, from_beat_schedule, next_tick, schedules

UTC = dt.timezone.utc


def at(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).astimezone(UTC)


def test_a_cron_schedule_ticks_in_its_timezone_across_a_daylight_saving_change() -> None:
    daily = Recurring("cleanup", "tests.jobs.ping", cron="0 3 * * *", timezone="Europe/Paris")
    ticks = daily.ticks(at("2026-10-23T12:00:00+00:00"), at("2026-10-27T12:00:00+00:00"))
    assert [tick.isoformat() for tick in ticks] == [
        "2026-10-24T01:00:00+00:00",  # 03:00 summer time
        "2026-10-25T02:00:00+00:00",  # 03:00 winter time: clocks went back that night
        "2026-10-26T02:00:00+00:00",
        "2026-10-27T02:00:00+00:00",
    ]


def test_an_interval_ticks_on_multiples_of_itself_so_every_scheduler_sees_the_same_ticks() -> None:
    every = Recurring("sync", "tests.jobs.ping", every=600)
    assert [t.isoformat() for t in every.ticks(at("2026-12-02T10:05:00+00:00"), at("2026-12-02T10:30:00+00:00"))] == [
        "2026-12-02T10:10:00+00:00",
        "2026-12-02T10:20:00+00:00",
        "2026-12-02T10:30:00+00:00",
    ]
    assert every.ticks(at("2026-12-02T10:30:00+00:00"), at("2026-12-02T10:39:59+00:00")) == []  # (after, until]
    assert next_tick(every, at("2026-12-02T10:30:00+00:00")) == at("2026-12-02T10:40:00+00:00")


def test_a_long_pause_makes_up_at_most_a_hundred_ticks_the_latest() -> None:
    every = Recurring("sync", "tests.jobs.ping", every=1)
    ticks = every.ticks(at("2026-12-01T00:00:00+00:00"), at("2026-12-02T00:00:00+00:00"))
    assert len(ticks) == 100 and ticks[-1] == at("2026-12-02T00:00:00+00:00")


def test_recurring_in_code_and_in_settings() -> None:
    with unijob.override(recurring={"nightly": {"job": "tests.jobs.ping", "cron": "0 3 * * *", "args": ["n"]}}):
        entry = unijob.recurring(dt.timedelta(minutes=10), jobs.echo, args=["x"], name=f"echo-{uuid.uuid4().hex}")
        found = schedules()
        assert found["nightly"] == Recurring("nightly", "tests.jobs.ping", cron="0 3 * * *", args=("n",))
        assert found[entry.name] == entry and entry.every == 600 and entry.job == "tests.jobs.echo"


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"job": "tests.jobs.ping"}, "recurring 'bad': give job and one of cron or every"),
        ({"job": "tests.jobs.ping", "cron": "0 3 * *"}, "'0 3 \\* \\*' is not a cron expression"),
        ({"job": "tests.jobs.ping", "every": 0.5}, "an interval is at least a second"),
        ({"job": "tests.jobs.ping", "every": 60, "timezone": "Mars/Olympus"}, "unknown timezone 'Mars/Olympus'"),
        ({"job": "tests.jobs.ping", "every": 60, "que": "x"}, "unknown: que"),
        ({"job": "tests.jobs.ping", "every": 60, "priority": "high"}, "recurring .bad.: priority must be an integer"),
    ],
)
def test_a_bad_recurring_setting_names_the_schedule_and_what_to_fix(spec: dict[str, object], message: str) -> None:
    with unijob.override(recurring={"bad": spec}), pytest.raises(unijob.ConfigurationError, match=message):
        schedules()


def test_celery_beat_schedule_entries_become_recurring_jobs() -> None:
    from celery.schedules import crontab

    token = uuid.uuid4().hex
    beat_schedule = {
        f"nightly-{token}": {"task": "tests.jobs.ping", "schedule": crontab(minute=30, hour="*/4"), "args": (token,)},
        f"often-{token}": {"task": "tests.jobs.echo", "schedule": dt.timedelta(seconds=90), "options": {"queue": "mail"}},
        f"plain-{token}": {"task": "tests.jobs.ping", "schedule": 45.0},
    }
    nightly, often, plain = from_beat_schedule(beat_schedule, timezone="Europe/Paris")  # the app's timezone
    assert (nightly.cron, nightly.args, nightly.timezone) == ("30 */4 * * *", (token,), "Europe/Paris")
    assert (often.every, often.queue, plain.every) == (90, "mail", 45)
    assert {nightly.name, often.name, plain.name} <= set(schedules())
    with pytest.raises(unijob.ConfigurationError, match="beat entry 'x': options expires have no unijob equivalent"):
        from_beat_schedule({"x": {"task": "tests.jobs.ping", "schedule": 60, "options": {"expires": 10}}})


def test_a_tick_whose_enqueue_failed_is_retried_until_a_newer_tick_supersedes_it(caplog: pytest.LogCaptureFixture) -> None:
    require_service("redis")
    token = uuid.uuid4().hex
    schedule = {f"tick-{token}": {"job": "tests.jobs.on_tick", "every": 60, "args": [token]}}
    owed: dict[str, dt.datetime] = {}
    after, until = at("2026-12-02T10:00:30+00:00"), at("2026-12-02T10:01:30+00:00")  # one tick: 10:01
    dead = f"redis://127.0.0.1:{free_port()}/0"
    with unijob.override(adapter="rq", url=dead, recurring=schedule), caplog.at_level(logging.ERROR, logger="unijob"):
        assert enqueue_due(after, until, owed=owed) == []  # the broker is down: nothing raised
    assert owed == {f"tick-{token}": at("2026-12-02T10:01:00+00:00")}
    assert f"Could not enqueue tick-{token} for its 2026-12-02T10:01:00+00:00 tick (retried next)" in caplog.text
    with unijob.override(adapter="inline", recurring=schedule):
        (job,) = enqueue_due(until, until + dt.timedelta(seconds=1), owed=owed)  # it is back: the owed tick goes
        assert job.scheduled_at == at("2026-12-02T10:01:00+00:00") and owed == {}
        wait_until(lambda: jobs.records(token), timeout=10, message="the owed tick to run")
        owed[f"tick-{token}"] = at("2026-12-02T10:01:00+00:00")
        with caplog.at_level(logging.WARNING, logger="unijob"):
            (newer,) = enqueue_due(until, until + dt.timedelta(minutes=1), owed=owed)
        assert newer.scheduled_at == at("2026-12-02T10:02:00+00:00") and owed == {}
        assert f"Skipped the 2026-12-02T10:01:00+00:00 tick of tick-{token}" in caplog.text
