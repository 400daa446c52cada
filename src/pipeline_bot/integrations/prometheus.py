"""Prometheus through `prometheus-api-client`: instant queries at an explicit time.

Errors name the server and Prometheus's own explanation (a parse error, a timeout); credentials
(a bearer token, basic auth) are sent as headers and never appear in a message.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import requests
from prometheus_api_client.exceptions import PrometheusApiClientException
from prometheus_api_client.prometheus_connect import PrometheusConnect
from urllib3.util.retry import Retry

from pipeline_bot.errors import IntegrationError
from pipeline_bot.models import MetricSample, MetricSeries
from pipeline_bot.redaction import safe_url


class PrometheusMetrics:
    """MetricsPort over one Prometheus (or Thanos, Mimir, VictoriaMetrics) query API."""

    def __init__(
        self,
        url: str,
        *,
        token: str | None = None,
        basic_auth: tuple[str, str] | None = None,
        headers: dict[str, str] | None = None,
        verify_tls: bool = True,
        ca_file: str | None = None,
        timeout: float = 10.0,
    ) -> None:
        self.url = url.rstrip("/")
        all_headers = dict(headers or {})
        if token:
            all_headers["Authorization"] = f"Bearer {token}"
        # the client's own annotations say int and non-optional where it takes None and floats
        options: dict[str, Any] = {
            "headers": all_headers or None,
            "auth": basic_auth,
            "timeout": timeout,
        }
        if ca_file:  # a private CA: verify against it instead of the system's
            session = requests.Session()
            session.verify = ca_file
            options["session"] = session
        self._prom = PrometheusConnect(
            url=self.url,
            disable_ssl=not verify_tls,
            **options,
            retry=Retry(
                total=2,
                backoff_factor=0.2,
                status_forcelist=(502, 503, 504),
                allowed_methods=("GET",),
            ),
        )

    def _call(self, fn: Callable[[], Any]) -> Any:
        """Prometheus's own error (a parse error, a timeout) or the transport's, as one line."""
        try:
            return fn()
        except PrometheusApiClientException as exc:
            code = re.search(r"HTTP Status Code (\d{3})", str(exc))
            raise IntegrationError(
                f"Prometheus at {safe_url(self.url)} rejected the query: {_prometheus_error(exc)}",
                service="prometheus",
                status=int(code.group(1)) if code else None,  # 400, 422: the query is wrong
            ) from None
        except requests.exceptions.RequestException as exc:
            raise IntegrationError(
                f"Prometheus at {safe_url(self.url)} is unreachable: {type(exc).__name__}",
                service="prometheus",
            ) from None

    def query(self, promql: str, *, at: datetime | None = None) -> list[MetricSample]:
        """Instant query; NaN and infinite values are left out (they are no data)."""
        params: dict[str, Any] = {"time": at.timestamp()} if at else {}
        return _samples(self._call(lambda: self._prom.custom_query(query=promql, params=params)))

    def query_range(
        self, promql: str, *, start: datetime, end: datetime, step: str = "30s"
    ) -> list[MetricSeries]:
        """Range query: each series with its (time, value) points; NaN points are left out."""
        result = self._call(
            lambda: self._prom.custom_query_range(
                query=promql, start_time=start, end_time=end, step=step
            )
        )
        out = []
        for item in result or []:
            points = [
                (datetime.fromtimestamp(float(t), tz=UTC), float(v))
                for t, v in item.get("values") or []
                if math.isfinite(float(v))
            ]
            out.append(MetricSeries(labels=dict(item.get("metric") or {}), points=points))
        return out


def _samples(result: Any) -> list[MetricSample]:
    if isinstance(result, list) and len(result) == 2 and not isinstance(result[0], dict):
        result = [{"metric": {}, "value": result}]  # a scalar
    out = []
    for item in result or []:
        value = float(item.get("value", [0, "NaN"])[1])
        if math.isfinite(value):
            out.append(MetricSample(labels=dict(item.get("metric") or {}), value=value))
    return out


def _prometheus_error(exc: PrometheusApiClientException) -> str:
    """The `error` field of Prometheus's JSON answer, without the rest of the response. The client
    words its exception `HTTP Status Code 400 (b'{...}')`: the body is the repr of bytes."""
    import ast
    import json

    text = str(exc)
    body: Any = None
    quoted = re.search(r"\((b'.*'|b\".*\")\)\s*$", text, re.DOTALL)
    if quoted:
        try:
            body = json.loads(ast.literal_eval(quoted.group(1)))
        except (ValueError, SyntaxError):
            body = None
    if body is None and "{" in text:
        try:
            body, _ = json.JSONDecoder().raw_decode(text[text.find("{") :])
        except ValueError:
            body = None
    if isinstance(body, dict) and body.get("error"):
        return " ".join(f"{body.get('errorType', 'error')}: {body['error']}".split())
    return text.splitlines()[0] if text else "unknown error"
