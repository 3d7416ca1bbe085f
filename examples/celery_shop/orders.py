"""What the shop's web views call: every task is sent from here."""

from celery import group

from examples.celery_shop import tasks

CANCEL_WINDOW = 2  # seconds a customer has to cancel before the card is charged


def place_order(order_id: str, email: str, amount_cents: int, items: dict[str, int]):
    """Confirm the order, charge it once the cancel window is over, reserve its items; the result
    of its invoice is returned."""
    tasks.send_order_confirmation.delay(order_id, email)
    tasks.charge_payment.apply_async((order_id, amount_cents), countdown=CANCEL_WINDOW)
    for sku, quantity in items.items():
        tasks.reserve_stock.delay(order_id, sku, quantity)
    return tasks.build_invoice.delay(order_id, amount_cents)


def send_newsletter(issue: str, user_ids: list[int]):
    return group(tasks.send_newsletter.s(user_id, issue) for user_id in user_ids).apply_async()
