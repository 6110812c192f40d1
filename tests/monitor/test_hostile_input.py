"""Hostile input to the console: query parameters, cursors and the schedule form.

Whatever a person types or edits into a URL or a form, the console answers with the page
(and a message saying what was wrong) or a 4xx, stores nothing it refused, and every page
still renders afterwards. Property-based where the input space is wide (bounded, derandomized
examples so CI stays fast and repeatable).
"""

from base64 import urlsafe_b64encode
from urllib.parse import urlencode

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from automation.models import Schedule
from monitor.pagination import INVALID_CURSOR
from tests.factories import AgentRunFactory, FollowUpFactory

pytestmark = pytest.mark.django_db

RUNS = "/orgs/acme/agents/monitor/automation-runs/"
FOLLOW_UPS = f"{RUNS}follow-ups/"
SCHEDULES = f"{RUNS}schedules/"
FUZZ = settings(
    max_examples=20,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
# Text a browser can send: anything, including NUL, controls and non-Latin scripts.
ANY_TEXT = st.text(max_size=40)
NUMBERS = st.one_of(
    st.integers(min_value=-(10**40), max_value=10**40).map(str),
    st.sampled_from(["1e999", "NaN", "-0", "0x10", "  7 ", "9" * 400]),
)


def cursor(raw: str) -> str:
    return urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def every_page_renders(client, roster) -> None:
    for page in (RUNS, FOLLOW_UPS, SCHEDULES, f"/orgs/acme/agents/{roster.agent.pk}/capabilities/"):
        assert client.get(page).status_code == 200, page


@pytest.fixture
def owner(client, roster):
    AgentRunFactory(agent=roster.agent, run_as=roster.owner)
    FollowUpFactory(agent=roster.agent, run_as=roster.owner)
    client.force_login(roster.owner)
    return client


@pytest.mark.parametrize(
    "page, raw",
    [
        (RUNS, "n|2030-01-01T00:00:00+00:00|not-a-uuid"),
        (RUNS, "p|2030-01-01T00:00:00+00:00|1"),
        (RUNS, "n|2030-01-01T00:00:00|00000000-0000-0000-0000-000000000000"),
        (RUNS, "x|2030-01-01T00:00:00+00:00|00000000-0000-0000-0000-000000000000"),
        (RUNS, "n|yesterday|00000000-0000-0000-0000-000000000000"),
        (FOLLOW_UPS, "n|2030-01-01T00:00:00+00:00|abc"),
        (FOLLOW_UPS, "n|2030-01-01T00:00:00+00:00|"),
        (FOLLOW_UPS, "p|2030-01-01T00:00:00+00:00|1.5"),
        (FOLLOW_UPS, "n|2030-01-01T00:00:00+00:00|n|extra"),
    ],
)
def test_defect13_a_hand_made_cursor_with_a_bad_id_shows_the_first_page_and_says_so(owner, roster, page, raw):
    for url in (f"{page}?cursor={cursor(raw)}", f"{page}?{urlencode({'cursor': raw})}"):
        response = owner.get(url)
        assert response.status_code == 200, url
        assert INVALID_CURSOR in response.content.decode()


def test_a_cursor_the_console_made_carries_no_notice(owner, roster):
    AgentRunFactory(agent=roster.agent, run_as=roster.owner)
    first = owner.get(f"{RUNS}?limit=1").context["page"]
    following = owner.get(f"{RUNS}?limit=1&cursor={first.next_cursor}")
    assert following.status_code == 200 and INVALID_CURSOR not in following.content.decode()
    assert following.context["page"].rows and following.context["page"].rows != first.rows


@FUZZ
@given(
    params=st.fixed_dictionaries(
        {},
        optional={
            "agent": st.one_of(NUMBERS, ANY_TEXT),
            "source": ANY_TEXT,
            "status": st.one_of(st.sampled_from(["pending", "running", "active", "all"]), ANY_TEXT),
            "context_type": ANY_TEXT,
            "context_key": st.text(max_size=300),
            "created": st.one_of(st.sampled_from(["1h", "24h", "7d", "30d"]), ANY_TEXT),
            "limit": NUMBERS,
            "cursor": st.one_of(ANY_TEXT, st.builds(cursor, st.text(max_size=80))),
        },
    )
)
def test_any_query_string_on_the_run_and_follow_up_pages_renders(owner, roster, params):
    for page in (RUNS, FOLLOW_UPS):
        response = owner.get(page, params)
        assert response.status_code == 200, (page, params)
        htmx = owner.get(page, params, HTTP_HX_REQUEST="true", HTTP_HX_TARGET="runs-region")
        assert htmx.status_code == 200, (page, params)


def schedule_form(roster, **fields) -> dict:
    base = {
        "name": "Fuzzed", "cadence": "interval", "interval_minutes": "60", "timezone": "UTC",
        "instructions": "!reply x", "run_as": str(roster.owner.pk), "enabled": "on",
        "catchup_window": "60", "overlap_policy": "skip",
    }  # fmt: skip
    return {**base, **fields}


@FUZZ
@given(
    fields=st.fixed_dictionaries(
        {},
        optional={
            "name": st.text(max_size=250),
            "cadence": st.one_of(st.sampled_from(["daily", "weekly", "interval", "once", "cron"]), ANY_TEXT),
            "time_of_day": st.one_of(st.sampled_from(["09:00", "24:00", "23:59:59"]), ANY_TEXT),
            "weekdays": st.one_of(st.sampled_from(["mon", "sun"]), ANY_TEXT),
            "interval_minutes": NUMBERS,
            "run_at": st.one_of(
                st.datetimes().map(lambda d: d.strftime("%Y-%m-%dT%H:%M")),
                st.sampled_from(["9999-12-31T23:59", "0001-01-01T00:00", "10000-01-01T00:00"]),
                ANY_TEXT,
            ),
            "cron_expression": st.one_of(
                st.sampled_from(["* * * * *", "0 0 30 2 *", "0 9 * * 1-5"]), ANY_TEXT
            ),
            "timezone": st.sampled_from(
                ["UTC", "Etc/GMT+12", "Etc/GMT-14", "Pacific/Kiritimati", "Mars/Base"]
            ),
            "run_as": NUMBERS,
            "catchup_window": NUMBERS,
            "overlap_policy": st.one_of(st.sampled_from(["skip", "buffer_one", "allow"]), ANY_TEXT),
        },
    )
)
def test_any_schedule_form_answers_with_the_form_or_a_saved_schedule(owner, roster, fields):
    new = f"/orgs/acme/agents/{roster.agent.pk}/schedules/new/"
    before = Schedule.objects.count()
    for extra in ({"preview": "1"}, {}):
        response = owner.post(new, schedule_form(roster, **fields, **extra))
        assert response.status_code in (200, 302), fields
    preview = owner.get(
        f"/orgs/acme/agents/{roster.agent.pk}/schedules/preview/", schedule_form(roster, **fields)
    )
    assert preview.status_code == 200
    if response.status_code == 200:  # the form came back with its errors: nothing stored
        assert "errorlist" in response.content.decode()
        assert Schedule.objects.count() == before
    every_page_renders(owner, roster)
    Schedule.objects.all().delete()


# Python takes UTC offsets up to ±23:59; PostgreSQL's timestamptz only up to ±15:59.
ODD_INSTANTS = [
    "2885-02-08T09:23:44-18:17",
    "2030-01-01T00:00:00+23:59",
    "9999-12-31T23:00:00-18:00",
    "0001-01-01T00:00:00+18:00",
]


@pytest.mark.parametrize("moment", ODD_INSTANTS)
def test_an_instant_with_an_offset_postgres_refuses_renders_the_page(owner, roster, moment):
    for params in ({"created_after": moment}, {"created_before": moment}):
        assert owner.get(RUNS, params).status_code == 200, params
    live = owner.get(RUNS, {"since": moment}, HTTP_HX_REQUEST="true", HTTP_HX_TARGET="runs-live")
    assert live.status_code in (200, 204)
    for page in (RUNS, FOLLOW_UPS):
        response = owner.get(page, {"cursor": cursor(f"n|{moment}|00000000-0000-0000-0000-000000000000")})
        assert response.status_code == 200, page
    every_page_renders(owner, roster)
