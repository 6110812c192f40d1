"""Settings, read from the environment (django-environ).

With nothing set, the embedded default runs: a SQLite file and Celery's filesystem
broker under ``var/``. Set ``DATABASE_URL`` and ``CELERY_BROKER_URL`` for PostgreSQL and Redis.
"""

from datetime import timedelta
from pathlib import Path

import environ
from csp.constants import NONE, SELF

BASE_DIR = Path(__file__).resolve().parent.parent
env = environ.Env()
# A local .env (`make run` writes one with a generated SECRET_KEY and DEBUG on) fills in what the
# environment leaves unset. AGENTPRESS_ENV_FILE names another file; set empty, none is read
# (the test settings do that, so a developer's .env never changes a test).
ENV_FILE = env.str("AGENTPRESS_ENV_FILE", default=str(BASE_DIR / ".env"))
if ENV_FILE and Path(ENV_FILE).is_file():
    environ.Env.read_env(ENV_FILE, overwrite=False)
# Where the embedded default keeps its SQLite file and broker folders.
VAR_DIR = env.path("AGENTPRESS_VAR_DIR", default=BASE_DIR / "var")

# Safe production defaults: DEBUG is off unless asked for; the dev SECRET_KEY is only
# accepted while DEBUG is on.
DEBUG = env.bool("DEBUG", default=False)
_DEV_SECRET_KEY = "dev-only-insecure-secret-key-change-me-0123456789-abcdefghijklmnop"
SECRET_KEY = env.str("SECRET_KEY", default=_DEV_SECRET_KEY if DEBUG else "")
if not SECRET_KEY:
    from django.core.exceptions import ImproperlyConfigured

    raise ImproperlyConfigured("SECRET_KEY must be set when DEBUG is off.")
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]"] if DEBUG else [])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "django_filters",
    "drf_spectacular",
    "django_htmx",
    "template_partials",
    "django_celery_beat",
    "drf_spectacular_sidecar",
    "csp",
    "axes",
    "agentpress.orgs",
    "agentpress.agents",
    "automation",
    "monitor",
    "agentpress.ops",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "csp.middleware.CSPMiddleware",
    # Last, as django-axes asks: locks out repeated failed sign-ins.
    "axes.middleware.AxesMiddleware",
]

AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
# Sign-in throttling: after 5 failures for one username from one address, that pair is
# locked for 15 minutes (429). API tokens are not affected.
AXES_FAILURE_LIMIT = env.int("AXES_FAILURE_LIMIT", default=5)
AXES_COOLOFF_TIME = timedelta(minutes=env.int("AXES_COOLOFF_MINUTES", default=15))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_VERBOSE = False

# Only our own static files run in the browser: no inline scripts, no CDNs.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "script-src": [SELF],
        "style-src": [SELF],
        "img-src": [SELF, "data:"],
        "font-src": [SELF],
        "connect-src": [SELF],
        "object-src": [NONE],
        "base-uri": [SELF],
        "form-action": [SELF],
        "frame-ancestors": [NONE],
    }
}

ROOT_URLCONF = "agentpress.urls"
WSGI_APPLICATION = "agentpress.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "agentpress.orgs.context_processors.navigation",
            ],
        },
    },
]

DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{Path(VAR_DIR) / 'agentpress.sqlite3'}")}
DATABASES["default"]["CONN_MAX_AGE"] = env.int("CONN_MAX_AGE", default=60)
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
_EMBEDDED_DATABASE = DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3"
# PostgreSQL connections per process come from Django's psycopg pool: a thread takes one for
# its database work and gives it back (a worker releases it before the agent waits), so a
# worker with a thousand runs in flight holds at most this many. 0 turns the pool off
# (persistent connections per thread, CONN_MAX_AGE).
DATABASE_POOL_MAX_SIZE = env.int("DATABASE_POOL_MAX_SIZE", default=20)
if _EMBEDDED_DATABASE:
    # Web, worker and beat share one file: wait for the write lock instead of failing,
    # and take it at BEGIN so read-then-write transactions do not deadlock.
    DATABASES["default"]["OPTIONS"] = {"timeout": 20, "transaction_mode": "IMMEDIATE"}
    DATABASES["default"]["CONN_MAX_AGE"] = 0
elif DATABASE_POOL_MAX_SIZE:
    DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {
        "min_size": env.int("DATABASE_POOL_MIN_SIZE", default=1),
        "max_size": DATABASE_POOL_MAX_SIZE,
        # How long a thread waits for a free connection before its database call fails.
        "timeout": env.float("DATABASE_POOL_TIMEOUT_SECONDS", default=30),
    }
    DATABASES["default"]["CONN_MAX_AGE"] = 0  # the pool keeps the connections
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = BASE_DIR / "staticfiles"
# WhiteNoise serves our own static files from the app server (no CDN, no separate server);
# in development it reads them straight from the source folders.
WHITENOISE_USE_FINDERS = DEBUG
WHITENOISE_AUTOREFRESH = DEBUG

# Production hardening; all follow DEBUG unless set explicitly.
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=not DEBUG)
# Probes and scrapers talk plain HTTP inside the cluster.
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$", r"^metrics$"]
SESSION_COOKIE_SECURE = env.bool("SESSION_COOKIE_SECURE", default=not DEBUG)
CSRF_COOKIE_SECURE = env.bool("CSRF_COOKIE_SECURE", default=not DEBUG)
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=0 if DEBUG else 31536000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = not DEBUG
SECURE_HSTS_PRELOAD = not DEBUG
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"
SECURE_REFERRER_POLICY = "same-origin"

REST_FRAMEWORK = {
    # Token first, so an unauthenticated call answers 401 with a WWW-Authenticate header.
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_RENDERER_CLASSES": [
        "djangorestframework_camel_case.render.CamelCaseJSONRenderer",
        "djangorestframework_camel_case.render.CamelCaseBrowsableAPIRenderer",
    ],
    "DEFAULT_PARSER_CLASSES": [
        "automation.api.parsers.StrictCamelCaseJSONParser",
        "djangorestframework_camel_case.parser.CamelCaseFormParser",
        "djangorestframework_camel_case.parser.CamelCaseMultiPartParser",
    ],
    "JSON_UNDERSCOREIZE": {"no_underscore_before_number": True},
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    "EXCEPTION_HANDLER": "automation.api.errors.exception_handler",
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
}
SPECTACULAR_SETTINGS = {
    # Swagger UI from our own static files (drf-spectacular-sidecar), never a CDN.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "TITLE": "AgentPress Automation Runs API",
    "DESCRIPTION": "Runs, schedules, follow-ups and provider events of agent automations.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
    "CAMELIZE_NAMES": True,
    # several resources have a "status" with its own choices: name each enum after its domain
    "ENUM_NAME_OVERRIDES": {
        "RunStatusEnum": "automation.states.RunStatus",
        "FollowUpStatusEnum": "automation.states.FollowUpStatus",
        "ProviderEventStatusEnum": "automation.states.ProviderEventStatus",
    },
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "drf_spectacular.contrib.djangorestframework_camel_case.camelize_serializer_fields",
    ],
}

# Celery. The database is the source of truth; these settings make the broker a
# delivery mechanism that may lose or repeat a message without losing or repeating work.
CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default="filesystem://")
CELERY_BROKER_TRANSPORT_OPTIONS = {
    # Longer than any lease: Redis redelivers an unacked message after this long, and a
    # redelivered execute_run only finds its run already claimed (it does nothing).
    "visibility_timeout": env.int("CELERY_VISIBILITY_TIMEOUT_SECONDS", default=3600),
    # Fail fast when the broker is down: the run stays pending and the sweep re-sends it.
    "socket_connect_timeout": 2,
    "socket_timeout": 5,
    "max_retries": 0,
    # Redis (agentpress.broker_transport): after each BRPOP reply the worker takes up to this
    # many more waiting messages in one round trip, within its prefetch limit (0: one a reply).
    "fetch_batch": env.int("AUTOMATION_BROKER_FETCH_BATCH", default=64),
}
if CELERY_BROKER_URL.startswith("filesystem://"):
    _broker_dir = Path(VAR_DIR) / "broker"
    CELERY_BROKER_TRANSPORT_OPTIONS.update(
        data_folder_in=str(_broker_dir / "out"),
        data_folder_out=str(_broker_dir / "out"),
        processed_folder=str(_broker_dir / "processed"),
        control_folder=str(_broker_dir / "control"),
        store_processed=False,
    )
    for _sub in ("out", "processed", "control"):
        (_broker_dir / _sub).mkdir(parents=True, exist_ok=True)
# Ack after the task ran, and requeue if the worker process died, so a crash never
# silently drops a message (the claim makes the second delivery harmless).
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
# Runs in flight per worker process. Agent runs spend their life waiting on a model or a
# tool, so they run as threads of one process (the ``threads`` pool), each holding no
# database connection while it waits. The embedded SQLite default keeps it low: every
# write takes the one file lock.
AUTOMATION_WORKER_CONCURRENCY = env.int(
    "AUTOMATION_WORKER_CONCURRENCY", default=8 if _EMBEDDED_DATABASE else 1000
)
CELERY_WORKER_POOL = "threads"
CELERY_WORKER_CONCURRENCY = AUTOMATION_WORKER_CONCURRENCY
# One reserved message per slot: a message is only taken when a thread is free to claim it.
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_IGNORE_RESULT = True
# No result backend is used: share its (disabled) object between the pool's threads instead
# of building one in each of a thousand threads (Celery keeps one per thread otherwise).
CELERY_RESULT_BACKEND_THREAD_SAFE = True
# Do not retry a publish for long: the request must answer even when the broker is down.
CELERY_TASK_PUBLISH_RETRY = False
CELERY_BROKER_CONNECTION_TIMEOUT = 2
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# A worker that lost the broker retries every AUTOMATION_BROKER_RECONNECT_SECONDS for as long
# as it takes (Celery's own backoff grows to 30 s and gives up after 100 tries), so it
# consumes again at most that long (plus the connect timeout) after the broker is back.
AUTOMATION_BROKER_RECONNECT_SECONDS = env.float("AUTOMATION_BROKER_RECONNECT_SECONDS", default=2)
CELERY_BROKER_CONNECTION_MAX_RETRIES = None
CELERY_WORKER_CONSUMER = "automation.worker.consumer:Consumer"
# The engine's ticks and sweeps have a queue of their own, consumed by a small worker of their
# own (the Procfile's ``maintenance``): a worker whose every slot holds a run, with a backlog
# queued behind them, must never hold back the sweep that recovers a crashed worker's runs or
# the tick that fires schedules. Runs (``automation.execute_run``) and provider work stay on
# the default queue.
AUTOMATION_MAINTENANCE_QUEUE = "automation.maintenance"
# The engine's periodic tasks (registered in beat by setup_periodic_tasks).
AUTOMATION_PERIODIC_TASKS = (
    "automation.fire_due_schedules",
    "automation.fire_due_follow_ups",
    "automation.dispatch_pending_runs",
    "automation.recover_runs",
    "automation.apply_retention",
    "automation.maintain_outlook_subscriptions",
)
CELERY_TASK_ROUTES = {name: {"queue": AUTOMATION_MAINTENANCE_QUEUE} for name in AUTOMATION_PERIODIC_TASKS}
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
# Write each periodic task's last_run_at as soon as beat sends it (not every 3 minutes):
# /readyz reads it to tell a stalled beat from a live one.
CELERY_BEAT_SYNC_EVERY = 1
CELERY_TIMEZONE = "UTC"
CELERY_TASK_ALWAYS_EAGER = env.bool("CELERY_TASK_ALWAYS_EAGER", default=False)

# Automation engine.
AUTOMATION_LEASE_TTL_SECONDS = env.float("AUTOMATION_LEASE_TTL_SECONDS", default=60)
AUTOMATION_SWEEP_INTERVAL_SECONDS = env.float("AUTOMATION_SWEEP_INTERVAL_SECONDS", default=15)
AUTOMATION_TICK_SECONDS = env.float("AUTOMATION_TICK_SECONDS", default=5)
AUTOMATION_REDISPATCH_AFTER_SECONDS = env.float("AUTOMATION_REDISPATCH_AFTER_SECONDS", default=30)
AUTOMATION_SCHEDULE_BATCH_SIZE = env.int("AUTOMATION_SCHEDULE_BATCH_SIZE", default=200)
AUTOMATION_MIN_INTERVAL_MINUTES = env.int("AUTOMATION_MIN_INTERVAL_MINUTES", default=5)
AUTOMATION_FOLLOW_UP_MIN_DELAY_SECONDS = env.int("AUTOMATION_FOLLOW_UP_MIN_DELAY_SECONDS", default=60)
AUTOMATION_FOLLOW_UP_MAX_DELAY_SECONDS = env.int("AUTOMATION_FOLLOW_UP_MAX_DELAY_SECONDS", default=90 * 86400)
AUTOMATION_FOLLOW_UP_MAX_PENDING_PER_CONTEXT = env.int(
    "AUTOMATION_FOLLOW_UP_MAX_PENDING_PER_CONTEXT", default=3
)
# Runaway guards: follow-ups that lead to follow-ups, and follow-ups scheduled by one run.
AUTOMATION_MAX_FOLLOW_UP_CHAIN = env.int("AUTOMATION_MAX_FOLLOW_UP_CHAIN", default=10)
AUTOMATION_MAX_FOLLOW_UPS_PER_RUN = env.int("AUTOMATION_MAX_FOLLOW_UPS_PER_RUN", default=5)
AUTOMATION_FOLLOW_UP_WAIT_RETRY_SECONDS = env.int("AUTOMATION_FOLLOW_UP_WAIT_RETRY_SECONDS", default=30)
AUTOMATION_DEBOUNCE_MAX_DELAY_SECONDS = env.int("AUTOMATION_DEBOUNCE_MAX_DELAY_SECONDS", default=300)
AUTOMATION_WEBHOOK_TOLERANCE_SECONDS = 300
AUTOMATION_WEBHOOK_MAX_BODY_BYTES = 1024 * 1024
# Per-action limit on authenticated deliveries: this many per window, the excess answers 429.
AUTOMATION_WEBHOOK_RATE_LIMIT = env.int("AUTOMATION_WEBHOOK_RATE_LIMIT", default=1200)
AUTOMATION_WEBHOOK_RATE_WINDOW_SECONDS = env.int("AUTOMATION_WEBHOOK_RATE_WINDOW_SECONDS", default=60)
# Where those deliveries are counted; empty counts in each web process (no Redis).
AUTOMATION_RATE_LIMIT_REDIS_URL = env.str(
    "AUTOMATION_RATE_LIMIT_REDIS_URL",
    default=CELERY_BROKER_URL if CELERY_BROKER_URL.startswith(("redis://", "rediss://")) else "",
)
AUTOMATION_API_MAX_LIMIT = 200
# Model endpoints (DESIGN §7a): name -> {"base_url", "api_key_env", "input_price_per_million",
# "output_price_per_million", "max_retries", "timeout_seconds"}; agents pick one by name.
AUTOMATION_MODEL_ENDPOINTS = env.json("AUTOMATION_MODEL_ENDPOINTS", default={})
# A tenant's own base_url: off unless allowed; never to internal addresses unless the host is listed.
AUTOMATION_ALLOW_CUSTOM_MODEL_ENDPOINTS = env.bool("AUTOMATION_ALLOW_CUSTOM_MODEL_ENDPOINTS", default=False)
AUTOMATION_CUSTOM_MODEL_ENDPOINT_ALLOWED_HOSTS = env.list(
    "AUTOMATION_CUSTOM_MODEL_ENDPOINT_ALLOWED_HOSTS", default=[]
)
# Admission (automation/services/admission.py): concurrency limits where an organization or
# agent leaves its own empty (0: no limit), and fair claiming; off claims in broker order.
AUTOMATION_MAX_CONCURRENT_RUNS_PER_ORG = env.int("AUTOMATION_MAX_CONCURRENT_RUNS_PER_ORG", default=0)
AUTOMATION_MAX_CONCURRENT_RUNS_PER_AGENT = env.int("AUTOMATION_MAX_CONCURRENT_RUNS_PER_AGENT", default=0)
AUTOMATION_ADMISSION_ENABLED = env.bool("AUTOMATION_ADMISSION_ENABLED", default=True)
# The large statements of a run's path are prepared once per database connection
# (automation/queries.py: planned); off for a PgBouncer in transaction pooling mode.
AUTOMATION_PREPARED_STATEMENTS = env.bool("AUTOMATION_PREPARED_STATEMENTS", default=True)
# /metrics: per-organization capacity gauges for at most this many organizations.
AUTOMATION_METRICS_MAX_ORGS = env.int("AUTOMATION_METRICS_MAX_ORGS", default=50)
# The send_reply tool POSTs to an action's reply_url: public addresses only, unless listed here.
AUTOMATION_REPLY_URL_ALLOWED_HOSTS = env.list("AUTOMATION_REPLY_URL_ALLOWED_HOSTS", default=[])
AUTOMATION_REPLY_TIMEOUT_SECONDS = env.float("AUTOMATION_REPLY_TIMEOUT_SECONDS", default=10)

# Outlook through Microsoft Graph (automation/providers/graph.py): app-only auth with client
# credentials. Both base URLs are settings so tests and air-gapped deployments point elsewhere.
MS_GRAPH_TENANT_ID = env.str("MS_GRAPH_TENANT_ID", default="")
MS_GRAPH_CLIENT_ID = env.str("MS_GRAPH_CLIENT_ID", default="")
MS_GRAPH_CLIENT_SECRET = env.str("MS_GRAPH_CLIENT_SECRET", default="")
MS_GRAPH_BASE_URL = env.str("MS_GRAPH_BASE_URL", default="https://graph.microsoft.com/v1.0")
MS_GRAPH_AUTHORITY_URL = env.str("MS_GRAPH_AUTHORITY_URL", default="https://login.microsoftonline.com")
MS_GRAPH_CA_BUNDLE = env.str("MS_GRAPH_CA_BUNDLE", default="")  # a private CA for both; empty: the system's
MS_GRAPH_TIMEOUT_SECONDS = env.float("MS_GRAPH_TIMEOUT_SECONDS", default=10)
MS_GRAPH_MAX_RETRIES = env.int("MS_GRAPH_MAX_RETRIES", default=3)
MS_GRAPH_MAX_RETRY_AFTER_SECONDS = env.float("MS_GRAPH_MAX_RETRY_AFTER_SECONDS", default=30)
# Where Graph reaches our hooks (https, public): notification and lifecycle URLs are built on it.
AUTOMATION_PUBLIC_BASE_URL = env.str("AUTOMATION_PUBLIC_BASE_URL", default="")
AUTOMATION_OUTLOOK_SUBSCRIPTION_MINUTES = env.int("AUTOMATION_OUTLOOK_SUBSCRIPTION_MINUTES", default=4230)
AUTOMATION_OUTLOOK_RENEW_BEFORE_SECONDS = env.int("AUTOMATION_OUTLOOK_RENEW_BEFORE_SECONDS", default=86400)
AUTOMATION_OUTLOOK_RENEW_INTERVAL_SECONDS = env.float(
    "AUTOMATION_OUTLOOK_RENEW_INTERVAL_SECONDS", default=900
)
AUTOMATION_OUTLOOK_MAX_BATCH = env.int("AUTOMATION_OUTLOOK_MAX_BATCH", default=200)
AUTOMATION_OUTLOOK_MAX_BODY_CHARS = env.int("AUTOMATION_OUTLOOK_MAX_BODY_CHARS", default=20_000)

# Operations (agentpress/ops): metrics, health, logs, retention, worker shutdown.
# Multi-process metrics (gunicorn workers, Celery prefork children) need one shared
# directory, named by the environment variable itself before prometheus_client loads.
PROMETHEUS_MULTIPROC_DIR = env.str("PROMETHEUS_MULTIPROC_DIR", default="")
if PROMETHEUS_MULTIPROC_DIR:
    Path(PROMETHEUS_MULTIPROC_DIR).mkdir(parents=True, exist_ok=True)
# In production only the bearer token opens /metrics unless the operator lists addresses:
# behind a reverse proxy on the same host every request comes from loopback.
METRICS_ALLOWED_IPS = env.list("METRICS_ALLOWED_IPS", default=["127.0.0.1", "::1"] if DEBUG else [])
METRICS_BEARER_TOKEN = env.str("METRICS_BEARER_TOKEN", default="")
AUTOMATION_WORKER_METRICS_PORT = env.int("AUTOMATION_WORKER_METRICS_PORT", default=0)
AUTOMATION_BEAT_STALE_AFTER_SECONDS = env.float("AUTOMATION_BEAT_STALE_AFTER_SECONDS", default=60)
AUTOMATION_SHUTDOWN_GRACE_SECONDS = env.float("AUTOMATION_SHUTDOWN_GRACE_SECONDS", default=25)
AUTOMATION_RETENTION_BATCH_SIZE = env.int("AUTOMATION_RETENTION_BATCH_SIZE", default=1000)
AUTOMATION_RETENTION_INTERVAL_SECONDS = env.float("AUTOMATION_RETENTION_INTERVAL_SECONDS", default=3600)
AUTOMATION_PROVIDER_PAYLOAD_RETENTION_DAYS = env.int("AUTOMATION_PROVIDER_PAYLOAD_RETENTION_DAYS", default=30)
AUTOMATION_REFUSED_DELIVERY_RETENTION_DAYS = env.int("AUTOMATION_REFUSED_DELIVERY_RETENTION_DAYS", default=7)
AUTOMATION_REFUSED_DELIVERY_MAX_PER_ORG = env.int("AUTOMATION_REFUSED_DELIVERY_MAX_PER_ORG", default=10000)

LOG_FORMAT = env.str("LOG_FORMAT", default="text")
# The periodic tasks (setup_periodic_tasks) log at INFO only when a tick did something;
# set it empty to see every tick (beat's "Sending due task" and the worker's lines).
AUTOMATION_QUIET_TASKS = env.list("AUTOMATION_QUIET_TASKS", default=list(AUTOMATION_PERIODIC_TASKS))
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"structured": {"()": "agentpress.ops.logs.build_formatter", "fmt": LOG_FORMAT}},
    "filters": {"quiet_ticks": {"()": "agentpress.ops.logs.QuietTicks", "tasks": AUTOMATION_QUIET_TASKS}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "structured"}},
    # Celery's per-task lines come from these loggers; the filter sits on them, not on a handler,
    # because the worker and beat install handlers of their own.
    "loggers": {
        name: {"filters": ["quiet_ticks"]}
        for name in ("celery.app.trace", "celery.worker.strategy", "celery.beat")
    },
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
}
