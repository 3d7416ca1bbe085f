"""The outside world the shop talks to: its mail server, its payment gateway, its warehouse.

Stand-ins that keep what happened in a ledger in Redis (``SHOP_LEDGER_URL``), so it can be seen
from any process, and that a test can make fail for a while (``outage``).
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

import redis

LEDGER_URL = os.environ.get("SHOP_LEDGER_URL", "redis://localhost:6379/15")
LEDGER = "shop:ledger"
_client: redis.Redis | None = None


class ServiceUnavailable(Exception):
    """A service did not answer; asking again later may work."""


class GatewayUnavailable(ServiceUnavailable):
    pass


class WarehouseUnavailable(ServiceUnavailable):
    pass


def client() -> redis.Redis:
    global _client
    if _client is None:
        _client = redis.Redis.from_url(LEDGER_URL)
    return _client


def record(event: str, **data: Any) -> None:
    """Write one line of the ledger: what happened, when, in which process."""
    client().rpush(LEDGER, json.dumps({"event": event, "at": time.time(), "pid": os.getpid(), **data}))


def ledger(event: str | None = None) -> list[dict[str, Any]]:
    entries = [json.loads(raw) for raw in client().lrange(LEDGER, 0, -1)]
    return [entry for entry in entries if event is None or entry["event"] == event]


def outage(service: str, key: str, calls: int) -> None:
    """Make the next ``calls`` calls to ``service`` about ``key`` (an order, a SKU) fail."""
    client().set(f"shop:outage:{service}:{key}", calls)


def clear() -> None:
    """Forget the ledger and every outage."""
    client().delete(LEDGER, *client().keys("shop:outage:*"))


def _answer(service: str, key: str, error: type[ServiceUnavailable]) -> None:
    if client().decr(f"shop:outage:{service}:{key}") >= 0:
        raise error(f"{service} did not answer about {key}")


def send_mail(to: str, subject: str) -> None:
    record("mail_sent", to=to, subject=subject)


def charge_card(order_id: str, amount_cents: int, idempotency_key: str) -> str:
    """The gateway charges a key once, however often it is asked."""
    _answer("payments", order_id, GatewayUnavailable)
    if client().set(f"shop:charge:{idempotency_key}", 1, nx=True, ex=3600):
        record("charged", order=order_id, cents=amount_cents, key=idempotency_key)
    return f"ch_{idempotency_key}"


def reserve(order_id: str, sku: str, quantity: int) -> None:
    record("reserve_try", order=order_id, sku=sku)
    _answer("warehouse", f"{order_id}:{sku}", WarehouseUnavailable)
    record("reserved", order=order_id, sku=sku, quantity=quantity)
