"""``manage.py goodjob_worker``: ``goodjob start`` on the Django backend's app (same options)."""

from goodjob.cli.start import start
from goodjob.contrib.django.commands import GoodJobCommand


class Command(GoodJobCommand):
    help = "Run goodjob workers for Django's tasks (the options of `goodjob start`)."
    command = start
