"""`python -m tests.kubeapi [--port N]`: run the Kubernetes API test server until SIGTERM.

Prints `READY http://127.0.0.1:PORT` on stdout once it accepts connections.
"""

from __future__ import annotations

import argparse
import json
import signal
import threading

from tests.kubeapi.server import ApiServer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--pod-ready-seconds", type=float, default=0.2)
    parser.add_argument(
        "--faults",
        type=json.loads,
        default={},
        help='failures to model from the start, as JSON: {"watch_close_seconds": 1} '
        "(see tests/kubeapi/faults.py; POST /__control/faults changes them)",
    )
    args = parser.parse_args()
    server = ApiServer(args.port, pod_ready_seconds=args.pod_ready_seconds, faults=args.faults)
    server.start()
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())
    print(f"READY http://127.0.0.1:{server.port}", flush=True)
    done.wait()
    server.stop()


if __name__ == "__main__":
    main()
