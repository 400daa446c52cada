"""Benchmark: webhook intake of `pipeline-bot serve` against a minimal FastAPI endpoint.

Both servers run as their own processes on 127.0.0.1 on the same stack (uvicorn with uvloop and
httptools when installed). The minimal one only verifies the HMAC signature and answers 202; the
App verifies, parses, stores the delivery durably in SQLite and answers 202. A separate
load-generating process (this script with --load) sends signed deliveries of a real pull_request
payload (npm @octokit/webhooks-examples, `closed`, 24 KB: stored and acknowledged like every
delivery, but not a job for the worker, so the measurement is the intake) over keep-alive
connections, each with its own X-GitHub-Delivery:

  1. throughput: --connections clients sending back to back for --seconds;
  2. latency: an open loop at --rate deliveries/s for --seconds, p50/p99 acknowledgement time.

Prints both figures for both servers and the App's throughput ratio (target >= 0.6) and p99 at
200/s (target < 5 ms).

    python bench/webhooks.py [--seconds 5] [--rate 200] [--connections 8] [--rounds 3]

This machine's noise moves one round's figures by several percent, so each server runs --rounds
times, alternating, and the medians are compared.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

ROOT = Path(__file__).resolve().parent.parent
SECRET = b"bench-webhook-secret"
EXAMPLES = ROOT / "tests/npm/node_modules/@octokit/webhooks-examples/api.github.com/index.json"


def payload() -> bytes:
    index = {e["name"]: e["examples"] for e in json.loads(EXAMPLES.read_text())}
    closed = next(e for e in index["pull_request"] if e["action"] == "closed")
    return json.dumps(closed).encode()


# ----------------------------------------------------------------------- the minimal server


def minimal_app() -> FastAPI:
    app = FastAPI()

    @app.post("/webhooks")
    async def webhooks(request: Request) -> JSONResponse:
        body = await request.body()
        expected = "sha256=" + hmac.new(SECRET, body, hashlib.sha256).hexdigest()
        given = request.headers.get("x-hub-signature-256", "")
        if not hmac.compare_digest(given.encode(), expected.encode()):
            return JSONResponse({"error": "bad signature"}, status_code=401)
        return JSONResponse({"status": "ok"}, status_code=202)

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    return app


def run_minimal(port: int) -> None:
    import importlib.util

    import uvicorn

    loop = "uvloop" if importlib.util.find_spec("uvloop") else "asyncio"
    http = "httptools" if importlib.util.find_spec("httptools") else "h11"
    uvicorn.run(
        minimal_app(),
        host="127.0.0.1",
        port=port,
        loop=loop,
        http=http,
        log_level="warning",
        access_log=False,
    )


# ----------------------------------------------------------------------- the load generator


def request_bytes(body: bytes, port: int) -> tuple[bytes, bytes]:
    signature = "sha256=" + hmac.new(SECRET, body, hashlib.sha256).hexdigest()
    head = (
        f"POST /webhooks HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
        f"User-Agent: GitHub-Hookshot/bench\r\nX-GitHub-Event: pull_request\r\n"
        f"X-Hub-Signature-256: {signature}\r\nContent-Length: {len(body)}\r\n"
        "X-GitHub-Delivery: "
    ).encode()
    return head, b"\r\n\r\n" + body


async def one(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, head: bytes, tail: bytes
) -> None:
    writer.write(head + str(uuid.uuid4()).encode() + tail)
    headers = await reader.readuntil(b"\r\n\r\n")
    if not headers.startswith(b"HTTP/1.1 202"):
        raise RuntimeError(f"unexpected answer: {headers[:60]!r}")
    length = 0
    for line in headers.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    await reader.readexactly(length)


async def throughput(port: int, body: bytes, seconds: float, connections: int) -> dict[str, float]:
    head, tail = request_bytes(body, port)
    done = 0
    stop = time.perf_counter() + seconds

    async def client() -> None:
        nonlocal done
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        while time.perf_counter() < stop:
            await one(reader, writer, head, tail)
            done += 1
        writer.close()

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(connections)))
    return {"per_second": done / (time.perf_counter() - started), "deliveries": done}


async def at_rate(port: int, body: bytes, seconds: float, rate: float) -> dict[str, float]:
    head, tail = request_bytes(body, port)
    idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
    latencies: list[float] = []

    async def send() -> None:
        conn = idle.pop() if idle else await asyncio.open_connection("127.0.0.1", port)
        started = time.perf_counter()
        await one(*conn, head, tail)
        latencies.append(time.perf_counter() - started)
        idle.append(conn)

    for _ in range(8):
        idle.append(await asyncio.open_connection("127.0.0.1", port))
    tasks = []
    begin = time.perf_counter()
    total = int(seconds * rate)
    for i in range(total):
        delay = begin + i / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)  # the open loop's schedule, not a wait for a result
        tasks.append(asyncio.create_task(send()))
    await asyncio.gather(*tasks)
    latencies.sort()
    return {
        "p50_ms": statistics.median(latencies) * 1000,
        "p99_ms": latencies[int(len(latencies) * 0.99) - 1] * 1000,
        "deliveries": len(latencies),
    }


def load(port: int, seconds: float, rate: float, connections: int) -> None:
    body = payload()
    result = {"bytes": len(body)}
    result.update(asyncio.run(throughput(port, body, seconds, connections)))
    result.update(asyncio.run(at_rate(port, body, seconds, rate)))
    print(json.dumps(result))


# ----------------------------------------------------------------------- orchestration


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_up(port: int, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while True:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2).close()
            return
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"server on {port} did not start") from None
            time.sleep(0.05)  # waiting for the server with a deadline


def measure(
    name: str, command: list[str], env: dict[str, str], port: int, args: argparse.Namespace
) -> dict[str, float]:
    """One round: start the server, run the load generator against it, stop the server."""
    server = subprocess.Popen(command, env=env)
    try:
        wait_up(port, server)
        out = subprocess.run(
            [
                sys.executable,
                __file__,
                "--load",
                str(port),
                "--seconds",
                str(args.seconds),
                "--rate",
                str(args.rate),
                "--connections",
                str(args.connections),
            ],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
    finally:
        server.terminate()
        server.wait(timeout=30)
    result: dict[str, float] = json.loads(out)
    print(
        f"{name:<22} {result['per_second']:8.0f} deliveries/s   at {args.rate:.0f}/s: "
        f"p50 {result['p50_ms']:.2f} ms  p99 {result['p99_ms']:.2f} ms"
    )
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--rate", type=float, default=200)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--load", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--minimal-server", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.minimal_server:
        run_minimal(args.minimal_server)
        return
    if args.load:
        load(args.load, args.seconds, args.rate, args.connections)
        return
    from tests.app_harness import private_key

    print(
        f"payload: {len(payload())} bytes; {args.connections} connections; {args.seconds} s per "
        f"phase; {args.rounds} rounds, the two servers alternating"
    )
    base_runs, app_runs = [], []
    with tempfile.TemporaryDirectory() as tmp:
        env = dict(os.environ)
        env.update(
            GITHUB_APP_ID="1",
            GITHUB_APP_PRIVATE_KEY=private_key(),
            GITHUB_WEBHOOK_SECRET=SECRET.decode(),
            GITHUB_API_URL="http://127.0.0.1:9/api/v3",  # never called: nothing is worked
        )
        for round_ in range(args.rounds):
            port = free_port()
            minimal = [sys.executable, __file__, "--minimal-server", str(port)]
            base_runs.append(measure("minimal FastAPI+HMAC", minimal, dict(os.environ), port, args))
            env["PIPELINE_BOT_DATABASE_URL"] = f"sqlite:///{tmp}/bench-{round_}.db"
            port = free_port()
            serve = [
                str(Path(sys.executable).parent / "pipeline-bot"),
                "serve",
                "--port",
                str(port),
            ]
            app_runs.append(measure("pipeline-bot (durable)", serve, env, port, args))
            for leftover in Path(tmp).glob(f"bench-{round_}.db*"):  # rounds start alike
                if leftover.is_dir():
                    shutil.rmtree(leftover)
                else:
                    leftover.unlink()
    base = statistics.median(r["per_second"] for r in base_runs)
    app = statistics.median(r["per_second"] for r in app_runs)
    p99 = statistics.median(r["p99_ms"] for r in app_runs)
    print(f"medians: minimal {base:.0f} deliveries/s, pipeline-bot {app:.0f} deliveries/s")
    print(
        f"throughput ratio {app / base:.2f} (target >= 0.6); pipeline-bot p99 at "
        f"{args.rate:.0f}/s {p99:.2f} ms (target < 5)"
    )


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    main()
