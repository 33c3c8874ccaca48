"""Django: a Tasks backend on goodjob, and the ``goodjob_worker`` and ``goodjob_migrate``
management commands (``INSTALLED_APPS += ["goodjob.contrib.django"]``).

::

    TASKS = {
        "default": {
            "BACKEND": "goodjob.contrib.django.GoodJobBackend",
            "QUEUES": ["default", "mail"],
            "OPTIONS": {"max_threads": 5},          # goodjob.GoodJob's keyword arguments
        }
    }

On Django 6 the Tasks API is Django's own (``django.tasks``); before, the ``django-tasks``
backport package's (``django_tasks``, add it to INSTALLED_APPS too).
"""

from goodjob.contrib.django.backend import GoodJobBackend

__all__ = ["GoodJobBackend"]
