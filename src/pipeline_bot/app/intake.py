"""POST /webhooks: verify, store durably, acknowledge. The work happens in the worker thread.

Order of checks: size (413), signature (401: nothing stored, nothing of the payload logged),
headers and JSON (400), then one insert under X-GitHub-Delivery before the 202. A redelivery
finds its row and is acknowledged as a duplicate; an event the App does not handle is stored as
`ignored`. On SQLite the insert runs on the event loop (tens of microseconds; checkpoints are the
worker's job); on a server database it runs in a thread.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
import time
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from pipeline_bot.app import metrics
from pipeline_bot.app.handlers import handled

MAX_BODY = 25 * 1024 * 1024  # GitHub caps payloads at 25 MB
_ID = re.compile(r"^[A-Za-z0-9-]{1,64}$")
_EVENT = re.compile(r"^[a-z_]{1,64}$")
log = logging.getLogger("pipeline_bot.app")


def _answer(code: int, event: str, outcome: str, started: float, **body: Any) -> JSONResponse:
    metrics.DELIVERIES.labels(event, outcome).inc()
    metrics.INTAKE_SECONDS.observe(time.perf_counter() - started)
    return JSONResponse(body, status_code=code)


def router(secret: bytes) -> APIRouter:
    api = APIRouter()

    @api.post("/webhooks", include_in_schema=False)
    async def webhooks(request: Request) -> JSONResponse:
        started = time.perf_counter()
        headers = request.headers
        length = headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > MAX_BODY):
            return _answer(413, "-", "rejected", started, error="the body is over 25 MB")
        body = await request.body()
        if len(body) > MAX_BODY:
            return _answer(413, "-", "rejected", started, error="the body is over 25 MB")
        signature = headers.get("x-hub-signature-256", "")
        expected = "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(signature.encode(), expected.encode()):
            log.warning(
                "rejected a delivery with a %s signature (delivery header %r)",
                "wrong" if signature else "missing",
                headers.get("x-github-delivery", "")[:64],
            )
            return _answer(
                401,
                "-",
                "rejected",
                started,
                error="the X-Hub-Signature-256 signature is missing or wrong",
            )
        event = headers.get("x-github-event", "")
        delivery = headers.get("x-github-delivery", "")
        if not _EVENT.match(event) or not _ID.match(delivery):
            return _answer(
                400,
                "-",
                "rejected",
                started,
                error="X-GitHub-Event and X-GitHub-Delivery headers are required",
            )
        try:
            payload = json.loads(body)
        except ValueError:
            return _answer(400, event, "rejected", started, error="the body is not JSON")
        if not isinstance(payload, dict):
            return _answer(400, event, "rejected", started, error="the body is not a JSON object")
        action = payload.get("action") if isinstance(payload.get("action"), str) else None
        installation = (payload.get("installation") or {}).get("id")
        repository = (payload.get("repository") or {}).get("full_name")
        is_handled = handled(event, action)
        args = (
            delivery,
            event,
            action,
            installation if isinstance(installation, int) else None,
            repository if isinstance(repository, str) else None,
            body,
        )
        store = request.app.state.deliveries
        if store.sqlite:
            fresh = store.accept(*args, handled=is_handled)
        else:
            fresh = await run_in_threadpool(lambda: store.accept(*args, handled=is_handled))
        if not fresh:
            return _answer(202, event, "duplicate", started, delivery=delivery, status="duplicate")
        if not is_handled:
            return _answer(202, event, "ignored", started, delivery=delivery, status="ignored")
        request.app.state.worker.wake.set()
        return _answer(202, event, "accepted", started, delivery=delivery, status="queued")

    return api
