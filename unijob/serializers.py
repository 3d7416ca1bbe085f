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
import dataclasses
import datetime as dt
import enum
import sys
import uuid
from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any, Final, NamedTuple, TypeVar

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

_NATIVE_SCALARS: Final = (str, int, float, bool, type(None))


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
    out_args = [_dump(value, f"args[{i}]") for i, value in enumerate(args)]
    out_kwargs = {key: _dump(value, key) for key, value in kwargs.items()}
    return out_args, out_kwargs


def loads_args(args: list[JSON], kwargs: Mapping[str, JSON]) -> tuple[tuple[Any, ...], dict[str, Any]]:
    return tuple(_load(value) for value in args), {key: _load(value) for key, value in kwargs.items()}


def dump(value: Any, name: str = "value") -> JSON:
    """Serialize one value (batch properties, for one). Raises :class:`SerializationError`."""
    try:
        return _dump(value, name)
    except NotSerializable as exc:
        raise SerializationError(f"{exc.path} {exc.reason}") from None


def load(data: JSON) -> Any:
    return _load(data)


# --- the walk --------------------------------------------------------------------------------


def _dump(value: Any, path: str) -> JSON:
    cls = type(value)
    if cls in _NATIVE_SCALARS:
        return value
    if cls is list:
        return [_dump(item, f"{path}[{i}]") for i, item in enumerate(value)]
    if cls is dict:
        if all(type(key) is str for key in value) and TAG not in value:
            return {key: _dump(item, f"{path}[{key!r}]") for key, item in value.items()}
        pairs = [[_dump(k, f"{path}.keys()"), _dump(v, f"{path}[{k!r}]")] for k, v in value.items()]
        return {TAG: "dict", VALUE: pairs}
    codec = _by_type.get(cls) or _find_codec(value)
    if codec is not None:
        return {TAG: codec.tag, VALUE: codec.dump(value) if codec.tag in _SHALLOW else _dump(codec.dump(value), path)}
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
    if tag == "ref":
        return _load_ref(data[VALUE])
    codec = _by_tag.get(tag) or _codec_for_known_type(tag)
    if codec is None:
        raise DeserializationError(
            f"unknown argument type {tag!r}: register it with unijob.serializers.register in a module the worker imports"
        )
    raw = data.get(VALUE)
    try:
        return codec.load(raw if codec.tag in _SHALLOW else _load(raw))
    except (TypeError, ValueError, KeyError) as exc:
        raise DeserializationError(f"malformed {tag!r} argument: {exc}") from exc


# --- Enum, dataclass and locator types: known by class path, never imported ------------------


def _type_path(cls: type[Any]) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def _find_codec(value: Any) -> _Codec | None:
    cls = type(value)
    if isinstance(value, enum.Enum):
        codec = _Codec("enum:" + _type_path(cls), cls, lambda member: member.name, lambda name: cls[name])
    elif dataclasses.is_dataclass(value):
        codec = _Codec(
            "dataclass:" + _type_path(cls),
            cls,
            lambda obj: {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj) if f.init},
            lambda fields: cls(**fields),
        )
    else:
        for known, candidate in _by_type.items():
            if isinstance(value, known):
                return candidate
        return None
    _by_tag[codec.tag] = codec
    _by_type[cls] = codec
    return codec


def _resolve_known_class(path: str) -> type[Any] | None:
    """Find a class by ``module.QualName`` among modules already imported. Never imports."""
    module_name, _, qualname = path.rpartition(".")
    while module_name:
        module = sys.modules.get(module_name)
        if module is not None:
            obj: Any = module
            for part in qualname.split("."):
                obj = getattr(obj, part, None)
            return obj if isinstance(obj, type) else None
        module_name, _, head = module_name.rpartition(".")
        qualname = f"{head}.{qualname}"
    return None


def _codec_for_known_type(tag: str) -> _Codec | None:
    kind, _, path = tag.partition(":")
    cls = _resolve_known_class(path) if kind in ("enum", "dataclass") else None
    if cls is None:
        return None
    if kind == "enum" and issubclass(cls, enum.Enum):
        return _find_codec(next(iter(cls)))
    if kind == "dataclass" and dataclasses.is_dataclass(cls):
        return _Codec(tag, cls, lambda obj: obj, lambda fields: cls(**fields))
    return None


def _load_ref(raw: JSON) -> Any:
    path, pk = raw
    cls = _ref_classes.get(path) or _resolve_known_class(path)
    for base, _identify, locate in _locators:
        if cls is not None and issubclass(cls, base):
            return locate(cls, _load(pk))
    raise DeserializationError(f"no locator is registered for {path!r}")


# --- built-in types ----------------------------------------------------------------------------


def _dump_datetime(value: dt.datetime) -> JSON:
    tz = value.tzinfo
    key = getattr(tz, "key", None)  # zoneinfo.ZoneInfo keeps its name; an offset would lose DST rules
    if key is not None:
        return {"local": value.replace(tzinfo=None).isoformat(), "tz": key, "fold": value.fold}
    return value.isoformat()


def _load_datetime(raw: JSON) -> dt.datetime:
    if isinstance(raw, str):
        return dt.datetime.fromisoformat(raw)
    from zoneinfo import ZoneInfo

    return dt.datetime.fromisoformat(raw["local"]).replace(tzinfo=ZoneInfo(raw["tz"]), fold=raw["fold"])


def _register_builtins() -> None:
    register(dt.datetime, _dump_datetime, _load_datetime, tag="datetime")
    register(dt.date, dt.date.isoformat, dt.date.fromisoformat, tag="date")
    register(dt.time, dt.time.isoformat, dt.time.fromisoformat, tag="time")
    register(
        dt.timedelta,
        lambda td: [td.days, td.seconds, td.microseconds],
        lambda raw: dt.timedelta(days=raw[0], seconds=raw[1], microseconds=raw[2]),
        tag="timedelta",
    )
    register(Decimal, str, Decimal, tag="decimal")
    register(uuid.UUID, str, uuid.UUID, tag="uuid")
    register(bytes, lambda b: base64.b64encode(b).decode("ascii"), base64.b64decode, tag="bytes")
    register(tuple, list, tuple, tag="tuple")
    register(set, list, set, tag="set")
    register(frozenset, list, frozenset, tag="frozenset")
    register(dict, lambda d: d, dict, tag="dict")


# Codecs whose dumped form is already plain JSON: no second walk over it.
_SHALLOW: Final = frozenset({"datetime", "date", "time", "timedelta", "decimal", "uuid", "bytes"})

_register_builtins()
