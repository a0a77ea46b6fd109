"""A django.tasks module imported while Django loads models, before qtasks is configured."""

try:
    from django.tasks import task
except ImportError:  # Django 5.2 with the django-tasks backport
    from django_tasks import task


@task
def early_add(a, b):
    return a + b
