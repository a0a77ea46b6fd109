"""Shared tasks; the worker's app module imports this after creating its app."""

from qtasks import shared_task


@shared_task(awaiting=True)
async def double(x):
    return x * 2


@shared_task
def triple(x):
    return x * 3
