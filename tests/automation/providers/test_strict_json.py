"""Issue 13 defect 13 (webhook part): signed bodies that are not strict JSON get a clear 400.

Python's decoder accepts ``NaN``, ``Infinity`` and ``1e999`` (as infinity), and strings with
``\\u0000`` or a lone surrogate; PostgreSQL cannot store any of them, so they used to answer
500 after the signature had been accepted.
"""

import pytest
from django.test import Client

from agentpress.agents.models import Message
from automation import strict_json
from automation.models import AgentRun, ProviderEvent

from .conftest import deliver, signed_headers

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


def nested(depth: int) -> list:
    document: list = []
    for _ in range(depth - 1):
        document = [document]
    return document


@pytest.mark.parametrize(
    "body, reason",
    [
        (b'{"data": {"ticket": {"id": "T-1", "score": NaN}}}', "NaN is not a JSON number"),
        (b'{"data": {"ticket": {"id": "T-1", "score": Infinity}}}', "Infinity is not a JSON number"),
        (b'{"data": {"ticket": {"id": "T-1", "score": -Infinity}}}', "-Infinity is not a JSON number"),
        (b'{"data": {"ticket": {"id": "T-1", "score": 1e999}}}', "the number 1e999 is out of range"),
        (b'{"data": {"ticket": {"id": "T-1"}}, "n": [-1E400]}', "the number -1E400 is out of range"),
        (b'{"data": {"ticket": {"id": "T-1\\u0000"}}}', "a string contains \\u0000"),
        (b'{"data": {"ticket": {"id": "T-1"}}, "k\\u0000": 1}', "a string contains \\u0000"),
        (b'{"data": {"ticket": {"id": "\\ud800"}}}', "a string contains an unpaired surrogate"),
        ('{"data": {"ticket": {"id": "T-1"}}}'.encode("utf-16"), "The body is not valid JSON"),
        (
            b'{"data": {"ticket": {"id": "T-1"}}, "deep": ' + b"[" * 101 + b"]" * 101 + b"}",
            "nested deeper than 100",
        ),
        (b"[" * 100_000 + b"]" * 100_000, "nested deeper than 100"),
        (b"null", "it must be a JSON object"),
        (b'[{"data": {"ticket": {"id": "T-1"}}}]', "it must be a JSON object"),
    ],
)
def test_defect13_signed_body_that_is_not_strict_json_is_a_clear_400_and_nothing_is_stored(
    roster, webhook_action, body, reason
):
    response = deliver(Client(), webhook_action, body, signed_headers(SECRET, body))
    assert response.status_code == 400, response.content
    assert response.json()["detail"].startswith("The body is not valid JSON")
    assert reason in response.json()["detail"]
    assert not AgentRun.objects.exists() and not ProviderEvent.objects.exists()
    assert not Message.objects.exists()


@pytest.mark.parametrize(
    "body, expected",
    [
        (b'{"a": 1.5e300, "b": -0.0, "c": 1e-999}', {"a": 1.5e300, "b": -0.0, "c": 0.0}),
        (b'\xef\xbb\xbf{"a": "caf\\u00e9 \\ud83d\\ude00 \\\\u0000"}', {"a": "caf\u00e9 \U0001f600 \\u0000"}),
        (b"[" * 100 + b"]" * 100, nested(100)),
    ],
)
def test_strict_json_still_reads_every_valid_document(body, expected):
    assert strict_json.loads(body) == expected
