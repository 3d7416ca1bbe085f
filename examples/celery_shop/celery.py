"""The shop's Celery app. The broker and the result backend come from the environment."""

import os

from celery import Celery

app = Celery(
    "celery_shop",
    broker=os.environ.get("SHOP_BROKER_URL", "redis://localhost:6379/0"),
    backend=os.environ.get("SHOP_RESULT_BACKEND", "redis://localhost:6379/1"),
    include=["examples.celery_shop.tasks"],
)
app.conf.update(
    task_serializer="json",
    accept_content=["json"],
    result_serializer="json",
    result_expires=3600,
    worker_prefetch_multiplier=1,
)
