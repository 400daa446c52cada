"""Streamable HTTP for the MCP server: loopback by default, Host/Origin checks against DNS
rebinding, and a bearer token (PIPELINE_BOT_MCP_TOKEN) required whenever it is set, and always
when the server binds anything but loopback."""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from mcp.server.mcpserver import MCPServer
from mcp.server.transport_security import TransportSecuritySettings

from pipeline_bot.errors import PipelineBotError

LOOPBACK = ("127.0.0.1", "localhost", "::1")
Scope = MutableMapping[str, Any]
ASGI = Callable[
    [Scope, Callable[[], Awaitable[Any]], Callable[[Any], Awaitable[None]]], Awaitable[None]
]


def check_binding(host: str, token: str | None) -> None:
    if host not in LOOPBACK and not token:
        raise PipelineBotError(
            f"refusing to serve MCP on {host} without a token: set PIPELINE_BOT_MCP_TOKEN (clients "
            "then send `Authorization: Bearer <token>`), or bind 127.0.0.1"
        )


def security(host: str, port: int) -> TransportSecuritySettings:
    hosts = [f"{h}:{port}" for h in ("127.0.0.1", "localhost", "[::1]")]
    origins = [f"http://{h}" for h in hosts]
    if host not in LOOPBACK:
        hosts.append(f"{host}:{port}")
        origins += [f"http://{host}:{port}", f"https://{host}:{port}"]
    return TransportSecuritySettings(
        enable_dns_rebinding_protection=True, allowed_hosts=hosts, allowed_origins=origins
    )


class BearerToken:
    """ASGI middleware: every HTTP request needs `Authorization: Bearer <token>`."""

    def __init__(self, app: ASGI, token: str) -> None:
        self.app = app
        self.expected = f"Bearer {token}".encode()

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            given = dict(scope.get("headers") or []).get(b"authorization", b"")
            if not hmac.compare_digest(given, self.expected):
                await send(
                    {
                        "type": "http.response.start",
                        "status": 401,
                        "headers": [
                            (b"content-type", b"application/json"),
                            (b"www-authenticate", b'Bearer realm="pipeline-bot"'),
                        ],
                    }
                )
                await send(
                    {
                        "type": "http.response.body",
                        "body": b'{"error": "a valid bearer token is required"}',
                    }
                )
                return
        await self.app(scope, receive, send)


def http_app(server: MCPServer, *, host: str, port: int, token: str | None) -> Any:
    check_binding(host, token)
    app: Any = server.streamable_http_app(transport_security=security(host, port), host=host)
    return BearerToken(app, token) if token else app


def serve(server: MCPServer, *, host: str, port: int, token: str | None) -> None:
    import uvicorn

    uvicorn.run(
        http_app(server, host=host, port=port, token=token),
        host=host,
        port=port,
        log_level="warning",
    )
