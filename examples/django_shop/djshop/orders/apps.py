from __future__ import annotations

from django.apps import AppConfig


class OrdersConfig(AppConfig):
    name = "djshop.orders"
    label = "orders"

    def ready(self) -> None:
        from djshop.orders import signals

        signals.connect()
