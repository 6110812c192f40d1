"""Hostile input to the API: request bodies and query parameters.

Any value of any JSON type in any field, raw bodies that are not strict JSON, and any query
string: the answer is a 2xx or a 4xx with a JSON ``detail`` (never a 5xx), a refused request
stores and changes nothing, and the lists still answer 200 afterwards. Property-based with
bounded, derandomized examples (the schemathesis test covers schema conformance; this one
covers what is stored).
"""

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rest_framework.test import APIClient

from automation.models import AgentRun, Schedule
from automation.services import schedules
from tests.factories import AgentRunFactory, FollowUpFactory

pytestmark = pytest.mark.django_db

API = "/api/orgs/acme"
FUZZ = settings(
    max_examples=25,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
# Every code point, lone surrogates and NUL included (JSON can escape them all).
ANY_TEXT = st.text(st.characters(exclude_categories=()), max_size=30)
JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**30), max_value=10**30)
    | st.floats(allow_nan=False, allow_infinity=False)
    | ANY_TEXT,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(ANY_TEXT, inner, max_size=3),
    max_leaves=6,
)
MOMENTS = st.one_of(
    st.datetimes(timezones=st.timezones()).map(lambda d: d.isoformat()),
    st.sampled_from(["9999-12-31T23:59:59Z", "0001-01-01T00:00+05:00", "9999-12-31T23:00:00-12:00"]),
)
SCHEDULE_FIELDS = {
    "agentId": st.one_of(st.just("AGENT"), JSON_VALUES),
    "name": st.one_of(st.just("Fuzzed"), ANY_TEXT, JSON_VALUES),
    "cadence": st.one_of(st.sampled_from(["daily", "weekly", "interval", "once", "cron"]), JSON_VALUES),
    "timezone": st.one_of(st.sampled_from(["UTC", "Etc/GMT+12", "Pacific/Kiritimati"]), JSON_VALUES),
    "instructions": st.one_of(st.just("!reply x"), ANY_TEXT, JSON_VALUES),
    "timeOfDay": st.one_of(st.sampled_from(["09:00", "24:00"]), JSON_VALUES),
    "weekdays": st.one_of(st.lists(st.sampled_from(["mon", "sun", "xyz"]), max_size=3), JSON_VALUES),
    "intervalMinutes": st.one_of(st.integers(min_value=-(10**20), max_value=10**20), JSON_VALUES),
    "runAt": st.one_of(MOMENTS, JSON_VALUES),
    "cronExpression": st.one_of(st.sampled_from(["*/5 * * * *", "0 0 30 2 *"]), JSON_VALUES),
    "catchupWindowSeconds": st.one_of(st.integers(min_value=-(10**20), max_value=10**20), JSON_VALUES),
    "overlapPolicy": st.one_of(st.sampled_from(["skip", "allow"]), JSON_VALUES),
    "runAsId": st.one_of(st.just("OWNER"), JSON_VALUES),
    "enabled": JSON_VALUES,
}


@pytest.fixture
def api(roster):
    client = APIClient()
    client.force_authenticate(roster.owner)
    return client


def with_ids(body: dict, roster) -> dict:
    ids = {"AGENT": roster.agent.pk, "OWNER": roster.owner.pk}
    return {k: ids.get(v, v) if isinstance(v, str) else v for k, v in body.items()}


def assert_clear_refusal(response) -> None:
    assert 400 <= response.status_code < 500, (response.status_code, response.content[:300])
    assert response["Content-Type"].startswith("application/json")
    assert response.json()["detail"]


def assert_lists_answer(api) -> None:
    for path in ("agent-runs", "agent-run-schedules", "agent-run-follow-ups"):
        assert api.get(f"{API}/{path}").status_code == 200, path


@FUZZ
@given(body=st.fixed_dictionaries({}, optional=SCHEDULE_FIELDS))
def test_any_schedule_body_is_created_or_refused_with_nothing_stored(api, roster, body):
    response = api.post(f"{API}/agent-run-schedules", with_ids(body, roster), format="json")
    if response.status_code != 201:
        assert_clear_refusal(response)
        assert not Schedule.objects.exists()
    assert_lists_answer(api)
    Schedule.objects.all().delete()


@FUZZ
@given(body=st.fixed_dictionaries({}, optional=SCHEDULE_FIELDS))
def test_any_schedule_change_is_applied_or_refused_with_nothing_changed(api, roster, body):
    schedule = schedules.schedule_create(
        organization=roster.org, agent=roster.agent, run_as=roster.owner, name="Hourly",
        cadence="interval", interval_minutes=60, timezone="UTC", instructions="!reply x",
    )  # fmt: skip
    stored = Schedule.objects.filter(pk=schedule.pk).values().get()
    response = api.patch(f"{API}/agent-run-schedules/{schedule.pk}", with_ids(body, roster), format="json")
    if response.status_code != 200:
        assert_clear_refusal(response)
        assert Schedule.objects.filter(pk=schedule.pk).values().get() == stored
    assert api.get(f"{API}/agent-run-schedules/{schedule.pk}").status_code == 200
    assert_lists_answer(api)
    Schedule.objects.all().delete()


@FUZZ
@given(
    body=st.fixed_dictionaries(
        {},
        optional={
            "agentId": st.one_of(st.just("AGENT"), JSON_VALUES),
            "prompt": st.one_of(st.just("!reply hi"), ANY_TEXT, JSON_VALUES),
            "runAsId": st.one_of(st.just("OWNER"), JSON_VALUES),
            "threadId": JSON_VALUES,
            "contextType": st.one_of(ANY_TEXT, JSON_VALUES),
            "contextKey": st.one_of(st.text(max_size=300), ANY_TEXT, JSON_VALUES),
        },
    )
)
def test_any_manual_run_body_is_created_or_refused_with_nothing_stored(api, roster, body):
    response = api.post(f"{API}/agent-runs", with_ids(body, roster), format="json")
    if response.status_code != 201:
        assert_clear_refusal(response)
        assert not AgentRun.objects.exists()
    assert_lists_answer(api)
    AgentRun.objects.all().delete()


@pytest.mark.parametrize(
    "raw",
    [
        b'{"agentId": 1, "name": "x", "cadence": "interval", "timezone": "UTC", "instructions": "x", "intervalMinutes": 1e999}',
        b'{"agentId": 1, "name": "x", "cadence": "interval", "timezone": "UTC", "instructions": "x", "intervalMinutes": NaN}',
        b'{"agentId": 1, "name": "x", "cadence": "interval", "timezone": "UTC", "instructions": "x", "catchupWindowSeconds": Infinity}',
        b'{"agentId": 1, "name": "x\\u0000", "cadence": "daily", "timezone": "UTC", "instructions": "x", "timeOfDay": "09:00"}',
        b'{"agentId": 1, "name": "\\ud800", "cadence": "daily", "timezone": "UTC", "instructions": "x", "timeOfDay": "09:00"}',
        b'{"agentId": 1, "name": "x", "cadence": "daily", "timezone": "UTC\\ud800", "instructions": "x", "timeOfDay": "09:00"}',
        b"[" * 100_000,
        b"\xff\xfe{}",
    ],
)
def test_raw_bodies_that_are_not_strict_json_are_refused(api, roster, raw):
    raw = raw.replace(b'"agentId": 1', f'"agentId": {roster.agent.pk}'.encode())
    response = api.generic("POST", f"{API}/agent-run-schedules", raw, content_type="application/json")
    assert_clear_refusal(response)
    assert not Schedule.objects.exists()
    assert_lists_answer(api)


QUERY_VALUES = st.one_of(
    ANY_TEXT.filter(lambda s: "\x00" not in s and not any(0xD800 <= ord(c) <= 0xDFFF for c in s)),
    st.integers(min_value=-(10**30), max_value=10**30).map(str),
    st.sampled_from(
        [
            "active",
            "pending",
            "1e999",
            "NaN",
            "00000000-0000-0000-0000-000000000000",
            "2885-02-08T09:23:44-18:17",
            "9999-12-31T23:00:00-18:00",
        ]
    ),  # fmt: skip
)


@FUZZ
@given(
    path=st.sampled_from(["agent-runs", "agent-run-schedules", "agent-run-follow-ups"]),
    params=st.dictionaries(
        st.sampled_from(
            [
                "agentId",
                "source",
                "status",
                "statusGroup",
                "contextType",
                "contextKey",
                "threadId",
                "createdAfter",
                "createdBefore",
                "limit",
                "cursor",
            ]
        ),
        QUERY_VALUES,
        max_size=4,
    ),
)
def test_any_query_string_on_the_lists_answers_200_or_a_clear_400(api, roster, path, params):
    if not AgentRun.objects.exists():
        AgentRunFactory(agent=roster.agent, run_as=roster.owner)
        FollowUpFactory(agent=roster.agent, run_as=roster.owner)
    response = api.get(f"{API}/{path}", params)
    if response.status_code != 200:
        assert_clear_refusal(response)


# Python takes UTC offsets up to ±23:59; PostgreSQL's timestamptz only up to ±15:59.
ODD_OFFSETS = ["2885-02-08T09:23:44-18:17", "2030-01-01T00:00:00+23:59", "2030-01-01T00:00:00-16:00"]
# Instants whose UTC time lies outside what a datetime can hold.
BEYOND_UTC = ["9999-12-31T23:00:00-18:00", "0001-01-01T00:00:00+18:00"]


def drf_cursor(position: str) -> str:
    from base64 import b64encode
    from urllib.parse import urlencode

    return b64encode(urlencode({"p": position}).encode()).decode()


@pytest.mark.parametrize("moment", ODD_OFFSETS)
@pytest.mark.parametrize("parameter", ["createdAfter", "createdBefore"])
def test_an_instant_with_an_offset_postgres_refuses_is_read_in_utc(api, roster, parameter, moment):
    AgentRunFactory(agent=roster.agent, run_as=roster.owner)
    assert api.get(f"{API}/agent-runs", {parameter: moment}).status_code == 200
    usage = api.get(f"{API}/usage", {parameter: moment})
    assert usage.status_code == 200 or (400 <= usage.status_code < 500 and usage.json()["detail"])


@pytest.mark.parametrize("moment", BEYOND_UTC)
@pytest.mark.parametrize("parameter", ["createdAfter", "createdBefore"])
def test_an_instant_beyond_utcs_range_is_a_clear_400(api, roster, parameter, moment):
    response = api.get(f"{API}/agent-runs", {parameter: moment})
    assert_clear_refusal(response)
    assert parameter in response.json()


@pytest.mark.parametrize("position", ["2885-02-08 09:23:44-18:17", *BEYOND_UTC, "yesterday"])
@pytest.mark.parametrize("path", ["agent-runs", "agent-run-follow-ups", "provider-events"])
def test_a_hand_made_cursor_with_an_odd_instant_answers_200_or_a_clear_400(api, roster, path, position):
    AgentRunFactory(agent=roster.agent, run_as=roster.owner)
    response = api.get(f"{API}/{path}", {"cursor": drf_cursor(position)})
    if response.status_code != 200:
        assert_clear_refusal(response)
    assert_lists_answer(api)
