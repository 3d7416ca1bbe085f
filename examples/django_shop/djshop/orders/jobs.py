"""The shop's jobs. unijob.contrib.django imports every installed app's jobs.py, in workers too."""

from __future__ import annotations

import unijob
from djshop.orders.models import Order


@unijob.job(queue="mail")
def send_receipt(order: Order) -> str:
    """Writes the receipt of an order. The order travels as its primary key: ``order`` is the row
    as the database has it when the job runs."""
    order.receipt = f"Receipt for order {order.pk}: {order.total_cents / 100:.2f} EUR, sent to {order.email}"
    order.status = "receipted"
    order.save(update_fields=["receipt", "status"])
    return order.receipt
