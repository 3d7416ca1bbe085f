"""The envelope: one job invocation as a versioned JSON structure.

Format version 1, as a JSON object::

    {
      "v": 1,                          # format version
      "job": "app.jobs.send_welcome",  # registered job name
      "id": "0b9c...",                 # unijob job id (UUID)
      "args": [42], "kwargs": {},      # serialized arguments (see unijob.serializers)
      "queue": "mail",
      "priority": 10,                  # -100..100, larger runs sooner; null when unset
      "enqueued_at": "2026-11-23T18:00:00.000000+00:00",
      "scheduled_at": null,            # ISO-8601 UTC, or null to run as soon as possible
      "executions": 0,                 # how many times it has been performed before
      "exception_executions": {},      # retries used, per retry policy
      "batch_id": null
    }

Operations add keys only when they are set: ``timeout``, ``expires_at``, ``unique_key``,
``concurrency_key`` with ``concurrency_limit``, ``postponements``, and ``headers`` (the custom
headers of an adopted Celery call, an object of named JSON values).

Adapters put ``args``/``kwargs`` into the native call's own arguments and the rest
(:meth:`Envelope.meta`) into native headers, meta or options.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from collections.abc import Mapping
from typing import Any, Final

from unijob.constants import PRIORITY_MAX, PRIORITY_MIN
from unijob.errors import EnvelopeError

FORMAT_VERSION: Final = 1
_REQUIRED: Final = ("v", "job", "id", "args", "kwargs", "queue")


@dataclasses.dataclass(slots=True)  # a value, never changed once built; not frozen, for speed on every job
class Envelope:
    job: str
    job_id: str
    args: list[Any]
    kwargs: dict[str, Any]
    queue: str
    priority: int | None = None
    enqueued_at: dt.datetime | None = None
    scheduled_at: dt.datetime | None = None
    executions: int = 0
    exception_executions: Mapping[str, int] = dataclasses.field(default_factory=dict)
    batch_id: str | None = None
    # operations: absent from the message when unset
    timeout: float | None = None  # seconds: a hard time limit
    expires_at: dt.datetime | None = None  # discarded, never run, if not started by then
    unique_key: str | None = None
    concurrency_key: str | None = None
    concurrency_limit: int | None = None
    postponements: int = 0  # times it waited for a concurrency slot (not attempts)
    headers: Mapping[str, Any] | None = None  # custom headers of the call (an adopted Celery apply_async(headers=))

    def meta(self) -> dict[str, Any]:
        """Everything but the arguments, as JSON-compatible values (for native headers)."""
        meta = {
            "v": FORMAT_VERSION,
            "job": self.job,
            "id": self.job_id,
            "queue": self.queue,
            "priority": self.priority,
            "enqueued_at": _iso(self.enqueued_at),
            "scheduled_at": _iso(self.scheduled_at),
            "executions": self.executions,
            "exception_executions": dict(self.exception_executions),
            "batch_id": self.batch_id,
        }
        if self.timeout is not None:
            meta["timeout"] = self.timeout
        if self.expires_at is not None:
            meta["expires_at"] = _iso(self.expires_at)
        if self.unique_key is not None:
            meta["unique_key"] = self.unique_key
        if self.concurrency_key is not None:
            meta["concurrency_key"], meta["concurrency_limit"] = self.concurrency_key, self.concurrency_limit
        if self.postponements:
            meta["postponements"] = self.postponements
        if self.headers:
            meta["headers"] = dict(self.headers)
        return meta

    def to_dict(self) -> dict[str, Any]:
        data = self.meta()
        data["args"] = self.args
        data["kwargs"] = self.kwargs
        return data

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), separators=(",", ":"))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Envelope:
        """The envelope a JSON object describes. Anything else raises :class:`EnvelopeError`."""
        if not isinstance(data, Mapping):
            raise EnvelopeError(f"a unijob envelope is a JSON object, got {type(data).__name__}")
        missing = [key for key in _REQUIRED if key not in data]
        if missing:
            raise EnvelopeError(f"malformed unijob envelope: missing {', '.join(missing)}")
        if type(data["v"]) is not int or data["v"] != FORMAT_VERSION:
            raise EnvelopeError(
                f"unijob envelope format version {data['v']!r} is not supported "
                f"(this unijob reads version {FORMAT_VERSION}); upgrade unijob on the worker"
            )
        try:
            return cls(
                job=_typed(data, "job", str),
                job_id=_typed(data, "id", str),
                args=_typed(data, "args", list),
                kwargs=_typed(data, "kwargs", dict),
                queue=_typed(data, "queue", str),
                priority=_priority(data),
                enqueued_at=_parse_time(data, "enqueued_at"),
                scheduled_at=_parse_time(data, "scheduled_at"),
                executions=_count(data.get("executions") or 0, "executions"),
                exception_executions=_counters(data.get("exception_executions") or {}),
                batch_id=_optional(data, "batch_id", str),
                timeout=_seconds(data.get("timeout")),
                expires_at=_parse_time(data, "expires_at"),
                unique_key=_optional(data, "unique_key", str),
                concurrency_key=_optional(data, "concurrency_key", str),
                concurrency_limit=_limit(data.get("concurrency_limit")),
                postponements=_count(data.get("postponements") or 0, "postponements"),
                headers=_headers(data.get("headers")),
            )
        except (TypeError, ValueError, OverflowError) as exc:
            raise EnvelopeError(f"malformed unijob envelope: {exc}") from None

    @classmethod
    def from_json(cls, raw: str | bytes) -> Envelope:
        try:
            data = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as exc:
            raise EnvelopeError(f"a unijob envelope must be JSON: {exc}") from None
        except RecursionError:
            raise EnvelopeError("a unijob envelope must be JSON nested less deeply than this one") from None
        return cls.from_dict(data)


_KINDS: Final = {int: "an integer", str: "a string", list: "a list", dict: "an object"}


def _typed(data: Mapping[str, Any], key: str, kind: type[Any]) -> Any:
    value = data[key]
    if type(value) is not kind:  # bool is not an int here, and a str subclass is not a str
        raise TypeError(f"{key} must be {_KINDS.get(kind, kind.__name__)}, got {type(value).__name__}")
    return value


def _optional(data: Mapping[str, Any], key: str, kind: type[Any]) -> Any:
    return None if data.get(key) is None else _typed(data, key, kind)


def _priority(data: Mapping[str, Any]) -> int | None:
    priority: int | None = _optional(data, "priority", int)
    if priority is not None and not PRIORITY_MIN <= priority <= PRIORITY_MAX:
        raise ValueError(f"priority must be from {PRIORITY_MIN} to {PRIORITY_MAX}, got {priority}")
    return priority


def _seconds(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < 1e10:
        raise ValueError(f"timeout must be a number of seconds, got {value!r}")
    return float(value)


def _limit(value: Any) -> int | None:
    if value is not None and (type(value) is not int or value < 1):
        raise ValueError(f"concurrency_limit must be a whole number of at least 1, got {value!r}")
    return value


def _count(value: Any, name: str) -> int:
    if type(value) is not int or value < 0:
        raise TypeError(f"{name} must be a count (a whole number of at least 0), got {value!r}")
    return value


def _counters(value: Any) -> dict[str, int]:
    if not isinstance(value, Mapping):
        raise TypeError(f"exception_executions must be an object, got {type(value).__name__}")
    return {
        _typed({"policy": key}, "policy", str): _count(count, f"exception_executions[{key!r}]") for key, count in value.items()
    }


def _iso(value: dt.datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def _parse_time(data: Mapping[str, Any], key: str) -> dt.datetime | None:
    value = _optional(data, key, str)
    if value is None:
        return None
    parsed = dt.datetime.fromisoformat(value)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.timezone.utc)


def _headers(value: object) -> dict[str, Any] | None:
    if value is None:
        return None
    if not isinstance(value, dict) or not all(isinstance(name, str) for name in value):
        raise ValueError(f"headers must be an object of named values, not {type(value).__name__}")
    return value
