"""Tasks of the README's Django example."""

from django.db import transaction
from django_tasks import task  # Django 6: from django.tasks import task


@task(queue_name="mail", priority=10)
def send_welcome(address: str) -> str:
    return f"welcome sent to {address}"


def signup(address: str) -> str:
    with transaction.atomic():
        ...  # create the user: the job commits, or rolls back, with it
        result = send_welcome.enqueue(address)
    return result.id
