"""Limits before work (issue 15, deliverable 1): `pipeline-bot serve` in its own process on
127.0.0.1 checks authentication before it reads a body, caps bodies by route, cuts off slow
senders, and its memory stays flat under big unauthenticated bodies (its RSS and its peak RSS,
read from /proc/<pid>/status)."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import select
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.app_harness import private_key
from tests.conftest import stop_process, wait_until_up

SCRIPT = str(Path(sys.executable).parent / "pipeline-bot")
TOKEN = "limits-test-token-6f1c2a9e"
SECRET = b"limits-webhook-secret"
MIB = 1024 * 1024
pytestmark = pytest.mark.integration


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def memory(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (peak RSS) of a process, in KiB, from /proc/<pid>/status."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            fields[name] = int(value.split()[0])
    return fields


class App:
    """`pipeline-bot serve` on a free loopback port; GitHub's API is a closed port (nothing
    here may reach it)."""

    def __init__(self, tmp_path: Path, **extra: str) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {
            k: v for k, v in os.environ.items() if not k.startswith(("GITHUB_", "PIPELINE_BOT_"))
        }
        env.update(
            HOME=str(tmp_path),
            GITHUB_API_URL=f"http://127.0.0.1:{_free_port()}/api/v3",
            GITHUB_APP_ID="1",
            GITHUB_APP_PRIVATE_KEY=private_key(),
            GITHUB_WEBHOOK_SECRET=SECRET.decode(),
            PIPELINE_BOT_API_TOKEN=TOKEN,
            PIPELINE_BOT_DATABASE_URL=f"sqlite:///{tmp_path / 'app.db'}",
            PIPELINE_BOT_HTTP_BODY_TIMEOUT="1",
            PIPELINE_BOT_WEBHOOK_BUFFER_BYTES=str(8 * MIB),
            **extra,
        )
        self.proc = subprocess.Popen(
            [SCRIPT, "serve", "--port", str(self.port)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        wait_until_up(self.proc, lambda: urllib.request.urlopen(f"{self.url}/health", timeout=2))

    def memory(self) -> dict[str, int]:
        return memory(self.proc.pid)

    def stop(self) -> None:
        stop_process(self.proc)


@pytest.fixture
def app(tmp_path):
    server = App(tmp_path)
    yield server
    server.stop()


def head(path: str, length: int, **headers: str) -> bytes:
    lines = [f"POST {path} HTTP/1.1", "Host: 127.0.0.1", "Content-Type: application/json"]
    lines += [f"{k.replace('_', '-')}: {v}" for k, v in headers.items()]
    lines.append(f"Content-Length: {length}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def bearer(token: str = TOKEN) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def shaped_signature() -> dict[str, str]:
    """A signature header of the right shape that signs nothing sent here."""
    return {
        "X_Hub_Signature_256": "sha256=" + "0" * 64,
        "X_GitHub_Event": "ping",
        "X_GitHub_Delivery": "attack-1",
    }


def status_of(answer: bytes) -> int | None:
    if not answer.startswith(b"HTTP/1.1 "):
        return None
    return int(answer[9:12])


def announce(port: int, request_head: bytes, wait: float = 10) -> tuple[int | None, bool]:
    """Send only the head of a request with a body; (the status answered without the body,
    whether the server then closed the connection). None: no answer within `wait` seconds."""
    with socket.create_connection(("127.0.0.1", port), timeout=wait) as s:
        s.sendall(request_head)
        try:
            answer = s.recv(4096)
        except TimeoutError:
            return None, False
        return status_of(answer), _closed_after(s)


def _closed_after(s: socket.socket) -> bool:
    """Whether the server closes the connection once its answer is sent (within 5 s)."""
    s.settimeout(5)
    try:
        while s.recv(4096):
            pass
    except ConnectionResetError:  # closed with bytes of ours unread: a reset, closed all the same
        return True
    except TimeoutError:
        return False
    return True


def attack(port: int, request_head: bytes, size: int) -> int | None:
    """Send a request and `size` bytes of body as fast as loopback takes them (until the server
    closes the connection); the status it answered, None when it reset before answering."""
    chunk = b"a" * MIB
    with socket.create_connection(("127.0.0.1", port), timeout=60) as s:
        try:
            s.sendall(request_head)
            sent = 0
            while sent < size:
                part = chunk[: size - sent]
                s.sendall(part)
                sent += len(part)
        except (BrokenPipeError, ConnectionResetError):
            pass
        try:
            return status_of(s.recv(4096))
        except (ConnectionResetError, TimeoutError):
            return None


def drip(port: int, request_head: bytes, *, deadline: float = 20) -> tuple[int | None, bool]:
    """A slow sender: the head, then one body byte every 0.2 s. (status, closed) as soon as the
    server answers; (None, False) if it still waits after `deadline` seconds."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(request_head)
        give_up = time.monotonic() + deadline
        while time.monotonic() < give_up:
            readable, _, _ = select.select([s], [], [], 0.2)  # paces the sender
            if readable:
                try:
                    answer = s.recv(4096)
                except ConnectionResetError:
                    return None, True
                return status_of(answer), not answer or _closed_after(s)
            try:
                s.sendall(b" ")
            except (BrokenPipeError, ConnectionResetError):
                return None, True
        return None, False


def _warm_up(app: App) -> None:
    """Touch every route once so lazy imports and first-use allocations are behind us."""
    body = json.dumps({"zen": "z", "hook_id": 1}).encode()
    signature = "sha256=" + hmac.new(SECRET, body, hashlib.sha256).hexdigest()
    headers = {
        "Content-Type": "application/json",
        "X-GitHub-Event": "ping",
        "X-GitHub-Delivery": "warm-1",
        "X-Hub-Signature-256": signature,
    }
    for url, data, extra in [
        ("/webhooks", body, headers),
        ("/deploy", b"{}", {"Content-Type": "application/json", **bearer()}),
        ("/deploy", b"{}", {"Content-Type": "application/json"}),
        ("/mcp", b"{}", {"Content-Type": "application/json"}),
    ]:
        request = urllib.request.Request(app.url + url, data=data, headers=extra, method="POST")
        try:
            urllib.request.urlopen(request, timeout=10).close()
        except urllib.error.HTTPError as exc:
            exc.close()
    attack(app.port, head("/deploy", MIB), MIB)


def test_no_body_is_read_before_authentication(app):
    """A body's head without credentials is answered at once, and the connection closed: the
    server never waits for (or reads) the body."""
    huge = 256 * MIB
    cases = {
        "/deploy without a token": head("/deploy", huge),
        "/deploy with a wrong token": head("/deploy", huge, **bearer("not-the-token-at-all")),
        "/pipeline/execute without a token": head("/pipeline/execute", huge),
        "/webhooks without a signature": head(
            "/webhooks", 20 * MIB, X_GitHub_Event="ping", X_GitHub_Delivery="a-1"
        ),
        "/webhooks with a malformed signature": head(
            "/webhooks", 20 * MIB, X_Hub_Signature_256="sha1=abc", X_GitHub_Event="ping"
        ),
        "/mcp without a token": head("/mcp", huge),
    }
    answers = {name: announce(app.port, request) for name, request in cases.items()}
    assert answers == dict.fromkeys(cases, (401, True))


def test_bodies_are_capped_by_route_before_they_are_read(app):
    api = announce(app.port, head("/deploy", 2 * MIB, **bearer()))
    webhook = announce(app.port, head("/webhooks", 25 * 1024 * 1024 + 1, **shaped_signature()))
    mcp = announce(app.port, head("/mcp", 2 * MIB, **bearer()))
    assert (api, webhook, mcp) == ((413, True), (413, True), (413, True))


def test_slow_senders_are_cut_off_with_408(app):
    """PIPELINE_BOT_HTTP_BODY_TIMEOUT is 1 s here: a body that trickles in is answered 408 and
    its connection closed (generous deadline: 20 s)."""
    webhook = drip(app.port, head("/webhooks", 1000, **shaped_signature()))
    api = drip(app.port, head("/deploy", 1000, **bearer()))
    mcp = drip(app.port, head("/mcp", 1000, **bearer()))
    assert (webhook, api, mcp) == ((408, True), (408, True), (408, True))


def test_memory_stays_flat_under_big_unauthenticated_bodies(app):
    """Eight 32 MiB API bodies without a token, eight 24 MB unsigned webhook bodies, eight 4 MB
    ones with a signature of the right shape but wrong (read within the 8 MiB budget of
    unverified bytes, the rest 503), four 32 MiB /mcp bodies without a token, all at once: the
    peak RSS grows by less than 40 MiB (before the fix: by about 1 GiB)."""
    _warm_up(app)
    before = app.memory()
    plan = (
        [(head("/deploy", 32 * MIB), 32 * MIB)] * 8
        + [(head("/webhooks", 24_000_000, X_GitHub_Event="ping"), 24_000_000)] * 8
        + [(head("/webhooks", 4_000_000, **shaped_signature()), 4_000_000)] * 8
        + [(head("/mcp", 32 * MIB), 32 * MIB)] * 4
    )
    statuses: list[Any] = [None] * len(plan)

    def run(i: int) -> None:
        statuses[i] = attack(app.port, *plan[i])

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(plan))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    after = app.memory()
    grown = {k: (after[k] - before[k]) // 1024 for k in before}
    print(f"RSS before {before} KiB, after {after} KiB, grown {grown} MiB; answers {statuses}")
    assert grown["VmHWM"] < 40, f"peak RSS grew by {grown['VmHWM']} MiB under the attack"
    assert set(statuses) <= {401, 413, 503, None}
    assert app.proc.poll() is None
    assert urllib.request.urlopen(f"{app.url}/health", timeout=10).status == 200


def test_a_weak_api_token_stops_serve_at_once_with_one_line(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GITHUB_", "PIPELINE_BOT_"))}
    env.update(
        HOME=str(tmp_path),
        GITHUB_APP_ID="1",
        GITHUB_APP_PRIVATE_KEY=private_key(),
        GITHUB_WEBHOOK_SECRET=SECRET.decode(),
        PIPELINE_BOT_DATABASE_URL=f"sqlite:///{tmp_path / 'app.db'}",
    )
    for weak in ("x", "short-token", "aaaaaaaaaaaaaaaaaaaaaaaa"):
        proc = subprocess.Popen(
            [SCRIPT, "serve", "--port", str(_free_port())],
            env={**env, "PIPELINE_BOT_API_TOKEN": weak},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            code = proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            stop_process(proc)
            pytest.fail(f"serve started with the API token {weak!r}")
        stderr = proc.stderr.read() if proc.stderr else ""
        stop_process(proc)
        assert code == 2
        assert stderr.strip().count("\n") == 0, stderr
        assert "PIPELINE_BOT_API_TOKEN" in stderr
        assert "16" in stderr
        assert len(weak) < 5 or weak not in stderr  # the value itself is never echoed
