"""Job arguments to JSON and back.

JSON-native values (``None``, ``bool``, ``int``, ``float``, ``str``, lists, and dicts with
string keys) travel unchanged, so a native dashboard shows plain arguments. Every other
supported value becomes a tagged object ``{"__uj__": TAG, "v": ...}``. A dict that happens
to contain the key ``"__uj__"`` is itself tagged, so user data can never be mistaken for a tag.

Custom types are added with :func:`register`; model instances travel by reference (class and
primary key, loaded fresh in the worker) with :func:`register_locator`.

Types are only ever resolved among classes this process already knows: registered classes, and
Enum/dataclass types whose module is already imported. Nothing named in a payload is imported.
"""

from __future__ import annotations

import base64
import collections
import dataclasses
import datetime as dt
import enum
import math
import sys
import uuid
from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any, Final, NamedTuple, TypeVar
from zoneinfo import ZoneInfo

from unijob.errors import DeserializationError, SerializationError

TAG: Final = "__uj__"
VALUE: Final = "v"

T = TypeVar("T")
JSON = Any  # a JSON-compatible value; recursive aliases add nothing for callers here


class NotSerializable(Exception):
    """Raised inside the walk; carries the path of the offending value and why, for a good message."""

    def __init__(self, path: str, value: object, reason: str | None = None) -> None:
        super().__init__(path)
        self.path = path
        self.value = value
        self.reason = reason or (
            f"of type {type(value).__qualname__} is not serializable; register a serializer with unijob.serializers.register"
        )


class _Codec(NamedTuple):
    tag: str
    cls: type[Any]
    dump: Callable[[Any], JSON]
    load: Callable[[JSON], Any]


_by_type: dict[type[Any], _Codec] = {}
_by_tag: dict[str, _Codec] = {}
_ref_classes: dict[str, type[Any]] = {}  # classes passed by reference from this process
_locators: list[tuple[type[Any], Callable[[Any], JSON], Callable[[type[Any], JSON], Any]]] = []


def register(
    cls: type[T],
    dump: Callable[[T], JSON],
    load: Callable[[JSON], T],
    *,
    tag: str | None = None,
) -> None:
    """Teach unijob to pass instances of ``cls`` as job arguments.

    ``dump`` turns an instance into a JSON-compatible value (which may itself contain any
    serializable value), ``load`` turns that back into an instance. ``tag`` names the type
    on the wire; it defaults to ``module.QualName`` and must be stable across deployments.
    """
    codec = _Codec(tag or _type_path(cls), cls, dump, load)
    if codec.tag in _by_tag and _by_tag[codec.tag].cls is not cls:
        raise ValueError(f"serializer tag {codec.tag!r} is already used by {_by_tag[codec.tag].cls!r}")
    _by_type[cls] = codec
    _by_tag[codec.tag] = codec


def register_locator(
    base: type[T],
    identify: Callable[[T], JSON],
    locate: Callable[[type[T], JSON], T],
) -> None:
    """Pass instances of ``base`` (and its subclasses) by reference, the GlobalID way.

    ``identify(obj)`` returns the primary key; in the worker, ``locate(cls, pk)`` loads the
    record fresh. For example, for Django models::

        unijob.serializers.register_locator(models.Model, lambda o: o.pk,
                                            lambda cls, pk: cls._default_manager.get(pk=pk))
    """
    _locators.append((base, identify, locate))


def dumps_args(args: tuple[Any, ...] | list[Any], kwargs: Mapping[str, Any]) -> tuple[list[JSON], dict[str, JSON]]:
    """Serialize a call's arguments. Raises :class:`NotSerializable` naming the path."""
    out_args = [_dump_top(value, f"args[{i}]") for i, value in enumerate(args)]
    out_kwargs = {key: _dump_top(value, key) for key, value in kwargs.items()}
    return out_args, out_kwargs


def loads_args(args: list[JSON], kwargs: Mapping[str, JSON]) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """The arguments a payload carries. Raises :class:`DeserializationError`, whatever the payload."""
    if type(args) is not list or not isinstance(kwargs, Mapping):
        raise DeserializationError("arguments must be a list and keyword arguments an object")
    try:
        return tuple(_load(value) for value in args), {key: _load(value) for key, value in kwargs.items()}
    except RecursionError:
        raise DeserializationError("the arguments are nested too deeply to be read") from None


def dump(value: Any, name: str = "value") -> JSON:
    """Serialize one value (batch properties, for one). Raises :class:`SerializationError`."""
    try:
        return _dump_top(value, name)
    except NotSerializable as exc:
        raise SerializationError(f"{exc.path} {exc.reason}") from None


def load(data: JSON) -> Any:
    """One value back. Raises :class:`DeserializationError`, whatever the payload."""
    try:
        return _load(data)
    except RecursionError:
        raise DeserializationError("the value is nested too deeply to be read") from None


# --- the walk --------------------------------------------------------------------------------

# Python refuses to turn an int of more digits than this into text, so JSON cannot carry it.
_INT_DIGITS: Final = 4300
_INT_LIMIT: Final = 10**_INT_DIGITS
_FLOAT_NAMES: Final = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}


def _dump_top(value: Any, path: str) -> JSON:
    try:
        return _dump(value, path)
    except RecursionError:
        raise NotSerializable(path, value, "contains itself (a reference cycle) or is nested too deeply to serialize") from None


def _dump(value: Any, path: str) -> JSON:
    cls = type(value)
    if cls is str or cls is bool or value is None:
        return value
    if cls is int:
        if -_INT_LIMIT < value < _INT_LIMIT:
            return value
        raise NotSerializable(path, value, f"is an integer of more than {_INT_DIGITS:,} digits, which JSON cannot carry")
    if cls is float:
        if value - value == 0.0:  # finite: JSON's own numbers
            return value
        return {TAG: "float", VALUE: repr(value)}  # nan, inf, -inf: not JSON numbers
    if cls is list:
        return [_dump(item, f"{path}[{i}]") for i, item in enumerate(value)]
    if cls is dict:
        if all(type(key) is str for key in value) and TAG not in value:
            return {key: _dump(item, f"{path}[{key!r}]") for key, item in value.items()}
        pairs = [[_dump(k, f"{path}.keys()"), _dump(v, f"{path}[{k!r}]")] for k, v in value.items()]
        return {TAG: "dict", VALUE: pairs}
    codec = _by_type.get(cls) or _find_codec(value)
    if codec is not None:
        try:
            dumped = codec.dump(value)
        except NotSerializable:
            raise
        except Exception as exc:  # a codec that cannot take this value says why
            raise NotSerializable(path, value, f"of type {cls.__qualname__} cannot be serialized: {exc}") from None
        return {TAG: codec.tag, VALUE: dumped if codec.tag in _SHALLOW else _dump(dumped, path)}
    for base, identify, _locate in _locators:
        if isinstance(value, base):
            _ref_classes[_type_path(cls)] = cls
            return {TAG: "ref", VALUE: [_type_path(cls), _dump(identify(value), f"{path}.pk")]}
    raise NotSerializable(path, value)


def _load(data: JSON) -> Any:
    cls = type(data)
    if cls is list:
        return [_load(item) for item in data]
    if cls is not dict:
        return data
    if TAG not in data:
        return {key: _load(item) for key, item in data.items()}
    tag = data[TAG]
    if type(tag) is not str:
        raise DeserializationError(f"malformed argument: its type tag is {type(tag).__name__}, not a string")
    raw = data.get(VALUE)
    if tag == "ref":
        return _load_ref(raw)
    if tag == "float":
        if type(raw) is not str or raw not in _FLOAT_NAMES:
            raise DeserializationError(f"malformed 'float' argument: {raw!r}")
        return _FLOAT_NAMES[raw]
    codec = _by_tag.get(tag) or _codec_for_known_type(tag)
    if codec is None:
        raise DeserializationError(
            f"unknown argument type {tag!r}: register it with unijob.serializers.register in a module the worker imports"
        )
    try:
        return codec.load(raw if codec.tag in _SHALLOW else _load(raw))
    except (DeserializationError, RecursionError):
        raise
    except Exception as exc:  # whatever a hostile payload makes a codec raise
        raise DeserializationError(f"malformed {tag!r} argument: {type(exc).__name__}: {exc}") from None


# --- Enum, dataclass, namedtuple and locator types: known by class path, never imported -------


def _type_path(cls: type[Any]) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def _find_codec(value: Any) -> _Codec | None:
    """A codec for a type known by its class path, built on first use. A subclass of a registered
    type gets none (it would come back as its base type), except the datetime types, which travel
    as themselves (freezegun's and pendulum's subclasses hold the same values)."""
    cls = type(value)
    if isinstance(value, enum.Enum):
        codec = _enum_codec(cls)
    elif dataclasses.is_dataclass(value):
        codec = _dataclass_codec(cls)
    elif isinstance(value, tuple) and isinstance(getattr(cls, "_fields", None), tuple):
        codec = _namedtuple_codec(cls)
    else:
        for base in (dt.datetime, dt.date, dt.time):
            if isinstance(value, base):
                return _by_type[base]
        return None
    _by_tag[codec.tag] = codec
    _by_type[cls] = codec
    return codec


def _enum_codec(cls: type[enum.Enum]) -> _Codec:
    if issubclass(cls, enum.Flag):  # a combination (R|W) or none (Flag(0)) has no single name
        return _Codec("enum:" + _type_path(cls), cls, lambda member: member.value, lambda value: cls(value))
    return _Codec("enum:" + _type_path(cls), cls, lambda member: member.name, lambda name: cls[name])


def _dataclass_codec(cls: type[Any]) -> _Codec:
    return _Codec(
        "dataclass:" + _type_path(cls),
        cls,
        lambda obj: {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj) if f.init},
        lambda fields: cls(**fields),
    )


def _namedtuple_codec(cls: type[Any]) -> _Codec:
    return _Codec("namedtuple:" + _type_path(cls), cls, list, lambda items: cls._make(items))


def known_class(path: str) -> type[Any] | None:
    """The class at ``module.QualName`` if its module is already imported (nothing is imported)."""
    found = imported_object(path)
    return found if isinstance(found, type) else None


def imported_object(path: str) -> Any:
    """What ``module.QualName`` is among the modules this process imported, or None. Never
    imports: a name read from a message must not run a module's code."""
    module_name, _, qualname = path.rpartition(".")
    while module_name:
        module = sys.modules.get(module_name)
        if module is not None:
            found: Any = module
            for part in qualname.split("."):
                found = getattr(found, part, None)
            return found
        module_name, _, head = module_name.rpartition(".")
        qualname = f"{head}.{qualname}"
    return None


def _codec_for_known_type(tag: str) -> _Codec | None:
    kind, _, path = tag.partition(":")
    cls = known_class(path) if kind in ("enum", "dataclass", "namedtuple") else None
    if cls is None:
        return None
    if kind == "enum" and issubclass(cls, enum.Enum):
        return _enum_codec(cls)
    if kind == "dataclass" and dataclasses.is_dataclass(cls):
        return _Codec(tag, cls, lambda obj: obj, lambda fields: cls(**fields))
    if kind == "namedtuple" and issubclass(cls, tuple) and isinstance(getattr(cls, "_fields", None), tuple):
        return _namedtuple_codec(cls)
    return None


def _load_ref(raw: JSON) -> Any:
    if type(raw) is not list or len(raw) != 2 or type(raw[0]) is not str:
        raise DeserializationError(f"malformed reference argument: {raw!r}")
    path, pk = raw
    cls = _ref_classes.get(path) or known_class(path)
    for base, _identify, locate in _locators:
        if cls is not None and issubclass(cls, base):
            key = _load(pk)
            try:
                return locate(cls, key)
            except Exception as exc:
                raise DeserializationError(f"{path} {key!r} could not be loaded: {type(exc).__name__}: {exc}") from exc
    raise DeserializationError(f"no locator is registered for {path!r}")


# --- built-in types ----------------------------------------------------------------------------


def _zone_key(value: dt.datetime | dt.time) -> str | None:
    """The name of a ZoneInfo zone (which keeps DST rules), None for a fixed offset or naive value;
    any other tzinfo (pytz, dateutil) could not come back as itself and is refused."""
    tz = value.tzinfo
    if tz is None or type(tz) is dt.timezone:
        return None
    if isinstance(tz, ZoneInfo):
        return tz.key
    raise ValueError(f"its tzinfo {tz!r} is neither a zoneinfo.ZoneInfo nor a datetime.timezone; use one of those")


def _dump_datetime(value: dt.datetime | dt.time) -> JSON:
    key = _zone_key(value)
    if key is None and not value.fold:
        return value.isoformat()
    local = value.replace(tzinfo=None).isoformat() if key is not None else value.isoformat()
    return {"local": local, "tz": key, "fold": value.fold}


def _datetime_loader(kind: type[dt.datetime] | type[dt.time]) -> Callable[[JSON], Any]:
    def load(raw: JSON) -> Any:
        if isinstance(raw, str):
            return kind.fromisoformat(raw)
        value = kind.fromisoformat(raw["local"])
        zone = ZoneInfo(raw["tz"]) if raw["tz"] is not None else value.tzinfo
        return value.replace(tzinfo=zone, fold=int(raw["fold"]))

    return load


def _pairs(mapping: Mapping[Any, Any]) -> list[list[Any]]:
    return [[key, value] for key, value in mapping.items()]


def _b64decode(text: str) -> bytes:
    return base64.b64decode(text, validate=True)


def _register_builtins() -> None:
    register(dt.datetime, _dump_datetime, _datetime_loader(dt.datetime), tag="datetime")
    register(dt.date, dt.date.isoformat, dt.date.fromisoformat, tag="date")
    register(dt.time, _dump_datetime, _datetime_loader(dt.time), tag="time")
    register(
        dt.timedelta,
        lambda td: [td.days, td.seconds, td.microseconds],
        lambda raw: dt.timedelta(days=raw[0], seconds=raw[1], microseconds=raw[2]),
        tag="timedelta",
    )
    register(Decimal, str, Decimal, tag="decimal")
    register(uuid.UUID, str, uuid.UUID, tag="uuid")
    register(bytes, lambda b: base64.b64encode(b).decode("ascii"), _b64decode, tag="bytes")
    register(tuple, list, tuple, tag="tuple")
    register(set, list, set, tag="set")
    register(frozenset, list, frozenset, tag="frozenset")
    register(dict, lambda d: d, dict, tag="dict")
    register(collections.OrderedDict, _pairs, collections.OrderedDict, tag="ordereddict")
    register(collections.Counter, _pairs, lambda pairs: collections.Counter(dict(pairs)), tag="counter")


# Codecs whose dumped form is already plain JSON: no second walk over it.
_SHALLOW: Final = frozenset({"datetime", "date", "time", "timedelta", "decimal", "uuid", "bytes"})

_register_builtins()
