import json

from django.db import transaction
from django.http import JsonResponse
from django.shortcuts import get_object_or_404
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_POST

from orders.models import Order
from orders.tasks import process_order


@csrf_exempt
@require_POST
def create_order(request):
    data = json.loads(request.body or "{}")
    with transaction.atomic():
        order = Order.objects.create(item=data.get("item", "tea"),
                                     quantity=int(data.get("quantity", 1)))
        # enqueued when the transaction commits, so the worker always finds the row
        task = process_order.add_task_on_commit(order.pk)
    return JsonResponse({"order": order.pk, "task": str(task.uuid)}, status=202)


@require_GET
def order_status(request, order_id):
    order = get_object_or_404(Order, pk=order_id)
    return JsonResponse({"order": order.pk, "status": order.status,
                         "total_cents": order.total_cents})
