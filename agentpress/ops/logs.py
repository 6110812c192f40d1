"""Structured logs through structlog, for stdlib ``logging`` calls too.

``LOG_FORMAT=json`` writes one JSON object per line; anything else writes readable
text. Fields bound with ``bind_run`` (``run_id``, ``org``, ``agent``, ``source``,
``worker``) live in context variables and appear on every line logged while they are
bound, whichever module writes it.

No line carries a secret, in either format: tracebacks are rendered as plain text without
local variables (``rich``'s default would print an agent's config, lease tokens and the
conversation), and ``redact_processor`` masks fields named like secrets and key-shaped
strings (API keys, bearer tokens, webhook secrets) in every value, the traceback included.
"""

import ast
import logging
import re

import structlog
from celery.app.trace import LOG_RECEIVED, LOG_SUCCESS
from structlog.contextvars import bound_contextvars, get_contextvars, merge_contextvars

_SHARED = [
    merge_contextvars,
    structlog.stdlib.add_log_level,
    structlog.stdlib.add_logger_name,
    structlog.processors.TimeStamper(fmt="iso", utc=True),
    structlog.stdlib.ExtraAdder(),
]


REDACTED = "[redacted]"
_SECRET_FIELD = re.compile(r"(api_?key|secret|token|password|authorization|signature)", re.IGNORECASE)
_SECRET_PATTERNS = [
    (re.compile(r"(?i)\b(bearer|token|basic)(\s+)[A-Za-z0-9._~+/=-]{8,}"), rf"\1\2{REDACTED}"),
    (re.compile(r"\bsk-[A-Za-z0-9_-]{8,}"), REDACTED),
    (re.compile(r"\bwhsec_[A-Za-z0-9+/=]{8,}"), REDACTED),
    (
        re.compile(
            r"(?i)([\"']?\b[\w-]*(?:api_?key|secret|token|password|authorization)[\w-]*[\"']?\s*[:=]\s*[\"']?)"
            r"([^\s\"',}]+)"
        ),
        rf"\1{REDACTED}",
    ),
]


def redact_secrets(text: str) -> str:
    """``text`` with key-shaped strings and ``name=value`` secrets masked."""
    for pattern, replacement in _SECRET_PATTERNS:
        text = pattern.sub(replacement, text)
    return text


def redact_processor(logger, method_name, event_dict: dict) -> dict:
    for key, value in event_dict.items():
        if key.startswith("_"):
            continue
        if _SECRET_FIELD.search(key) and value not in (None, ""):
            event_dict[key] = REDACTED
        elif isinstance(value, str):
            event_dict[key] = redact_secrets(value)
    return event_dict


# Beat's INFO line for each task it sends (celery/beat.py has no constant for it).
_BEAT_SENDING = "Scheduler: Sending due task %s (%s)"


def _did_nothing(return_value: str) -> bool:
    """A tick's return value (Celery's repr of it) says it did nothing: ``0``, ``None``, an empty
    container, or counts that are all zero (``{'interrupted': 0, 'redispatched': 0}``)."""
    try:
        value = ast.literal_eval(return_value)
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return False
    if isinstance(value, dict):
        return all(_did_nothing(repr(v)) for v in value.values())
    if isinstance(value, list | tuple):
        return all(_did_nothing(repr(v)) for v in value)
    return not value


class QuietTicks(logging.Filter):
    """Periodic tick tasks (``settings.AUTOMATION_QUIET_TASKS``) log only when they did something.

    A tick every few seconds would otherwise write three INFO lines each time (beat sends it,
    the worker receives it, it succeeds), about 140 lines a minute of nothing. For those tasks
    this drops beat's "sending" and the worker's "received" lines, and the "succeeded" line when
    the return value counts nothing; a tick that did something keeps its one "succeeded" line,
    with the counts. Warnings, errors and other tasks pass untouched.

    Attached to Celery's loggers (not a handler), so it holds in the worker and beat whatever
    handlers Celery installs.
    """

    def __init__(self, tasks=()):
        super().__init__()
        self.tasks = frozenset(tasks)

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno != logging.INFO:
            return True
        if record.msg == _BEAT_SENDING and isinstance(record.args, tuple) and len(record.args) == 2:
            return record.args[1] not in self.tasks
        data = record.args if isinstance(record.args, dict) else None
        if data is None or data.get("name") not in self.tasks:
            return True
        if record.msg == LOG_RECEIVED:
            return False
        if record.msg == LOG_SUCCESS:
            return not _did_nothing(str(data.get("return_value", "")))
        return True


def build_formatter(fmt: str = "text") -> logging.Formatter:
    """The ``logging`` formatter named in ``settings.LOGGING``."""
    json = fmt.lower() == "json"
    structlog.configure(
        processors=[*_SHARED, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    renderer = (
        structlog.processors.JSONRenderer()
        if json
        else structlog.dev.ConsoleRenderer(
            colors=False,
            pad_event_to=0,
            sort_keys=False,
            exception_formatter=structlog.dev.plain_traceback,
        )
    )
    final = [
        structlog.stdlib.ProcessorFormatter.remove_processors_meta,
        # the traceback becomes a plain string here, before redaction and in both formats
        structlog.processors.format_exc_info,
        redact_processor,
    ]
    return structlog.stdlib.ProcessorFormatter(foreign_pre_chain=_SHARED, processors=[*final, renderer])


def run_fields(*, run_id, org, agent, source, worker) -> dict:
    return {"run_id": str(run_id), "org": org, "agent": str(agent), "source": source, "worker": worker}


def bind_run(run, *, worker: str):
    """Context manager: every log line inside it names the run, its org, agent, source and worker."""
    return bound_contextvars(
        **run_fields(
            run_id=run.pk, org=run.organization.slug, agent=run.agent_id, source=run.source, worker=worker
        )
    )


def current_fields() -> dict:
    """The bound fields, to carry into another thread (threads start with an empty context)."""
    return get_contextvars()
