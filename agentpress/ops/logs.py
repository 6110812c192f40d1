"""Structured logs through structlog, for stdlib ``logging`` calls too.

``LOG_FORMAT=json`` writes one JSON object per line; anything else writes readable
text. Fields bound with ``bind_run`` (``run_id``, ``org``, ``agent``, ``source``,
``worker``) live in context variables and appear on every line logged while they are
bound, whichever module writes it.
"""

import logging

import structlog
from structlog.contextvars import bound_contextvars, get_contextvars, merge_contextvars

_SHARED = [
    merge_contextvars,
    structlog.stdlib.add_log_level,
    structlog.stdlib.add_logger_name,
    structlog.processors.TimeStamper(fmt="iso", utc=True),
    structlog.stdlib.ExtraAdder(),
]


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
        else structlog.dev.ConsoleRenderer(colors=False, pad_event_to=0, sort_keys=False)
    )
    final = [structlog.stdlib.ProcessorFormatter.remove_processors_meta]
    if json:
        final.append(structlog.processors.format_exc_info)
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
