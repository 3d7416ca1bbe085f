"""The shop's Celery tasks."""

from celery.utils.log import get_task_logger

from examples.celery_shop import services
from examples.celery_shop.celery import app

logger = get_task_logger(__name__)


@app.task
def send_order_confirmation(order_id: str, email: str) -> None:
    services.send_mail(email, f"Your order {order_id} is confirmed")


@app.task(bind=True, max_retries=3, default_retry_delay=5)
def charge_payment(self, order_id: str, amount_cents: int) -> str:
    """The gateway is flaky: try again a second later, three times at most. The task id is the
    idempotency key, so a retry never charges twice."""
    services.record("charge_try", order=order_id, task_id=self.request.id, retries=self.request.retries)
    try:
        return services.charge_card(order_id, amount_cents, idempotency_key=self.request.id)
    except services.GatewayUnavailable as exc:
        logger.warning("payment gateway unavailable for order %s (try %d)", order_id, self.request.retries + 1)
        raise self.retry(exc=exc, countdown=1, max_retries=3) from exc


@app.task(
    autoretry_for=(services.WarehouseUnavailable,),
    retry_backoff=True,  # waits 1 s, 2 s, 4 s, 4 s...
    retry_backoff_max=4,
    retry_jitter=False,
    max_retries=5,
)
def reserve_stock(order_id: str, sku: str, quantity: int) -> None:
    services.reserve(order_id, sku, quantity)


@app.task
def build_invoice(order_id: str, amount_cents: int) -> dict[str, str]:
    services.record("invoice_built", order=order_id)
    return {"number": f"INV-{order_id}", "total": f"{amount_cents / 100:.2f}"}


@app.task
def send_newsletter(user_id: int, issue: str) -> None:
    services.send_mail(f"user{user_id}@example.com", f"Newsletter {issue}")
