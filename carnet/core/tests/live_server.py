"""The production server (gunicorn) as a subprocess on the test database, and a plain HTTP client.

Used by the fault and race tests (test_live_faults.py): unlike Django's live_server, this is the
real thing — separate worker processes with their own database connections, which the test may
kill with SIGKILL at any moment.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from django.db import connection, connections

BASE_DIR = Path(__file__).resolve().parents[3]
GUNICORN = Path(sys.executable).with_name("gunicorn")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def current_database_url() -> str:
    """postgres://… for the database this test process is using (pytest-django's test_… one)."""
    s = connection.settings_dict
    user = s.get("USER") or ""
    password = f":{s['PASSWORD']}" if s.get("PASSWORD") else ""
    auth = f"{user}{password}@" if user or password else ""
    host = s.get("HOST") or "127.0.0.1"
    port = f":{s['PORT']}" if s.get("PORT") else ""
    return f"postgres://{auth}{host}{port}/{s['NAME']}"


class LiveServer:
    """gunicorn carnet.wsgi:application in its own process group, so kill() takes down the
    master and every worker at once (SIGKILL: no cleanup, connections simply vanish)."""

    def __init__(
        self,
        log_dir: Path,
        *,
        workers: int = 2,
        threads: int = 4,
        app: str = "carnet.wsgi:application",
    ):
        self.log_dir, self.app = Path(log_dir), app
        self.workers, self.threads = workers, threads
        self.proc: subprocess.Popen | None = None
        self.port = 0
        self.starts = 0

    def _env(self) -> dict:
        env = dict(os.environ)
        env.update(
            {
                "DJANGO_SETTINGS_MODULE": "carnet.settings",
                "DATABASE_URL": current_database_url(),
                # The test gateway's own database (a file): the server's charges
                # are the test's to see.
                "CARNET_TEST_GATEWAY_DB": str(connections["gateway"].settings_dict["NAME"]),
                "DEBUG": "0",
                "CONN_MAX_AGE": "0",
                "CARNET_VAR_DIR": str(self.log_dir / "var"),
                "EMAIL_BACKEND": "django.core.mail.backends.locmem.EmailBackend",
                "LOG_LEVEL": "WARNING",
                "PYTHONUNBUFFERED": "1",
            }
        )
        return env

    def start(self, timeout: float = 30) -> None:
        assert self.proc is None, "already running"
        self.starts += 1
        self.port = free_port()
        log = open(self.log_dir / f"gunicorn-{self.starts}.log", "wb")
        self.proc = subprocess.Popen(
            [
                str(GUNICORN),
                self.app,
                "-b",
                f"127.0.0.1:{self.port}",
                "-w",
                str(self.workers),
                "--threads",
                str(self.threads),
                "--timeout",
                "60",
                "--graceful-timeout",
                "5",
                "--chdir",
                str(BASE_DIR),
            ],
            cwd=BASE_DIR,
            env=self._env(),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        self._wait_ready(timeout)

    def _wait_ready(self, timeout: float) -> None:
        """Until a worker answers an HTTP request (the port alone opens before workers boot)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"gunicorn exited with {self.proc.returncode}:\n{self.log_tail()}"
                )
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
                conn.request("GET", "/api/v1/openapi.json")
                conn.getresponse().read()
                conn.close()
                return
            except OSError:
                time.sleep(0.2)
        self.kill()
        raise RuntimeError(f"gunicorn did not answer within {timeout:.0f} s:\n{self.log_tail()}")

    def log_tail(self, lines: int = 40) -> str:
        path = self.log_dir / f"gunicorn-{self.starts}.log"
        return (
            "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
            if path.exists()
            else ""
        )

    def kill(self) -> None:
        """SIGKILL to the master and all its workers (the whole process group)."""
        if self.proc is None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait(timeout=30)
        self.proc = None

    def stop(self) -> None:
        """A graceful stop (SIGTERM), then SIGKILL for anything left in the group."""
        if self.proc is None:
            return
        pgid = self.proc.pid
        try:
            os.killpg(pgid, signal.SIGTERM)
            self.proc.wait(timeout=10)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            pass
        try:  # a worker still draining, or a master that did not stop in time
            os.killpg(pgid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait(timeout=30)
        self.proc = None


@dataclass
class Reply:
    status: int
    body: bytes
    headers: dict = field(default_factory=dict)

    def json(self):
        return json.loads(self.body)

    @property
    def replayed(self) -> bool:
        return self.headers.get("idempotent-replayed") == "true"


class NoReply(Exception):
    """The request got no HTTP response (refused, reset, closed mid-way, timed out)."""


class Client:
    """JSON over http.client with a bearer token; one connection per request."""

    def __init__(self, server: LiveServer, token: str, timeout: float = 60):
        self.server, self.token, self.timeout = server, token, timeout

    def request(self, method: str, path: str, body=None, key: str | None = None) -> Reply:
        headers = {
            "Authorization": f"Bearer {self.token}",
            "Accept": "application/json",
            "Connection": "close",
        }
        data = None
        if body is not None:
            data = json.dumps(body, sort_keys=True).encode()
            headers["Content-Type"] = "application/json"
        if key is not None:
            headers["Idempotency-Key"] = key
        conn = http.client.HTTPConnection("127.0.0.1", self.server.port, timeout=self.timeout)
        try:
            conn.request(method, f"/api/v1{path}", body=data, headers=headers)
            response = conn.getresponse()
            return Reply(
                response.status, response.read(), {k.lower(): v for k, v in response.getheaders()}
            )
        except (OSError, http.client.HTTPException) as exc:
            raise NoReply(f"{method} {path}: {exc!r}") from exc
        finally:
            conn.close()

    def post_and_hang_up(self, path: str, body, key: str) -> None:
        """Send a POST and close the connection without reading the answer: the response is lost
        while the server still runs (or has already run) the request."""
        conn = http.client.HTTPConnection("127.0.0.1", self.server.port, timeout=self.timeout)
        try:
            conn.request(
                "POST",
                f"/api/v1{path}",
                body=json.dumps(body, sort_keys=True).encode(),
                headers={
                    "Authorization": f"Bearer {self.token}",
                    "Content-Type": "application/json",
                    "Idempotency-Key": key,
                    "Connection": "close",
                },
            )
        except (OSError, http.client.HTTPException) as exc:
            raise NoReply(f"POST {path}: {exc!r}") from exc
        finally:
            conn.close()

    def get(self, path: str) -> Reply:
        return self.request("GET", path)

    def post(self, path: str, body=None, key: str | None = None) -> Reply:
        return self.request("POST", path, body, key)
