from __future__ import annotations

from django.db import models


class Order(models.Model):
    email = models.EmailField()
    total_cents = models.IntegerField()
    status = models.CharField(max_length=20, default="placed")
    receipt = models.TextField(blank=True)

    def __str__(self) -> str:
        return f"order {self.pk} ({self.total_cents / 100:.2f} EUR, {self.status})"


class TaskEvent(models.Model):
    """The shop's audit of its background tasks: each Tasks signal, as it was sent, and where."""

    task_id = models.CharField(max_length=64, db_index=True)
    task = models.CharField(max_length=200)
    signal = models.CharField(max_length=20)  # enqueued, started, finished
    status = models.CharField(max_length=20)
    pid = models.IntegerField()  # the process that sent it: the web app's, or a worker's
    created_at = models.DateTimeField(auto_now_add=True)
