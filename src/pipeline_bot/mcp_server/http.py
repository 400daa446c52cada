"""Streamable HTTP for the MCP server, and the guard every token-protected HTTP entry of the App
shares: loopback by default; the bearer token, then Host and Origin (against DNS rebinding), then
a body capped in size and time, all before the wrapped app reads a byte.

A token (PIPELINE_BOT_MCP_TOKEN) is required whenever it is set, and always when the server binds
anything but loopback; a short one refuses to start. Remote hosts are served once they are
allowed (PIPELINE_BOT_MCP_ALLOWED_HOSTS, or the App's PIPELINE_BOT_PUBLIC_URL); loopback stays
allowed and protected. Idle sessions expire and their number is bounded.
"""

from __future__ import annotations

import asyncio
import hmac
import sys
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from pipeline_bot.errors import PipelineBotError

if TYPE_CHECKING:  # the SDK loads in half a second: only where a transport is built
    from mcp.server.mcpserver import MCPServer
    from mcp.server.transport_security import TransportSecuritySettings

    from pipeline_bot.settings import Settings

LOOPBACK = ("127.0.0.1", "localhost", "::1")
WILDCARD = ("0.0.0.0", "::", "")  # noqa: S104 - names of the wildcard bind, compared against
MIN_TOKEN = 16
Scope = MutableMapping[str, Any]
ASGI = Callable[
    [Scope, Callable[[], Awaitable[Any]], Callable[[Any], Awaitable[None]]], Awaitable[None]
]


@dataclass(frozen=True)
class HttpOptions:
    """Limits and allowed names of an HTTP entry (defaults: the settings' defaults)."""

    max_body: int = 1024 * 1024
    body_timeout: float = 10.0
    session_idle_timeout: float = 600.0
    max_sessions: int = 200
    allowed_hosts: tuple[str, ...] = ()
    allowed_origins: tuple[str, ...] = ()

    @classmethod
    def from_settings(cls, settings: Settings) -> HttpOptions:
        hosts = _split(settings.mcp_allowed_hosts)
        origins = _split(settings.mcp_allowed_origins)
        if settings.public_url:
            public = urlsplit(settings.public_url)
            if not public.hostname or public.scheme not in ("http", "https"):
                raise PipelineBotError(
                    f"PIPELINE_BOT_PUBLIC_URL {settings.public_url!r} is not an http(s) URL"
                )
            hosts = (public.netloc.rpartition("@")[2], *hosts)
            origins = (f"{public.scheme}://{public.netloc.rpartition('@')[2]}", *origins)
        return cls(
            max_body=settings.http_max_body_bytes,
            body_timeout=settings.http_body_timeout,
            session_idle_timeout=settings.mcp_session_idle_timeout,
            max_sessions=settings.mcp_max_sessions,
            allowed_hosts=hosts,
            allowed_origins=origins,
        )


def _split(value: str | None) -> tuple[str, ...]:
    return tuple(v.strip() for v in (value or "").split(",") if v.strip())


def check_token(setting: str, token: str | None) -> None:
    """A bearer token is at least 16 characters, not a short pattern repeated."""
    if token is not None and (len(token) < MIN_TOKEN or len(set(token)) < 6):
        raise PipelineBotError(
            f"{setting} is too weak: use at least {MIN_TOKEN} random characters "
            "(e.g. `openssl rand -hex 32`)"
        )


def check_binding(host: str, token: str | None) -> None:
    if host not in LOOPBACK and not token:
        raise PipelineBotError(
            f"refusing to serve MCP on {host} without a token: set PIPELINE_BOT_MCP_TOKEN (clients "
            "then send `Authorization: Bearer <token>`), or bind 127.0.0.1"
        )


def _with_port(host: str) -> bool:
    return "]:" in host if host.startswith("[") else ":" in host


def _bracketed(host: str) -> str:
    return f"[{host}]" if host.count(":") > 1 and not host.startswith("[") else host


def transport_security(
    hosts: Iterable[str], origins: Iterable[str], *, port: int | None = None
) -> TransportSecuritySettings:
    """Loopback (on `port`, or any port) and `hosts` (a name alone: with any port or none), the
    http(s) origins of all of them, and `origins`; everything else is refused."""
    from mcp.server.transport_security import TransportSecuritySettings

    loopback = ("127.0.0.1", "localhost", "[::1]")
    ports = [f":{port}"] if port else ["", ":*"]  # the App's port is its proxy's business
    allowed = [f"{h}{p}" for h in loopback for p in ports]
    allowed_origins = [f"http://{h}{p}" for h in loopback for p in ports]
    for host in map(_bracketed, hosts):
        names = [host] if _with_port(host) else [host, f"{host}:*"]
        allowed += names
        allowed_origins += [f"{scheme}://{n}" for n in names for scheme in ("https", "http")]
    return TransportSecuritySettings(
        enable_dns_rebinding_protection=True,
        allowed_hosts=allowed,
        allowed_origins=[*allowed_origins, *origins],
    )


async def answer(
    send: Any, status: int, message: str, headers: Iterable[tuple[bytes, bytes]] = ()
) -> None:
    """A JSON error, and the connection closed: its unread body is never read."""
    body = ('{"error": "' + message.replace('"', "'") + '"}').encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def read_body(receive: Any, limit: int, timeout: float) -> bytes | int | None:
    """The whole body, read in the chunks the server hands over, or the status to answer when
    it is over `limit` bytes (413) or takes over `timeout` seconds (408); None: the sender left."""
    chunks: list[bytes] = []
    size = 0
    try:
        async with asyncio.timeout(timeout):
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    return None
                chunk = message.get("body", b"")
                size += len(chunk)
                if size > limit:
                    return 413
                chunks.append(chunk)
                if not message.get("more_body", False):
                    return b"".join(chunks)
    except TimeoutError:
        return 408


class Guard:
    """ASGI middleware: the bearer token (401), Host and Origin (421, 403), then the body within
    `options` (413, 408), in that order and before the wrapped app runs; the body is replayed to
    it. Without a token, `fail_closed` refuses every request that is not `public`."""

    def __init__(
        self,
        app: ASGI,
        options: HttpOptions,
        *,
        token: str | None = None,
        fail_closed: bool = False,
        security: TransportSecuritySettings | None = None,
        public: Callable[[Scope], bool] | None = None,
    ) -> None:
        self.app = app
        self.options = options
        self.expected = f"Bearer {token}".encode() if token else None
        self.fail_closed = fail_closed
        self.public = public
        self.security: Any = None
        if security is not None:
            from mcp.server.transport_security import TransportSecurityMiddleware

            self.security = TransportSecurityMiddleware(security)

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        public = self.public is not None and self.public(scope)
        refusal = None if public else await self._refusal(scope, headers)
        if refusal is not None:
            await answer(send, *refusal)
            return
        length = headers.get(b"content-length", b"0")
        if not length.isdigit() or int(length) > self.options.max_body:
            await answer(send, 413, _TOO[413].format(**vars(self.options)))
            return
        if public:  # open routes (health, metrics, docs) read no body
            await self.app(scope, receive, send)
            return
        body = await read_body(receive, self.options.max_body, self.options.body_timeout)
        if body is None:
            return
        if isinstance(body, int):
            await answer(send, body, _TOO[body].format(**vars(self.options)))
            return
        await self.app(scope, _replay(body, receive), send)

    async def _refusal(self, scope: Scope, headers: dict[bytes, bytes]) -> tuple[Any, ...] | None:
        if self.expected is not None or self.fail_closed:
            given = headers.get(b"authorization", b"")
            if self.expected is None or not hmac.compare_digest(given, self.expected):
                realm = [(b"www-authenticate", b'Bearer realm="pipeline-bot"')]
                return 401, "a valid bearer token is required", realm
        if self.security is not None:
            from starlette.requests import Request

            refused = await self.security.validate_request(Request(scope), is_post=False)
            if refused is not None:
                return refused.status_code, bytes(refused.body).decode()
        return None


_TOO = {
    413: "the body is over {max_body} bytes",
    408: "the body did not arrive within {body_timeout} s",
}


def _replay(body: bytes, receive: Any) -> Callable[[], Awaitable[Any]]:
    """The body once, then the server's own messages (a disconnect)."""
    sent = False

    async def replayed() -> Any:
        nonlocal sent
        if sent:
            return await receive()
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replayed


def http_app(
    server: MCPServer,
    *,
    host: str,
    port: int,
    token: str | None,
    options: HttpOptions | None = None,
) -> Any:
    check_binding(host, token)
    check_token("PIPELINE_BOT_MCP_TOKEN", token)
    if options is None:
        from pipeline_bot.settings import get_settings

        options = HttpOptions.from_settings(get_settings())
    hosts = list(options.allowed_hosts)
    if host not in LOOPBACK and host not in WILDCARD:
        hosts.append(f"{_bracketed(host)}:{port}")
    elif host in WILDCARD and not hosts:
        print(  # one line on the terminal that started the server
            f"warning: serving MCP on {host or '*'}:{port} to loopback names only; set "
            "PIPELINE_BOT_MCP_ALLOWED_HOSTS to the names clients reach it by",
            file=sys.stderr,
        )
    security = transport_security(hosts, options.allowed_origins, port=port)
    app: Any = server.streamable_http_app(
        transport_security=security,
        host=host,
        max_request_body_size=options.max_body,
        session_idle_timeout=options.session_idle_timeout,
        max_sessions=options.max_sessions,
    )
    return Guard(app, options, token=token, security=security)


def serve(server: MCPServer, *, host: str, port: int, token: str | None) -> None:
    """Serve on host:port; once the socket is bound, say where (one line on stderr, with the
    port the system chose for --port 0) and how clients authenticate."""
    import logging
    import socket

    import uvicorn

    logging.getLogger("mcp").setLevel(logging.WARNING)  # the SDK's per-session INFO lines
    app = http_app(server, host=host, port=port, token=token)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise PipelineBotError(
            f"cannot listen on {host}:{port}: {exc.strerror} (is another server on that port? "
            "choose one with --port)"
        ) from None
    sock.listen(128)
    bound = sock.getsockname()[1]
    auth = "clients send `Authorization: Bearer <PIPELINE_BOT_MCP_TOKEN>`" if token else "no token"
    print(
        f"pipeline-bot MCP server listening on http://{_bracketed(host)}:{bound}/mcp ({auth}); "
        "Ctrl-C stops it",
        file=sys.stderr,
        flush=True,
    )
    config = uvicorn.Config(app, log_level="warning")
    uvicorn.Server(config).run(sockets=[sock])
