"""`make run` on the embedded default: real web, worker and beat under honcho, driven over HTTP."""

import os
import re
import signal
import socket
import subprocess
import sys
import time

import httpx
import pytest

from tests.support.services import ROOT, wait_until


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def embedded_env(tmp_path):
    env = {
        k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "CELERY_BROKER_URL", "SECRET_KEY")
    }
    env.update(
        DJANGO_SETTINGS_MODULE="agentpress.settings",
        DEBUG="true",
        AGENTPRESS_VAR_DIR=str(tmp_path),
        PORT=str(free_port()),
        AUTOMATION_TICK_SECONDS="1",
    )
    return env


def manage(env, *args) -> str:
    return (
        subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        )
        .stdout.strip()
        .splitlines()[-1]
    )


def test_make_run_serves_login_navigation_and_executes_a_run(embedded_env, tmp_path):
    log = open(tmp_path / "make-run.log", "w")  # noqa: SIM115
    proc = subprocess.Popen(
        ["make", "run"],
        cwd=ROOT,
        env=embedded_env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{embedded_env['PORT']}"
    try:

        def login_page():
            try:
                return httpx.get(f"{base}/accounts/login/", timeout=2)
            except httpx.HTTPError:
                assert proc.poll() is None, (tmp_path / "make-run.log").read_text()[-3000:]
                return None

        page = wait_until(login_page, timeout=180, interval=0.5, message="the login page")
        assert page.status_code == 200 and "Sign in" in page.text
        output = (tmp_path / "make-run.log").read_text()
        assert (
            f"http://127.0.0.1:{embedded_env['PORT']}/" in output
            and "owner" in output
            and "password: demo" in output
        )

        with httpx.Client(base_url=base, follow_redirects=True) as browser:
            form = browser.get("/accounts/login/")
            token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', form.text).group(1)
            home = browser.post(
                "/accounts/login/",
                data={"username": "owner", "password": "demo", "csrfmiddlewaretoken": token},
            )
            assert home.status_code == 200 and "Automation Runs" in home.text and "owner" in home.text
            assert browser.get("/static/css/app.css").status_code == 200

        agent_id = manage(
            embedded_env,
            "shell",
            "-c",
            "from agentpress.agents.models import Agent; print(Agent.objects.get(name='Support agent', organization__slug='acme').pk)",
        )
        run_id = manage(
            embedded_env,
            "start_run",
            "--org",
            "acme",
            "--agent",
            agent_id,
            "--as",
            "owner",
            "--prompt",
            "!reply embedded works",
        )
        status = f"from automation.models import AgentRun; print(AgentRun.objects.get(pk='{run_id}').status)"
        wait_until(
            lambda: manage(embedded_env, "shell", "-c", status) == "completed",
            timeout=90,
            interval=1,
            message="the run to complete on the embedded worker",
        )
        # the worker's counters reach the web process's /metrics through the shared directory
        metrics = httpx.get(f"{base}/metrics", timeout=10).text
        assert 'automation_runs_started_total{source="manual"} 1.0' in metrics
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
        log.close()
    time.sleep(0.1)
