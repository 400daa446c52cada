"""Benchmark: the App's limits under load and attack (issue 15), each figure with its load.

`pipeline-bot serve` runs as its own process on 127.0.0.1 (the settings' defaults unless said);
its RSS, peak RSS (VmHWM, reset before each attack through /proc/<pid>/clear_refs) and SQLite
files are read from /proc and the disk while this script, a separate process, loads it:

  1. soak: signed 24 KB deliveries at a fixed rate, RSS and WAL sampled every second;
  2. big bodies: 256 MiB REST API bodies without a token, 25 MB unsigned webhooks, 24 MB webhooks
     whose signature has the right shape but is wrong, 256 MiB /mcp bodies without a token;
  3. slow bodies: connections that announce a body and send a byte a second;
  4. MCP sessions: many sessions opened and left idle (bounded; expired after the idle time).

  5. kill -9: deliveries flowing while the App is SIGKILLed, then redelivered to a restarted
     App: acknowledged, stored, lost, stored twice;
  6. fuzz: the fuzz suites of tests/ with --fuzz-examples examples per property.

    python bench/security.py [--soak-seconds 60] [--rate 200] [--slow 3000] [--sessions 3000]
                             [--kills 3] [--deliveries 20000] [--fuzz-examples 500]
                             [--only soak,bodies,slow,sessions,kill,fuzz]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SECRET = b"bench-security-secret"
TOKEN = "bench-security-token-5d2e8a17c4"  # noqa: S105 - the bench server's own token
EXAMPLES = ROOT / "tests/npm/node_modules/@octokit/webhooks-examples/api.github.com/index.json"
MIB = 1024 * 1024


def payload() -> bytes:
    """A real pull_request `closed` delivery (stored, not worked), or 24 KB of the same shape."""
    if EXAMPLES.exists():
        index = {e["name"]: e["examples"] for e in json.loads(EXAMPLES.read_text())}
        closed = next(e for e in index["pull_request"] if e["action"] == "closed")
        return json.dumps(closed).encode()
    return json.dumps({"action": "closed", "padding": "x" * 24_000}).encode()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class App:
    """`pipeline-bot serve` with `extra` settings; its memory and files."""

    def __init__(self, tmp: Path, name: str, **extra: str) -> None:
        from tests.app_harness import private_key

        self.port = free_port()
        self.db = tmp / f"{name}.db"
        env = {k: v for k, v in os.environ.items() if not k.startswith("PIPELINE_BOT_")}
        env.update(
            HOME=str(tmp),
            GITHUB_APP_ID="1",
            GITHUB_APP_PRIVATE_KEY=private_key(),
            GITHUB_WEBHOOK_SECRET=SECRET.decode(),
            GITHUB_API_URL=f"http://127.0.0.1:{free_port()}/api/v3",  # never called
            PIPELINE_BOT_API_TOKEN=TOKEN,
            PIPELINE_BOT_DATABASE_URL=f"sqlite:///{self.db}",
            **extra,
        )
        script = str(Path(sys.executable).parent / "pipeline-bot")
        self.proc = subprocess.Popen(
            [script, "serve", "--port", str(self.port)], env=env, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{self.port}/health", timeout=2).close()
                break
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit("the App did not start") from None
                time.sleep(0.05)  # waiting for the server, with a deadline

    def memory(self) -> dict[str, float]:
        """VmRSS and VmHWM in MiB."""
        out = {}
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            name, _, value = line.partition(":")
            if name in ("VmRSS", "VmHWM"):
                out[name] = int(value.split()[0]) / 1024
        return out

    def reset_peak(self) -> None:
        Path(f"/proc/{self.proc.pid}/clear_refs").write_text("5")  # VmHWM := VmRSS

    def wal_mib(self) -> float:
        wal = Path(f"{self.db}-wal")
        return wal.stat().st_size / MIB if wal.exists() else 0.0

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=30)


# ----------------------------------------------------------------------------- soak


def signed_request(body: bytes, port: int, delivery: str | None = None) -> bytes:
    signature = "sha256=" + hmac.new(SECRET, body, hashlib.sha256).hexdigest()
    return (
        f"POST /webhooks HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
        f"X-GitHub-Event: pull_request\r\nX-Hub-Signature-256: {signature}\r\n"
        f"X-GitHub-Delivery: {delivery or uuid.uuid4()}\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode() + body


async def _exchange(reader: Any, writer: Any, request: bytes) -> int:
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    await reader.readexactly(length)
    return int(head[9:12])


async def soak(app: App, seconds: float, rate: float) -> None:
    body = payload()
    idle: list[Any] = []
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    samples: list[tuple[float, float]] = []

    async def send() -> None:
        conn = idle.pop() if idle else await asyncio.open_connection("127.0.0.1", app.port)
        started = time.perf_counter()
        request = signed_request(body, app.port)
        try:
            status = await _exchange(*conn, request)
        except (asyncio.IncompleteReadError, ConnectionError):  # idle past the keep-alive
            conn = await asyncio.open_connection("127.0.0.1", app.port)
            started = time.perf_counter()
            status = await _exchange(*conn, request)
        latencies.append(time.perf_counter() - started)
        statuses[status] = statuses.get(status, 0) + 1
        idle.append(conn)

    async def sample() -> None:
        while True:
            samples.append((app.memory()["VmRSS"], app.wal_mib()))
            await asyncio.sleep(1)  # the sampling period

    sampler = asyncio.create_task(sample())
    begin = time.perf_counter()
    tasks = []
    for i in range(int(seconds * rate)):
        delay = begin + i / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)  # the open loop's schedule
        tasks.append(asyncio.create_task(send()))
    await asyncio.gather(*tasks)
    sampler.cancel()
    latencies.sort()
    rss = [r for r, _ in samples]
    print(
        f"soak: {len(latencies)} signed deliveries of {len(body)} bytes at {rate:.0f}/s for "
        f"{seconds:.0f} s (answers {statuses}): p50 {statistics.median(latencies) * 1000:.2f} ms,"
        f" p99 {latencies[int(len(latencies) * 0.99) - 1] * 1000:.2f} ms; RSS first "
        f"{rss[0]:.0f} MiB, max {max(rss):.0f}, last {rss[-1]:.0f}; WAL max "
        f"{max(w for _, w in samples):.1f} MiB, last {samples[-1][1]:.1f} MiB; database "
        f"{app.db.stat().st_size / MIB:.1f} MiB"
    )


# ----------------------------------------------------------------------------- big bodies


def _head(path: str, length: int, headers: dict[str, str]) -> bytes:
    lines = [f"POST {path} HTTP/1.1", "Host: 127.0.0.1", "Content-Type: application/json"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    return ("\r\n".join([*lines, f"Content-Length: {length}"]) + "\r\n\r\n").encode()


def _push(port: int, head: bytes, size: int) -> int | None:
    """Send a request and its body as fast as the server takes it; the status it answers."""
    chunk = b"a" * MIB
    with socket.create_connection(("127.0.0.1", port), timeout=120) as s:
        try:
            s.sendall(head)
            sent = 0
            while sent < size:
                s.sendall(chunk[: size - sent])
                sent += min(MIB, size - sent)
        except OSError:
            pass
        try:
            answer = s.recv(64)
        except OSError:
            return None
        return int(answer[9:12]) if answer.startswith(b"HTTP/1.1 ") else None


def big_bodies(start: Any) -> None:
    """Each attack on a server of its own, so one's garbage does not blur the next's figures."""
    shaped = {
        "X-Hub-Signature-256": "sha256=" + "0" * 64,
        "X-GitHub-Event": "ping",
        "X-GitHub-Delivery": "attack",
    }
    attacks = [
        ("REST API /deploy, no token", "/deploy", {}, 8, 256 * MIB),
        ("webhooks, no signature", "/webhooks", {"X-GitHub-Event": "ping"}, 16, 25_000_000),
        ("webhooks, well-formed wrong signature", "/webhooks", shaped, 16, 24_000_000),
        ("/mcp, no token", "/mcp", {}, 8, 256 * MIB),
    ]
    for number, (name, path, headers, count, size) in enumerate(attacks):
        app = start(f"bodies-{number}")
        try:
            _attack(app, name, _head(path, size, headers), count, size)
        finally:
            app.stop()


def _attack(app: App, name: str, head: bytes, count: int, size: int) -> None:
    _push(app.port, _head("/deploy", MIB, {}), MIB)  # first-use allocations
    before = app.memory()
    app.reset_peak()
    answers: list[int | None] = [None] * count

    def run(i: int) -> None:
        answers[i] = _push(app.port, head, size)

    started = time.perf_counter()
    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    took = time.perf_counter() - started
    after = app.memory()
    counted = {a: answers.count(a) for a in set(answers)}
    print(
        f"big bodies: {count} x {size / MIB:.1f} MiB at once to {name}: answers {counted} in "
        f"{took:.1f} s; RSS {before['VmRSS']:.0f} -> {after['VmRSS']:.0f} MiB, peak "
        f"+{after['VmHWM'] - before['VmRSS']:.0f} MiB"
    )


# ----------------------------------------------------------------------------- slow bodies


async def slow_bodies(app: App, count: int, timeout: float) -> None:
    shaped = "sha256=" + "0" * 64
    heads = [
        _head("/webhooks", 10_000, {"X-Hub-Signature-256": shaped, "X-GitHub-Event": "ping"}),
        _head("/deploy", 10_000, {"Authorization": f"Bearer {TOKEN}"}),
    ]
    cut: list[float] = []
    answers: dict[int | None, int] = {}
    app.reset_peak()
    before = app.memory()

    async def loris(i: int) -> None:
        started = time.perf_counter()
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", app.port)
        except OSError:
            answers[-1] = answers.get(-1, 0) + 1
            return
        writer.write(heads[i % 2])
        status: int | None = None
        while True:
            try:
                answer = await asyncio.wait_for(reader.read(64), 1)  # a byte a second
            except TimeoutError:
                if time.perf_counter() - started > 4 * timeout + 30:
                    break  # never cut off
                writer.write(b" ")
                continue
            except OSError:
                answer = b""
            if answer.startswith(b"HTTP/1.1 "):
                status = int(answer[9:12])
            break
        cut.append(time.perf_counter() - started)
        answers[status] = answers.get(status, 0) + 1
        writer.close()

    peak_during = 0.0

    async def watch() -> None:
        nonlocal peak_during
        while True:
            peak_during = max(peak_during, app.memory()["VmRSS"])
            await asyncio.sleep(0.5)  # the sampling period

    watcher = asyncio.create_task(watch())
    await asyncio.gather(*(loris(i) for i in range(count)))
    watcher.cancel()
    after = app.memory()
    print(
        f"slow bodies: {count} connections each announcing 10,000 bytes and sending one a second"
        f" (body timeout {timeout:.0f} s): answers {answers}; cut off after median "
        f"{statistics.median(cut):.1f} s, max {max(cut):.1f} s; RSS {before['VmRSS']:.0f} -> "
        f"{after['VmRSS']:.0f} MiB, {peak_during:.0f} MiB at most while they were open"
    )


# ----------------------------------------------------------------------------- MCP sessions


def sessions(app: App, count: int, idle: float, limit: int) -> None:
    import http.client

    message = json.dumps(
        {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "initialize",
            "params": {
                "protocolVersion": "2025-06-18",
                "capabilities": {},
                "clientInfo": {"name": "bench", "version": "1"},
            },
        }
    )
    headers = {
        "Content-Type": "application/json",
        "Accept": "application/json, text/event-stream",
        "Authorization": f"Bearer {TOKEN}",
    }

    def open_one() -> int:
        conn = http.client.HTTPConnection("127.0.0.1", app.port, timeout=30)
        conn.request("POST", "/mcp", body=message, headers=headers)
        response = conn.getresponse()
        response.read()
        conn.close()
        return response.status

    before = app.memory()
    answers: dict[int, int] = {}
    started = time.perf_counter()
    for _ in range(count):
        status = open_one()
        answers[status] = answers.get(status, 0) + 1
    took = time.perf_counter() - started
    after = app.memory()
    deadline = time.monotonic() + idle * 4 + 30
    while (again := open_one()) == 503 and time.monotonic() < deadline:
        time.sleep(0.5)  # waiting for the idle sessions to expire, with a deadline
    print(
        f"MCP sessions: {count} initializes in {took:.1f} s, left idle (at most {limit} open, "
        f"idle timeout {idle:.0f} s): answers {answers}; RSS {before['VmRSS']:.0f} -> "
        f"{after['VmRSS']:.0f} MiB; a new session after "
        f"{time.perf_counter() - started - took:.1f} s of idleness: {again}"
    )


# ----------------------------------------------------------------------------- kill -9


async def _send_all(port: int, ids: list[str], body: bytes, acked: set[str]) -> dict[int, int]:
    """Send each delivery once over 8 connections; note the ids answered 202."""
    statuses: dict[int, int] = {}
    todo = list(ids)

    async def client() -> None:
        conn = None
        while todo:
            delivery = todo.pop()
            try:
                conn = conn or await asyncio.open_connection("127.0.0.1", port)
                status = await _exchange(*conn, signed_request(body, port, delivery))
            except (OSError, asyncio.IncompleteReadError):
                status, conn = 0, None  # the server died under us: not acknowledged
            statuses[status] = statuses.get(status, 0) + 1
            if status == 202:
                acked.add(delivery)

    await asyncio.gather(*(client() for _ in range(8)))
    return statuses


def kill_restart(tmp: Path, count: int, rounds: int) -> None:
    """Deliveries sent while the App is killed with SIGKILL mid-stream, then sent again to a
    restarted App on the same database (GitHub redelivers what was not acknowledged): every
    acknowledged delivery is stored, and each exactly once."""
    import sqlite3

    body = payload()
    ids = [str(uuid.uuid4()) for _ in range(count)]
    acked: set[str] = set()
    answers: list[dict[int, int]] = []
    for i in range(rounds):
        app = App(tmp, "killed")
        killer = threading.Timer(0.5 + 0.3 * i, app.proc.kill)  # SIGKILL while deliveries flow
        killer.start()
        answers.append(asyncio.run(_send_all(app.port, ids, body, acked)))
        killer.join()
        app.proc.wait(timeout=30)
    app = App(tmp, "killed")
    try:
        answers.append(asyncio.run(_send_all(app.port, ids, body, acked)))  # the redelivery
    finally:
        app.stop()
    with sqlite3.connect(app.db) as db:
        rows = dict(db.execute("SELECT id, COUNT(*) FROM app_deliveries GROUP BY id").fetchall())
    lost = acked - set(rows)
    twice = [k for k, n in rows.items() if n > 1]
    print(
        f"kill -9: {count} deliveries, the App killed {rounds} times mid-stream then restarted and "
        f"sent them all again; answers per run {answers}; acknowledged {len(acked)}, stored "
        f"{len(rows)}, lost {len(lost)}, stored twice {len(twice)}"
    )


# ----------------------------------------------------------------------------- long fuzz


def long_fuzz(examples: int) -> None:
    """The fuzz suites of tests/ with many more examples than CI runs."""
    started = time.perf_counter()
    suites = [
        "tests/test_fuzz_http.py",
        "tests/test_fuzz_tools.py",
        "tests/test_fuzz_commands.py",
        "tests/test_fuzz_config.py",
    ]
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *suites],
        cwd=ROOT,
        env={**os.environ, "FUZZ_EXAMPLES": str(examples)},
        capture_output=True,
        text=True,
        check=False,
    )
    last = (done.stdout.strip().splitlines() or ["(no output)"])[-1]
    print(
        f"fuzz: {examples} examples per property over the webhook intake, the REST API "
        f"(schemathesis), the Action's inputs, the MCP tools, the commands and the config "
        f"loader: {last} in {time.perf_counter() - started:.0f} s"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--soak-seconds", type=float, default=60)
    parser.add_argument("--rate", type=float, default=200)
    parser.add_argument("--slow", type=int, default=3000, help="slow connections")
    parser.add_argument("--sessions", type=int, default=3000, help="MCP sessions to open")
    parser.add_argument("--kills", type=int, default=3, help="SIGKILLs mid-stream")
    parser.add_argument("--deliveries", type=int, default=20000, help="for the kill -9 run")
    parser.add_argument("--fuzz-examples", type=int, default=500)
    parser.add_argument("--only", default="soak,bodies,slow,sessions,kill,fuzz")
    args = parser.parse_args()
    parts = set(args.only.split(","))
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        app = App(tmp, "main")
        try:
            print(
                f"pipeline-bot serve on 127.0.0.1:{app.port}, RSS {app.memory()['VmRSS']:.0f} MiB"
            )
            if "soak" in parts:
                asyncio.run(soak(app, args.soak_seconds, args.rate))
            if "slow" in parts:
                asyncio.run(slow_bodies(app, args.slow, timeout=10))
        finally:
            app.stop()
        if "bodies" in parts:
            big_bodies(lambda name: App(tmp, name))
        if "sessions" in parts:
            limited = App(tmp, "sessions", PIPELINE_BOT_MCP_SESSION_IDLE_TIMEOUT="10")
            try:
                sessions(limited, args.sessions, idle=10, limit=200)
            finally:
                limited.stop()
        if "kill" in parts:
            kill_restart(tmp, args.deliveries, args.kills)
    if "fuzz" in parts:
        long_fuzz(args.fuzz_examples)


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    main()
