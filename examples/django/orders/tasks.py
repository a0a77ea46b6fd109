"""The order's slow part runs in a worker: ``python manage.py qtasks worker``."""

from mysite.qtasks import app

from orders.models import Order

PRICES = {"tea": 350, "cake": 420}


@app.task(retry=3, retry_delay=1.0)
def process_order(order_id):
    # a primary key travels, not the row: load it here, so the task sees current data
    order = Order.objects.get(pk=order_id)
    order.total_cents = PRICES.get(order.item, 100) * order.quantity
    order.status = "processed"
    order.save(update_fields=["total_cents", "status"])
    return {"order": order.pk, "total_cents": order.total_cents}
