"""Instants read from people and clients (query parameters, filter fields, cursors), in UTC.

Python takes UTC offsets up to ±23:59, PostgreSQL's ``timestamptz`` only up to ±15:59: an
instant such as ``2885-02-08T09:23:44-18:17`` is a valid one that the database refuses as
written (a 500 where it reached a query). So every instant a caller types goes to the
database in UTC, and one whose UTC time no ``datetime`` can hold (year 1 or 9999 with a
large offset) is refused as out of range.
"""

from datetime import UTC, datetime

from django.core.exceptions import ValidationError

OUT_OF_RANGE = "Out of range: in UTC this instant is before the year 1 or after 9999."


def in_utc(value: datetime) -> datetime:
    """``value`` in UTC (a naive one as it is); ``ValidationError`` when UTC cannot hold it."""
    if value.tzinfo is None:
        return value
    try:
        return value.astimezone(UTC)
    except OverflowError as exc:
        raise ValidationError(OUT_OF_RANGE, code="out_of_range") from exc
