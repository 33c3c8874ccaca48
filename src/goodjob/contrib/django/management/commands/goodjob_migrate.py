"""``manage.py goodjob_migrate``: ``goodjob migrate`` on the Django backend's database."""

from goodjob.cli.main import migrate
from goodjob.contrib.django.commands import GoodJobCommand


class Command(GoodJobCommand):
    help = "Create or update goodjob's tables in the Django backend's database."
    command = migrate
