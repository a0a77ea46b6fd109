from proj.qtasks import app


@app.task
def add(a, b):
    return a + b


@app.task
def backend_pid():
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        return cursor.fetchone()[0]


@app.task
async def abackend_pid():
    from asgiref.sync import sync_to_async
    from django.db import connection

    def pid():
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_backend_pid()")
            return cursor.fetchone()[0]

    return await sync_to_async(pid)()


@app.task
def count_orders():
    from shop.models import Order

    return Order.objects.count()
