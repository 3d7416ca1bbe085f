from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import uuid
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import unijob
from unijob import serializers
from unijob.errors import DeserializationError


class Color(enum.Enum):
    RED = "red"
    BLUE = 2


@dataclasses.dataclass(frozen=True)
class Point:
    x: int
    y: dt.date


class Owner:  # not serializable: no serializer registered
    pass


def round_trip(value: Any) -> Any:
    import json

    return serializers.load(json.loads(json.dumps(serializers.dump(value))))


scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False),
    st.text(),
    st.datetimes(timezones=st.none() | st.timezones()),
    st.dates(),
    st.times(timezones=st.none() | st.just(dt.timezone.utc)),
    st.timedeltas(),
    st.decimals(allow_nan=False, allow_infinity=False),
    st.uuids(),
    st.binary(),
    st.sampled_from(Color),
    st.builds(Point, st.integers(), st.dates()),
)
hashables = st.one_of(st.integers(), st.text(), st.uuids(), st.dates(), st.tuples(st.integers(), st.text()))
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.tuples(inner, inner),
        st.dictionaries(st.text(), inner, max_size=4),
        st.dictionaries(hashables, inner, max_size=4),
        st.sets(hashables, max_size=4),
        st.frozensets(hashables, max_size=4),
    ),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None)
@given(values)
def test_every_supported_value_comes_back_equal(value: Any) -> None:
    result = round_trip(value)
    assert result == value
    assert type(result) is type(value)


@given(st.datetimes(timezones=st.timezones()))
def test_aware_datetimes_keep_their_zone_and_microseconds(value: dt.datetime) -> None:
    result = round_trip(value)
    assert result.tzinfo is not None and result.utcoffset() == value.utcoffset()
    assert (result.microsecond, result.tzname()) == (value.microsecond, value.tzname())


def test_zoneinfo_is_kept_by_name() -> None:
    value = dt.datetime(2026, 3, 29, 2, 30, tzinfo=ZoneInfo("Europe/Paris"))
    assert round_trip(value).tzinfo == ZoneInfo("Europe/Paris")


def test_plain_json_stays_plain_on_the_wire() -> None:
    value = {"ids": [1, 2, 3], "name": "x", "ok": True, "none": None, "ratio": 0.5}
    assert serializers.dump(value) == value


def test_a_dict_that_looks_like_a_tag_is_not_mistaken_for_one() -> None:
    value = {"__uj__": "datetime", "v": "2026-01-01T00:00:00"}
    assert serializers.dump(value) != value
    assert round_trip(value) == value


def test_custom_serializer_registry() -> None:
    class Money:
        def __init__(self, cents: int, currency: str) -> None:
            self.cents, self.currency = cents, currency

        def __eq__(self, other: object) -> bool:
            return isinstance(other, Money) and (self.cents, self.currency) == (other.cents, other.currency)

    serializers.register(Money, lambda m: [m.cents, m.currency], lambda raw: Money(*raw), tag="test.Money")
    assert round_trip({"price": Money(1999, "EUR")}) == {"price": Money(1999, "EUR")}


def test_locator_passes_records_by_reference_and_loads_them_fresh() -> None:
    database = {7: "Ada"}

    class Model:
        def __init__(self, pk: int) -> None:
            self.pk = pk
            self.name = database[pk]

    serializers.register_locator(Model, lambda obj: obj.pk, lambda cls, pk: cls(pk))
    wire = serializers.dump(Model(7))
    assert wire == {
        "__uj__": "ref",
        "v": [f"{__name__}.test_locator_passes_records_by_reference_and_loads_them_fresh.<locals>.Model", 7],
    }
    database[7] = "Ada Lovelace"  # the worker sees the record as it is when the job runs
    assert serializers.load(wire).name == "Ada Lovelace"


def test_unserializable_argument_names_the_job_and_the_path() -> None:
    @unijob.job
    def send_report(filters: dict[str, Any], limit: int = 10) -> None: ...

    with pytest.raises(unijob.SerializationError) as error:
        send_report.perform_later({"owner": Owner()})
    assert str(error.value) == (
        "send_report: argument filters['owner'] of type Owner is not serializable; "
        "register a serializer with unijob.serializers.register"
    )
    with pytest.raises(unijob.SerializationError, match=r"argument limit of type Owner"):
        send_report.perform_later({}, limit=Owner())  # type: ignore[arg-type]


def test_unknown_types_on_the_wire_are_refused_not_imported() -> None:
    with pytest.raises(DeserializationError, match="unknown argument type"):
        serializers.load({"__uj__": "dataclass:subprocess.Popen", "v": {"args": ["true"]}})
    with pytest.raises(DeserializationError, match="no locator"):
        serializers.load({"__uj__": "ref", "v": ["os.PathLike", 1]})


def test_malformed_tagged_value_is_a_clear_error() -> None:
    with pytest.raises(DeserializationError, match="malformed 'date'"):
        serializers.load({"__uj__": "date", "v": "not a date"})


def test_uuid_and_decimal_precision_survive() -> None:
    assert round_trip(Decimal("0.1000000000000000055511151231257827")) == Decimal("0.1000000000000000055511151231257827")
    u = uuid.uuid4()
    assert round_trip(u) == u
