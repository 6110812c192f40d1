"""Small presentation helpers: times in UTC that the page localizes, ages, JSON, badges, copyable ids."""

import json
from datetime import UTC, datetime, timedelta
from urllib.parse import urlencode

from django import template
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from django.utils.html import format_html
from django.utils.text import slugify

from automation.states import WaitingKind, waiting_kind

register = template.Library()


@register.simple_tag
def when(value: datetime | None, empty: str = "—"):
    """A ``<time>`` in UTC; monitor.js rewrites the text into the viewer's timezone and
    keeps UTC in the tooltip, so without JavaScript the UTC time is still right."""
    if value is None:
        return empty
    utc = value.astimezone(UTC)
    text = utc.strftime("%Y-%m-%d %H:%M:%S UTC")
    return format_html('<time datetime="{}" title="{}">{}</time>', utc.isoformat(), text, text)


def _span(seconds: float) -> str:
    seconds = int(abs(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60} s" if seconds < 600 else f"{seconds // 60} min"
    if seconds < 86400:
        return f"{seconds // 3600} h {seconds % 3600 // 60} min"
    return f"{seconds // 86400} d {seconds % 86400 // 3600} h"


@register.filter
def age(value: datetime | None) -> str:
    """How long ago (``12 s ago``) or how far ahead (``in 5 min``) from now."""
    if value is None:
        return "—"
    delta = (timezone.now() - value).total_seconds()
    return f"{_span(delta)} ago" if delta >= 0 else f"in {_span(delta)}"


@register.simple_tag
def when_ago(value: datetime | None, empty: str = "—"):
    """How long ago (``3 min ago``) as a ``<time>`` whose ``datetime`` and tooltip hold the
    absolute UTC instant. The server writes the text, so it is right without JavaScript;
    monitor.js keeps it current between refreshes."""
    if value is None:
        return empty
    utc = value.astimezone(UTC)
    return format_html(
        '<time datetime="{}" title="{}" data-relative>{}</time>',
        utc.isoformat(),
        utc.strftime("%Y-%m-%d %H:%M:%S UTC"),
        age(value),
    )


@register.filter
def span(value: timedelta | None) -> str:
    return "—" if value is None else _span(value.total_seconds())


@register.filter
def run_duration(run) -> str:
    """Started → finished, or → now while it runs."""
    if run.started_at is None:
        return "—"
    end = run.completed_at or (timezone.now() if run.is_active else None)
    return "—" if end is None else _span((end - run.started_at).total_seconds())


@register.filter
def lease_stale(run) -> bool:
    """A running run whose lease ran out: its worker is gone or stuck; recovery will interrupt it."""
    return (
        run.status == "running" and run.lease_expires_at is not None and run.lease_expires_at < timezone.now()
    )


@register.filter
def waiting_warning(run) -> bool:
    """A due run no worker has claimed: the console shows its reason as a warning."""
    return waiting_kind(run.waiting_reason) == WaitingKind.WORKER


@register.filter
def pretty_json(value) -> str:
    return json.dumps(value, indent=2, sort_keys=True, default=str, ensure_ascii=False)


# A JSON value longer than this many lines is shown folded until the reader opens it.
JSON_OPEN_MAX_LINES = 8


@register.simple_tag
def json_block(value, title: str, key=""):
    """Pretty JSON under a ``<details>`` heading: open when short, folded when long. Folding is
    the browser's own (no JavaScript), and the heading says how long the folded value is. The id
    (title and ``key``) lets monitor.js keep the reader's choice when a polling panel is swapped."""
    text = pretty_json(value)
    lines = text.count("\n") + 1
    return format_html(
        '<details class="json-block" id="{}"{}><summary>{} <span class="muted small">({} line{})</span></summary>'
        "<pre>{}</pre></details>",
        f"json-{slugify(title)}-{key}" if key else f"json-{slugify(title)}",
        " open" if lines <= JSON_OPEN_MAX_LINES else "",
        title,
        lines,
        "" if lines == 1 else "s",
        text,
    )


@register.simple_tag
def copyable(value, what: str):
    """An id as selectable text, with a copy button that monitor.js reveals and serves; without
    JavaScript the button stays hidden and the text can still be selected and copied."""
    return format_html(
        '<span class="copyable"><span class="mono copy-value">{}</span>'
        '<button type="button" class="copy-button" data-copy="{}" aria-label="Copy the {}" hidden>Copy</button></span>',
        value,
        value,
        what,
    )


@register.simple_tag
def status_badge(status: str, label: str = ""):
    """Status by label and icon (the class adds the icon), not by colour alone."""
    return format_html('<span class="status status-{}">{}</span>', status, label or status.title())


@register.simple_tag
def with_params(params, **extra) -> str:
    """``?a=1&b=2`` from a list of (name, value) pairs, with ``extra`` replacing or dropping names."""
    merged = dict(params)
    for name, value in extra.items():
        if value in (None, ""):
            merged.pop(name, None)
        else:
            merged[name] = value
    return "?" + urlencode(merged) if merged else "?"


@register.filter
def parse_instant(value):
    """An ISO 8601 string from JSON (e.g. a stop condition's deadline) as a datetime."""
    if not isinstance(value, str):
        return value
    return parse_datetime(value)
