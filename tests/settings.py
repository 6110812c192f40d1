"""Settings for the test suite and the worker processes it starts."""

import os

# Never read a developer's .env (agentpress/settings.py reads BASE_DIR/.env otherwise).
os.environ["AGENTPRESS_ENV_FILE"] = ""
os.environ.setdefault("SECRET_KEY", "tests-only-secret-key-not-for-production-0123456789abcdef")
os.environ.setdefault("ALLOWED_HOSTS", "localhost,127.0.0.1,testserver")
os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/test")
# One Redis database per pytest-xdist worker: the worker tests flush theirs.
_xdist_index = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0")[2:] or 0)
TEST_BROKER_URL = os.environ.get("TEST_CELERY_BROKER_URL") or f"redis://127.0.0.1:6379/{15 - _xdist_index}"
os.environ["CELERY_BROKER_URL"] = TEST_BROKER_URL

from agentpress.settings import *  # noqa: E402,F403

SECURE_SSL_REDIRECT = False
SESSION_COOKIE_SECURE = False
CSRF_COOKIE_SECURE = False
SECURE_HSTS_SECONDS = 0
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
# The tests scrape /metrics from loopback, as an operator who lists it explicitly.
METRICS_ALLOWED_IPS = ["127.0.0.1", "::1"]
# Static files straight from the source folders (no collectstatic in tests).
WHITENOISE_USE_FINDERS = True
WHITENOISE_AUTOREFRESH = True
