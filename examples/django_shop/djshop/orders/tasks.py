"""The shop's Django Tasks (``@task``), run on unijob's workers by the UnijobBackend of TASKS."""

from __future__ import annotations

from typing import Any

from django.db.models import Count, Sum

from djshop.orders.models import Order

try:  # Django 6.0
    from django.tasks import TaskContext, task
except ImportError:  # the django-tasks backport, before Django 6.0
    from django_tasks import TaskContext, task


@task()
def order_total(order_id: int) -> int:
    return Order.objects.get(pk=order_id).total_cents


@task(queue_name="reports")
def sales_report(status: str) -> dict[str, int]:
    totals = Order.objects.filter(status=status).aggregate(orders=Count("pk"), cents=Sum("total_cents"))
    return {"orders": totals["orders"], "total_cents": totals["cents"] or 0}


@task(takes_context=True)
def remind_customer(context: TaskContext, order_id: int) -> dict[str, Any]:
    """Knows its own result (and so its id) and which attempt this is."""
    order = Order.objects.get(pk=order_id)
    return {"order": order.pk, "result_id": context.task_result.id, "attempt": context.attempt}
