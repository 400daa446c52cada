"""Benchmark: the App as 1, 2 and 4 replicas sharing one PostgreSQL, and the queue's own ceiling.

1. Deliveries/s end to end: N `pipeline-bot serve` processes on loopback share a PostgreSQL of
   this script's own. A load generator sends --deliveries signed `ping` deliveries (each naming
   one of --lanes pull requests, so lanes are in play) over --connections keep-alive connections
   handed round-robin to the replicas, and the clock stops when the database says every one is
   done. Deliveries/s = deliveries / that time; printed with the ratio to one replica (goal on
   2 shared cores: 2 replicas >= 0.9x one, no collapse). `ping` has no GitHub work, so what is
   measured is intake, queue and worker, the part replicas share.
2. Claims/s the queue sustains: --claims deliveries stored beforehand, then --claimers processes
   each claim and finish them through DeliveryStore until none is left (goal >= 5,000/s): the
   ceiling every replica shares. Measured for each --batch size the way the App's worker does it
   (`claim_many` of up to that many, as a worker with that many free threads, then
   `finish_many` of the batch: one commit), and one at a time (`claim`, `finish`), with the
   ratio; then each with pgbench, PostgreSQL's own C client running the claim function and one
   finishing statement: the database's ceiling, without Python's cost per call. A short
   untimed run of each comes first (a fresh server's caches, the claim function's plans).

    python bench/replicas.py [--deliveries 3000] [--lanes 50] [--connections 16]
                             [--claims 20000] [--claimers 4] [--batch 4,32] [--rounds 3]
                             [--only all|deliveries|claims]

Each figure is the median of --rounds runs; the load applied and the machine's load average
(other people's work shares these cores) are printed with them.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import json
import multiprocessing
import os
import pwd
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sqlalchemy import create_engine, text
from tests.app_harness import SECRET, private_key
from tests.replicas import Replica, free_port

from pipeline_bot.integrations.deliveries import DeliveryStore, NewDelivery, Outcome

# a claim of up to BATCH deliveries, then one statement finishing them
PGBENCH_SCRIPT = (
    "SELECT coalesce(string_agg(id, ','), '') AS claimed "
    "FROM pipeline_bot_claim_deliveries('pgbench', 60, BATCH, NULL) \\gset\n"
    "UPDATE app_deliveries AS d SET status = 'done', claimed_by = NULL, lease_until = NULL "
    "FROM unnest(string_to_array(:claimed, ',')) AS o(id) WHERE d.id = o.id;\n"
)
TABLES = "app_deliveries, app_installations, app_github_deployments, app_status_comments"


# ----------------------------------------------------------------------- PostgreSQL


def start_postgres(root: Path) -> tuple[subprocess.Popen[bytes], str]:
    bins = sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)
    if not bins:
        raise SystemExit("PostgreSQL is missing: `apt-get install -y postgresql`")
    user = "postgres" if os.geteuid() == 0 else None  # initdb refuses to run as root
    if user:
        account = pwd.getpwnam(user)
        shutil.chown(root, account.pw_uid, account.pw_gid)
    subprocess.run(
        [str(bins[0] / "initdb"), "-D", str(root / "data"), "-A", "trust", "-U", "pb"],
        user=user,
        check=True,
        capture_output=True,
    )
    port = free_port()
    proc = subprocess.Popen(
        [
            *(str(bins[0] / "postgres"), "-D", str(root / "data"), "-p", str(port)),
            *("-k", str(root), "-c", "listen_addresses=127.0.0.1", "-c", "max_connections=200"),
        ],
        user=user,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"postgresql+psycopg://pb@127.0.0.1:{port}/postgres"
    deadline = time.monotonic() + 30
    while True:
        try:
            create_engine(url).connect().close()
            return proc, url
        except Exception:  # noqa: BLE001 - not up yet
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("PostgreSQL did not start") from None
            time.sleep(0.1)  # waiting for the server, with a deadline


def clean(url: str) -> None:
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text(f"DROP TABLE IF EXISTS {TABLES} CASCADE"))
    engine.dispose()


def count_done(url: str) -> int:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return int(
                conn.execute(
                    text("SELECT count(*) FROM app_deliveries WHERE status = 'done'")
                ).scalar_one()
            )
    finally:
        engine.dispose()


# ----------------------------------------------------------------------- deliveries/s


def request(i: int, lanes: int, port: int) -> bytes:
    body = json.dumps(
        {
            "zen": "Design for failure.",
            "hook_id": i,
            "number": 1 + i % lanes,
            "repository": {"full_name": "bench/replicas"},
            "installation": {"id": 1},
        }
    ).encode()
    signature = "sha256=" + hmac.new(SECRET, body, hashlib.sha256).hexdigest()
    return (
        f"POST /webhooks HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
        f"X-GitHub-Event: ping\r\nX-GitHub-Delivery: bench-{i}\r\n"
        f"X-Hub-Signature-256: {signature}\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode() + body


async def send_all(ports: list[int], total: int, lanes: int, connections: int) -> None:
    queue = list(range(total))

    async def client(n: int) -> None:
        port = ports[n % len(ports)]  # round-robin: connection n to replica n mod N
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        while queue:
            i = queue.pop()
            writer.write(request(i, lanes, port))
            headers = await reader.readuntil(b"\r\n\r\n")
            if not headers.startswith(b"HTTP/1.1 202"):
                raise RuntimeError(f"unexpected answer: {headers[:60]!r}")
            length = next(
                int(h.split(b":", 1)[1])
                for h in headers.split(b"\r\n")
                if h.lower().startswith(b"content-length:")
            )
            await reader.readexactly(length)
        writer.close()

    await asyncio.gather(*(client(n) for n in range(connections)))


def deliveries_per_second(url: str, replicas: int, args: argparse.Namespace, logs: Path) -> float:
    clean(url)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GITHUB_", "PIPELINE_BOT_"))}
    env.update(
        GITHUB_APP_ID="1",
        GITHUB_APP_PRIVATE_KEY=private_key(),
        GITHUB_WEBHOOK_SECRET=SECRET.decode(),
        PIPELINE_BOT_DATABASE_URL=url,
        PIPELINE_BOT_CACHE_DIR=str(logs / "cache"),
        PIPELINE_BOT_RISK_MODEL="rules",
    )
    started = [Replica(env, logs / f"r{replicas}-{i}.log") for i in range(replicas)]
    try:
        for r in started:
            r.start()
        for r in started:
            r.wait_up()
        begin = time.perf_counter()
        asyncio.run(
            send_all([r.port for r in started], args.deliveries, args.lanes, args.connections)
        )
        while count_done(url) < args.deliveries:
            if any(r.proc is not None and r.proc.poll() is not None for r in started):
                raise SystemExit(f"a replica stopped; see {logs}")
            time.sleep(0.02)  # polling the database for the end, not a timed wait
        return args.deliveries / (time.perf_counter() - begin)
    finally:
        for r in started:
            r.stop()


# ----------------------------------------------------------------------- claims/s


def claimer(url: str, owner: str, batch: int, start: Any, counts: Any, index: int) -> None:
    """Claim and finish until nothing is left. `batch` > 1: as the App's worker does with that
    many free threads, a batch claimed in one call and its outcomes written in one commit;
    1: one delivery at a time (`claim`, `finish`), as before batches."""
    store = DeliveryStore(url, owner=owner)
    store.depth()  # connected
    start.wait()  # every claimer ready: the clock starts
    done = 0
    while True:
        if batch == 1:
            one = store.claim()
            claimed = [one] if one is not None else []
        else:
            claimed = store.claim_many(batch)
        if not claimed:
            if store.depth() == 0:  # none left: not merely held by the other claimers
                break
            continue
        if batch == 1:
            store.finish(claimed[0].id, "done", held_by=claimed[0].claimed_by)
        else:
            store.finish_many([Outcome(d.id, "done", held_by=d.claimed_by) for d in claimed])
        done += len(claimed)
    counts[index] = done
    store.close()


def fsync_ms(folder: Path) -> float:
    """This disk's time for one 8 KiB write made durable (a commit waits for one), median of 50."""
    path = folder / "fsync-probe"
    times = []
    with path.open("wb") as f:
        for _ in range(50):
            begin = time.perf_counter()
            f.write(b"\0" * 8192)
            f.flush()
            os.fsync(f.fileno())
            times.append(time.perf_counter() - begin)
    path.unlink()
    return statistics.median(times) * 1000


def claims_per_second(url: str, args: argparse.Namespace, batch: int) -> float:
    clean(url)
    store = DeliveryStore(url, owner="bench-seed")
    items = [
        NewDelivery(f"c{i}", "ping", None, 1, "bench/claims", b"{}", True, f"bench#{i % 500}")
        for i in range(args.claims)
    ]
    for i in range(0, len(items), 1000):
        store.accept_many(items[i : i + 1000])
    store.close()
    context = multiprocessing.get_context("spawn")
    start = context.Barrier(args.claimers + 1)
    counts = context.Array("i", args.claimers)
    procs = [
        context.Process(target=claimer, args=(url, f"bench-{n}", batch, start, counts, n))
        for n in range(args.claimers)
    ]
    for p in procs:
        p.start()
    start.wait()  # the claimers' imports and connections are done
    begin = time.perf_counter()
    for p in procs:
        p.join()
    elapsed = time.perf_counter() - begin
    if sum(counts) != args.claims:
        raise SystemExit(f"claimed {sum(counts)} of {args.claims}")
    return args.claims / elapsed


def pgbench_ceiling(url: str, args: argparse.Namespace, root: Path, batch: int) -> float | None:
    """Claims/s with PostgreSQL's own C client (pgbench, --claimers connections for 10 s), each
    transaction of the script the claim function for `batch` deliveries, then one finishing
    statement for them all: the database's ceiling, without Python's cost per call. None when
    pgbench is not installed."""
    pgbench = next(
        iter(sorted(Path("/usr/lib/postgresql").glob("*/bin/pgbench"), reverse=True)), None
    )
    if pgbench is None:
        return None
    clean(url)
    store = DeliveryStore(url, owner="bench-seed")
    total = args.claims * (4 if batch == 1 else 10)  # enough that 10 s never runs out
    for i in range(0, total, 1000):
        store.accept_many(
            [
                NewDelivery(
                    f"p{n}", "ping", None, 1, "bench/claims", b"{}", True, f"bench#{n % 500}"
                )
                for n in range(i, min(total, i + 1000))
            ]
        )
    store.close()
    script = root / f"claim-{batch}.sql"
    # the finishing statement joins the ids to the table as DeliveryStore.finish_many does
    # (`id = ANY(...)` lets a prepared statement's generic plan scan the whole table)
    script.write_text(PGBENCH_SCRIPT.replace("BATCH", str(batch)))
    host, port = url.rsplit("@", 1)[1].split("/", 1)[0].split(":")
    done = subprocess.run(
        [
            *(str(pgbench), "-n", "-M", "prepared", "-h", host, "-p", port, "-U", "pb"),
            *("-c", str(args.claimers), "-j", "2", "-T", "10", "-f", str(script), "postgres"),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    tps = transactions = None
    for line in done.stdout.splitlines():
        if line.startswith("tps = "):
            tps = float(line.split()[2])
        if line.startswith("number of transactions actually processed:"):
            transactions = int(line.split(":")[1].split("/")[0])
    if not (tps and transactions):
        return None
    # claims per transaction as they happened (a batch may come short of `batch`)
    return tps * count_done(url) / transactions


# ----------------------------------------------------------------------- main


def replicas_section(url: str, args: argparse.Namespace, counts: list[int], logs: Path) -> None:
    print(
        f"load: {args.deliveries} signed ping deliveries over {args.lanes} lanes, "
        f"{args.connections} connections round-robin over the replicas, 4 worker threads "
        f"each; load average {os.getloadavg()[0]:.1f}"
    )
    rates: dict[int, list[float]] = {n: [] for n in counts}
    for _ in range(args.rounds):  # alternating, so the machine's noise falls on all
        for n in counts:
            rates[n].append(deliveries_per_second(url, n, args, logs))
    base = statistics.median(rates[counts[0]])
    for n in counts:
        median = statistics.median(rates[n])
        runs = ", ".join(f"{r:.0f}" for r in rates[n])
        print(
            f"{n} replica{'s' if n > 1 else ' '}: {median:7.0f} deliveries/s "
            f"({median / base:.2f}x one; runs {runs})"
        )


def claims_section(url: str, args: argparse.Namespace, root: Path) -> None:
    batches = [int(n) for n in args.batch.split(",")]
    sizes = " and ".join(str(n) for n in batches)
    print(
        f"load: {args.claims} stored deliveries over 500 lanes, {args.claimers} claimer "
        f"processes each claiming and finishing until none is left: in batches of up to {sizes} "
        "(claim_many + finish_many, as the App's worker with that many free threads, "
        "PIPELINE_BOT_APP_WORKERS: one call claims a batch, one commit writes its outcomes) and "
        "one at a time (claim + finish, a commit each); a durable write takes "
        f"{fsync_ms(root):.1f} ms on this disk (each finishing commit waits for one); load "
        f"average {os.getloadavg()[0]:.1f}"
    )
    rates: dict[int, list[float]] = {n: [] for n in [*batches, 1]}
    warm = argparse.Namespace(**{**vars(args), "claims": min(args.claims, 2000)})
    for n in rates:  # a fresh server's caches and the claim function's plans, not timed
        claims_per_second(url, warm, n)
    for _ in range(args.rounds):  # alternating, so the machine's noise falls on all
        for n in rates:
            rates[n].append(claims_per_second(url, args, n))
    single = statistics.median(rates[1])
    for n, runs in rates.items():
        name = f"in batches of {n}" if n > 1 else "one at a time"
        listed = ", ".join(f"{c:.0f}" for c in runs)
        ratio = f"{statistics.median(runs) / single:.1f}x one at a time; " if n > 1 else ""
        print(
            f"queue: {statistics.median(runs):7.0f} claims/s {name} (claim + finish; "
            f"{ratio}runs {listed})"
        )
    for n, runs in rates.items():
        ceiling = pgbench_ceiling(url, args, root, n)
        if ceiling is None:
            print("pgbench is not installed: no ceiling measured")
            return
        name = f"in batches of {n}" if n > 1 else "one at a time"
        print(
            f"pgbench: {ceiling:7.0f} claims/s {name} ({args.claimers} connections, the claim "
            "function and one finishing statement from PostgreSQL's C client: the database's "
            f"own ceiling); through DeliveryStore {statistics.median(runs) / ceiling:.2f}x it"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--deliveries", type=int, default=3000)
    parser.add_argument("--lanes", type=int, default=50)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--claims", type=int, default=20000)
    parser.add_argument("--claimers", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--replicas", default="1,2,4")
    parser.add_argument(
        "--batch",
        default="4,32",
        help="batch sizes to measure, comma-separated: deliveries claimed in one call and "
        "finished in one commit (a worker's free threads; the App's default is 4)",
    )
    parser.add_argument("--only", choices=("all", "deliveries", "claims"), default="all")
    args = parser.parse_args()
    counts = [int(n) for n in args.replicas.split(",")]
    root = Path(tempfile.mkdtemp(prefix="pb-bench-replicas-"))
    postgres, url = start_postgres(root)
    logs = root / "logs"
    logs.mkdir()
    try:
        print(f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at start")
        if args.only in ("all", "deliveries"):
            replicas_section(url, args, counts, logs)
        if args.only in ("all", "claims"):
            claims_section(url, args, root)
        print(f"load average at the end: {os.getloadavg()[0]:.1f}")
    finally:
        postgres.send_signal(signal.SIGINT)  # fast shutdown: clients are disconnected
        try:
            postgres.wait(30)
        except subprocess.TimeoutExpired:
            postgres.kill()
            postgres.wait()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
