"""Settings of the README's Django example; the database comes from the PG* variables."""

import os

SECRET_KEY = "not a secret: an example"
USE_TZ = True
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.postgresql",  # with psycopg 3
        "NAME": os.environ.get("PGDATABASE", "shop"),
    }
}
INSTALLED_APPS = [
    "django_tasks",  # the backport, before Django 6 (whose django.tasks needs no app)
    "goodjob.contrib.django",  # manage.py goodjob_worker and goodjob_migrate
]
TASKS = {
    "default": {
        "BACKEND": "goodjob.contrib.django.GoodJobBackend",
        "QUEUES": ["default", "mail"],
        "OPTIONS": {"max_threads": 2},  # goodjob.GoodJob's keyword arguments
    }
}
