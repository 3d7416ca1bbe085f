"""Broker URLs: which kind of server a URL names, SQLite paths, and URLs safe to print."""

from __future__ import annotations

import os
from collections.abc import Collection, Mapping
from typing import Literal
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from unijob.errors import ConfigurationError

REDIS_SCHEMES = frozenset({"redis", "rediss", "unix"})
AMQP_SCHEMES = frozenset({"amqp", "amqps", "pyamqp"})


def scheme(url: str) -> str:
    return urlsplit(url).scheme.lower()


def require_scheme(url: str, allowed: Collection[str], backend: str) -> str:
    """The scheme of ``url`` when ``backend`` can use it; otherwise a :class:`ConfigurationError`
    that names the schemes it takes."""
    found = scheme(url)
    if found not in allowed:
        schemes = ", ".join(f"{name}://" for name in sorted(allowed))
        raise ConfigurationError(f"the {backend} adapter takes a {schemes} URL, not {redact(url)}")
    return found


def sqlite_path(url: str | None, path: str | os.PathLike[str] | None, default: str) -> str:
    """The absolute path of a SQLite file, from a URL in SQLAlchemy's form (``sqlite:///relative.db``,
    ``sqlite:////absolute.db``), else ``path``, else ``default`` (relative to the working directory)."""
    if url is not None:
        parts = urlsplit(url)
        if parts.scheme != "sqlite" or parts.netloc or not parts.path.startswith("/") or len(parts.path) < 2:
            raise ConfigurationError(f"a SQLite URL is sqlite:///relative/file.db or sqlite:////absolute/file.db, not {url!r}")
        path = parts.path[1:]
    return os.path.abspath(os.fspath(path or default))


def with_query_defaults(url: str, defaults: Mapping[str, str]) -> str:
    """``url`` with ``defaults`` added to its query string; the URL's own parameters win."""
    if ";" in url:  # several servers (pika): each URL is taken as given
        return url
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query))
    return urlunsplit(parts._replace(query=urlencode({**defaults, **query})))


def redact(url: str) -> str:
    """The URL with its password hidden, for messages and logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{parts.username or ''}:***@{host}"))


def store_location(url: str, needs: str) -> tuple[Literal["redis", "sqlite", "memory"], str]:
    """Where a feature (batches, results, unique jobs) keeps its store in a backend: on Redis (the
    URL), in a SQLite file (its path), or in the memory of this process (``memory://``)."""
    kind = scheme(url)
    if kind in REDIS_SCHEMES:
        return "redis", url
    if kind == "sqlite":
        return "sqlite", sqlite_path(url, None, "")
    if kind == "memory":
        return "memory", ""
    raise ConfigurationError(
        f"no store for {needs} at {redact(url) if url else 'this backend'}: {needs} need Redis or SQLite; set the "
        "backend option store='redis://...' (for example on a RabbitMQ-only deployment)"
    )
