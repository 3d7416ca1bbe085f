from unittest import mock

from examples.celery_shop import orders, services


def test_placing_an_order_sends_the_confirmation() -> None:
    with mock.patch("examples.celery_shop.tasks.send_order_confirmation.delay") as delay:
        orders.place_order("o-1", "ada@example.com", 1250, {"sku-1": 1})
    delay.assert_called_once_with("o-1", "ada@example.com")


def test_an_order_is_charged_once_when_the_gateway_fails_twice() -> None:
    services.outage("payments", "o-2", 2)
    invoice = orders.place_order("o-2", "bob@example.com", 990, {}).get()
    assert invoice == {"number": "INV-o-2", "total": "9.90"}
    assert [entry["retries"] for entry in services.ledger("charge_try")] == [0, 1, 2]
    assert [entry["order"] for entry in services.ledger("charged")] == ["o-2"]


def test_stock_is_reserved_once_the_warehouse_answers() -> None:
    services.outage("warehouse", "o-3:sku-3", 2)
    orders.place_order("o-3", "cy@example.com", 500, {"sku-3": 4})
    assert len(services.ledger("reserve_try")) == 3
    assert [(entry["sku"], entry["quantity"]) for entry in services.ledger("reserved")] == [("sku-3", 4)]


def test_the_newsletter_goes_to_every_subscriber() -> None:
    orders.send_newsletter("june", [1, 2, 3])
    assert sorted(entry["to"] for entry in services.ledger("mail_sent")) == [f"user{n}@example.com" for n in (1, 2, 3)]
