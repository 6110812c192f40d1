import os

from celery import Celery

from agentpress import broker_transport

broker_transport.install()  # before any broker connection is made
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "agentpress.settings")

app = Celery("agentpress")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
