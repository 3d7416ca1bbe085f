"""A small shop's Celery project, as a team has it before unijob: docs/migrating-from-celery.md
moves it to unijob step by step. Its worker is Celery's own::

    SHOP_BROKER_URL=redis://localhost:6379/0 celery -A examples.celery_shop worker --loglevel INFO
"""

from examples.celery_shop.celery import app as celery_app

__all__ = ("celery_app",)
