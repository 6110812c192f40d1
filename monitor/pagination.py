"""Keyset (cursor) pagination for console tables: a deep page costs what the first does.

A cursor names the edge row of the page it came from (its sort key and pk) and the
direction to read; rows added meanwhile never shift a page or repeat a row.
"""

import binascii
from base64 import urlsafe_b64decode, urlsafe_b64encode
from dataclasses import dataclass
from datetime import datetime

from django.core.exceptions import ValidationError
from django.db.models import Q, QuerySet

from automation.instants import in_utc

INVALID_CURSOR = "The page link is not valid (it may have been edited); showing the first page."


@dataclass(frozen=True)
class Page:
    rows: list
    next_cursor: str | None
    previous_cursor: str | None
    notice: str = ""  # set when the cursor given could not be read


@dataclass(frozen=True)
class _Cursor:
    forward: bool
    key: datetime
    pk: object


def _encode(forward: bool, row, key: str) -> str:
    raw = f"{'n' if forward else 'p'}|{getattr(row, key).isoformat()}|{row.pk}"
    return urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def _decode(cursor: str, qs: QuerySet) -> _Cursor:
    """The cursor's edge row, each part checked against the model; ``ValueError`` otherwise."""
    try:
        direction, key, pk = urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode().split("|")
        moment = in_utc(datetime.fromisoformat(key))
        pk = qs.model._meta.pk.to_python(pk)
    except (binascii.Error, ValidationError) as exc:
        raise ValueError(cursor) from exc
    if direction not in ("n", "p") or moment.tzinfo is None or pk is None:
        raise ValueError(cursor)
    return _Cursor(forward=direction == "n", key=moment, pk=pk)


def paginate(qs: QuerySet, *, cursor: str | None, size: int, key: str, descending: bool) -> Page:
    """One page of ``qs`` ordered by (``key``, pk), newest first when ``descending``.
    A cursor that cannot be read gives the first page with a ``notice`` that says so."""
    at, notice = None, ""
    if cursor:
        try:
            at = _decode(cursor, qs)
        except ValueError:  # UnicodeDecodeError and a bad date or split are ValueErrors too
            notice = INVALID_CURSOR
    forward = at is None or at.forward
    # Reading backwards flips the order, then the page is reversed into display order.
    desc = descending if forward else not descending
    qs = qs.order_by(f"-{key}", "-pk") if desc else qs.order_by(key, "pk")
    if at is not None:
        op = "lt" if desc else "gt"
        qs = qs.filter(Q(**{f"{key}__{op}": at.key}) | Q(**{key: at.key, f"pk__{op}": at.pk}))
    rows = list(qs[: size + 1])
    more = len(rows) > size
    rows = rows[:size]
    if not forward:
        rows.reverse()
    has_next = more if forward else True
    has_previous = at is not None if forward else more
    return Page(
        rows=rows,
        next_cursor=_encode(True, rows[-1], key) if rows and has_next else None,
        previous_cursor=_encode(False, rows[0], key) if rows and has_previous else None,
        notice=notice,
    )
