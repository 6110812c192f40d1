"""Strict JSON (RFC 8259) for bodies from outside: what can be decoded can be stored.

Python's decoder also takes ``NaN``, ``Infinity`` and numbers past a double's range
(``1e999`` becomes infinity), strings with ``\\u0000`` or unpaired surrogates, and documents
nested deeper than the code that later walks them can follow. PostgreSQL's jsonb and text
refuse the first ones and a deep document exhausts the stack, so all of them are refused
here, with the reason, before anything is stored.
"""

import json
import math

MAX_DEPTH = 100


def loads(body: bytes | str):
    """The decoded document, or ``ValueError`` saying what is wrong with it."""
    text = body.decode("utf-8-sig") if isinstance(body, bytes) else body
    try:
        document = json.loads(text, parse_constant=_refuse_constant, parse_float=_finite_float)
    except RecursionError as exc:
        raise ValueError(f"the JSON is nested deeper than {MAX_DEPTH} levels") from exc
    # In decoded text only an escape spells a NUL or a lone surrogate.
    _check(document, strings="\\u" in text)
    return document


def _refuse_constant(name: str):
    raise ValueError(f"{name} is not a JSON number")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"the number {text[:40]} is out of range")
    return value


def _check(document, *, strings: bool) -> None:
    stack = [(document, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict | list):
            if depth > MAX_DEPTH:
                raise ValueError(f"the JSON is nested deeper than {MAX_DEPTH} levels")
            children = [*node.keys(), *node.values()] if isinstance(node, dict) else node
            stack.extend(
                (child, depth + 1) for child in children if strings or isinstance(child, dict | list)
            )
        elif strings and isinstance(node, str):
            if "\x00" in node:
                raise ValueError("a string contains \\u0000")
            try:
                node.encode()
            except UnicodeEncodeError as exc:
                raise ValueError("a string contains an unpaired surrogate") from exc
