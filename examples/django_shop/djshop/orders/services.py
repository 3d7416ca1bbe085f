"""What the shop's views call."""

from __future__ import annotations

from django.db import transaction

from djshop.orders.jobs import send_receipt
from djshop.orders.models import Order


def place_order(email: str, total_cents: int) -> Order:
    """Save an order and send its receipt, once the order is committed: a worker that runs the job
    before the commit would not find it, and a rollback must send no receipt."""
    with transaction.atomic():
        order = Order.objects.create(email=email, total_cents=total_cents)
        send_receipt.set(after_commit=True).perform_later(order)
    return order
