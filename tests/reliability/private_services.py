"""Private Redis and PostgreSQL servers for the scenarios that stop or restart them.

The shared servers on 6379 and 5432 serve everyone's tests; a scenario that takes its
broker or database down starts its own on a free port and takes that one down instead.
"""

import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import psycopg

from tests.support import services

PG_BIN = Path("/usr/lib/postgresql/15/bin")


class RedisServer:
    """A redis-server without persistence: a restart comes back empty, as after a crash."""

    def __init__(self, log_dir: Path):
        self.port = services.free_port()
        self.log_dir = log_dir
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: services.Process | None = None
        self.start()

    def start(self) -> None:
        argv = ["redis-server", "--port", str(self.port), "--save", "", "--appendonly", "no"]
        self.proc = services.Process(f"redis-{time.monotonic_ns()}", argv, {}, self.log_dir)
        self.proc.wait_for("Ready to accept connections", timeout=20)

    def kill(self) -> None:
        self.proc.kill9()

    def close(self) -> None:
        self.proc.stop()


def _as_postgres(argv: list[str], **kw) -> subprocess.CompletedProcess:
    """PostgreSQL refuses to run as root: run its tools as the ``postgres`` OS user."""
    return subprocess.run(["runuser", "-u", "postgres", "--", *argv], check=True, capture_output=True, **kw)


class PostgresServer:
    """A throwaway PostgreSQL 15 cluster in a temporary directory, on a free port."""

    def __init__(self, name: str = "reliability"):
        if not (PG_BIN / "initdb").exists():
            services.require(False, f"PostgreSQL server binaries under {PG_BIN}")
        self.port = services.free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="agentpress-pg-"))
        shutil.chown(self.dir, "postgres", "postgres")
        self.data = self.dir / "data"
        _as_postgres(
            [str(PG_BIN / "initdb"), "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8"]
        )
        self.start()
        self.url = f"postgres://postgres@127.0.0.1:{self.port}/{name}"
        _as_postgres(
            [str(PG_BIN / "createdb"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", name]
        )

    def _ctl(self, *args: str) -> None:
        options = f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off"
        _as_postgres(
            [
                str(PG_BIN / "pg_ctl"),
                "-D",
                str(self.data),
                "-l",
                str(self.dir / "server.log"),
                "-w",
                "-o",
                options,
                *args,
            ],
            timeout=60,
        )

    def start(self) -> None:
        self._ctl("start")

    def restart(self) -> None:
        """A fast restart: every open connection is cut, as in a failover or an upgrade."""
        self._ctl("-m", "fast", "restart")

    def connect(self) -> psycopg.Connection:
        return psycopg.connect(self.url.replace("postgres://", "postgresql://"), autocommit=True)

    def close(self) -> None:
        try:
            self._ctl("-m", "immediate", "stop")
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)
