"""The Django app (``INSTALLED_APPS += ["goodjob.contrib.django"]``): its management commands."""

from __future__ import annotations

from django.apps import AppConfig


class GoodJobConfig(AppConfig):
    name = "goodjob.contrib.django"
    label = "goodjob"
    verbose_name = "goodjob"
