"""Signing up: a welcome mail now, a reminder a day later (the README's testing example)."""

from datetime import timedelta

import goodjob

gj = goodjob.GoodJob()


@gj.task(queue="mail")
def send_welcome(address: str) -> str:
    send_reminder.using(wait=timedelta(days=1)).enqueue(address)
    return f"welcome sent to {address}"


@gj.task(queue="mail")
def send_reminder(address: str) -> str:
    return f"reminder sent to {address}"


def signup(address: str) -> None:
    send_welcome.enqueue(address)
