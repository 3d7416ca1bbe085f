"""Hostile and unusual input: every value either comes back with its type or is refused at
enqueue, naming the argument; a hostile payload only ever raises unijob's own errors; one bad job
in a bulk enqueue is reported on that job alone."""

from __future__ import annotations

import collections
import contextlib
import datetime as dt
import enum
import json
import math
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import unijob
from unijob import serializers
from unijob.adapters.test import TestAdapter
from unijob.envelope import Envelope
from unijob.errors import DeserializationError, EnvelopeError, Error


class Permission(enum.Flag):
    R = 1
    W = 2
    X = 4


class Point(NamedTuple):
    x: int
    y: int


class Tags(set[str]):
    pass


class Email(str):
    pass


@unijob.job
def take(value: Any) -> None: ...


def round_trip(value: Any) -> Any:
    return serializers.load(json.loads(json.dumps(serializers.dump(value), allow_nan=False)))


# --- values that change on the way, or crash the walk ---------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        Permission.R | Permission.W,
        Permission(0),
        Point(1, 2),
        collections.OrderedDict([("b", 1), ("a", 2)]),
        collections.Counter("hello"),
        dt.time(10, 30, tzinfo=ZoneInfo("Europe/Paris")),
        dt.time(1, 30, fold=1),
        dt.datetime(2026, 10, 25, 2, 30, fold=1),  # naive, the second 02:30
        dt.datetime(2026, 10, 25, 2, 30, fold=1, tzinfo=dt.timezone(dt.timedelta(hours=2))),
        dt.datetime(2026, 10, 25, 2, 30, fold=1, tzinfo=ZoneInfo("Europe/Paris")),
        math.inf,
        -math.inf,
        {"ratio": math.inf},
    ],
    ids=repr,
)
def test_a_value_comes_back_with_its_type(value: Any) -> None:
    result = round_trip(value)
    assert type(result) is type(value)
    assert result == value
    for attribute in ("fold", "tzinfo"):
        assert getattr(result, attribute, None) == getattr(value, attribute, None)


def test_nan_comes_back_as_nan_and_never_as_a_non_json_token() -> None:
    wire = serializers.dump([math.nan])
    json.dumps(wire, allow_nan=False)  # standard JSON
    assert math.isnan(round_trip(math.nan))


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (collections.defaultdict(list, {"a": [1]}), "of type defaultdict is not serializable"),
        (Tags({"a"}), "of type Tags is not serializable"),
        (Email("ada@example.com"), "of type Email is not serializable"),
        (10**5000, "is an integer of more than 4,300 digits"),
        (dt.datetime(2026, 1, 1, tzinfo=dt.tzinfo()), "of type datetime cannot be serialized: its tzinfo"),
    ],
    ids=lambda v: type(v).__name__,
)
def test_a_value_that_cannot_come_back_as_itself_is_refused_naming_the_argument(value: Any, reason: str) -> None:
    with pytest.raises(unijob.SerializationError) as raised:
        take.perform_later(value)
    assert str(raised.value).startswith(f"take: argument value {reason}"), raised.value


def test_a_value_that_contains_itself_is_refused() -> None:
    looped: list[Any] = [1]
    looped.append(looped)
    with pytest.raises(unijob.SerializationError, match="take: argument value contains itself"):
        take.perform_later(looped)


def test_one_bad_value_in_bulk_is_reported_on_its_job_and_the_rest_are_enqueued(unijob_test: TestAdapter) -> None:
    looped: list[Any] = []
    looped.append(looped)
    bad = [collections.defaultdict(int), looped, 10**5000]
    batch = [take.new(n) for n in range(1500)]
    for index, value in zip((10, 1200, 1499), bad, strict=True):
        batch[index] = take.new(value)
    assert unijob.perform_all_later(batch) == 1497
    failed = [job for job in batch if not job.successfully_enqueued]
    assert [batch.index(job) for job in failed] == [10, 1200, 1499]
    assert all(isinstance(job.enqueue_error, unijob.SerializationError) for job in failed)
    assert len(unijob_test.enqueued_jobs) == 1497


# --- hostile envelopes and payloads ---------------------------------------------------------------


VALID = Envelope(job="tests.jobs.ping", job_id="0b9c", args=[], kwargs={}, queue="default").to_dict()


@pytest.mark.parametrize(
    "change",
    [
        {"executions": 1e999},
        {"executions": -1},
        {"executions": True},
        {"exception_executions": {"TimeoutError": "2"}},
        {"exception_executions": [1]},
        {"priority": 10**9},
        {"priority": "high"},
        {"batch_id": 7},
        {"enqueued_at": "yesterday"},
        {"enqueued_at": 5},
        {"v": True},
        {"v": "1"},
        {"job": ["os.system"]},
        {"kwargs": []},
    ],
    ids=repr,
)
def test_a_malformed_envelope_is_an_envelope_error(change: dict[str, Any]) -> None:
    with pytest.raises(EnvelopeError):
        Envelope.from_dict({**VALID, **change})


@pytest.mark.parametrize(
    "argument",
    [
        {"__uj__": ["datetime"], "v": "x"},
        {"__uj__": 5},
        {"__uj__": "decimal", "v": "x"},
        {"__uj__": "enum:enum.Enum", "v": "A"},
        {"__uj__": "timedelta", "v": []},
        {"__uj__": "bytes", "v": "not base64!"},
        {"__uj__": "float", "v": "1e999"},
        {"__uj__": "ref", "v": "x"},
        {"__uj__": "datetime", "v": {"local": 1}},
        {"__uj__": "tuple", "v": 5},
        {"__uj__": "dict", "v": [[[], 1]]},
    ],
    ids=repr,
)
def test_a_hostile_argument_is_a_deserialization_error(argument: Any) -> None:
    with pytest.raises(DeserializationError):
        serializers.loads_args([argument], {})


def test_json_nested_a_thousand_deep_is_refused_with_unijobs_own_errors() -> None:
    deep: list[Any] = []
    for _ in range(1000):
        deep = [deep]
    with pytest.raises(DeserializationError, match="nested too deeply"):
        serializers.loads_args([deep], {})
    with pytest.raises(EnvelopeError):
        Envelope.from_json('{"v": 1, "args": ' + "[" * 100_000 + "]" * 100_000 + "}")


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.sampled_from(["__uj__", "v", "x", "local", "tz"]) | st.text(max_size=5), inner, max_size=4)
    ),
    max_leaves=20,
)
tags = st.sampled_from(
    ["datetime", "date", "time", "timedelta", "decimal", "uuid", "bytes", "tuple", "set", "frozenset", "dict",
     "ordereddict", "counter", "ref", "float", "batch", "enum:enum.Enum", f"enum:{__name__}.Permission",
     f"namedtuple:{__name__}.Point", "dataclass:x.Y"]
)  # fmt: skip
tagged = st.builds(lambda tag, value: {"__uj__": tag, "v": value}, tags | json_values, json_values)


@settings(max_examples=400, deadline=None)
@given(st.lists(tagged | json_values, max_size=3), st.dictionaries(st.text(max_size=5), tagged | json_values, max_size=3))
def test_fuzzed_arguments_raise_nothing_but_deserialization_errors(args: list[Any], kwargs: dict[str, Any]) -> None:
    with contextlib.suppress(DeserializationError):
        serializers.loads_args(args, kwargs)


envelope_fields = st.fixed_dictionaries(
    {},
    optional={key: json_values | st.just(VALID[key]) for key in VALID if key not in ("args", "kwargs")}
    | {
        "args": st.lists(tagged | json_values, max_size=2) | json_values,
        "kwargs": st.dictionaries(st.text(max_size=3), tagged, max_size=2) | json_values,
    },
)


@settings(max_examples=400, deadline=None)
@given(envelope_fields)
def test_fuzzed_envelopes_raise_nothing_but_unijob_errors(data: dict[str, Any]) -> None:
    try:
        envelope = Envelope.from_json(json.dumps(data))
        serializers.loads_args(envelope.args, envelope.kwargs)
    except Error:
        pass


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=64) | st.text(max_size=64))
def test_fuzzed_bytes_raise_nothing_but_envelope_errors(raw: bytes | str) -> None:
    with contextlib.suppress(EnvelopeError):
        Envelope.from_json(raw)
