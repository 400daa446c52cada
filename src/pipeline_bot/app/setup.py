"""`pipeline-bot app setup`: register the App through GitHub's App-manifest flow, no copy-paste.

A local page posts the manifest (app.yml) to GitHub; GitHub creates the App and sends the browser
back with a one-time code; the code is exchanged for the App's id, private key and webhook secret,
which are written to files only their owner can read (as Probot's setup does). Nothing secret is
printed or shown in the browser.
"""

from __future__ import annotations

import html
import json
import os
import secrets
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import yaml

from pipeline_bot.errors import PipelineBotError


def manifest(*, name: str, webhook_url: str, redirect_url: str, homepage: str) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(_manifest_text())
    data.update(
        name=name,
        url=homepage,
        hook_attributes={"url": webhook_url, "active": True},
        redirect_url=redirect_url,
    )
    return data


def _manifest_text() -> str:
    packaged = resources.files("pipeline_bot.app").joinpath("app.yml")
    if packaged.is_file():  # an installed wheel carries it
        return packaged.read_text(encoding="utf-8")
    # a source checkout (editable install): the repository's own app.yml
    return (Path(__file__).resolve().parents[3] / "app.yml").read_text(encoding="utf-8")


def form_action(github_url: str, org: str | None, state: str) -> str:
    base = github_url.rstrip("/")
    where = f"/organizations/{org}/settings/apps/new" if org else "/settings/apps/new"
    return f"{base}{where}?state={state}"


def write_credentials(data: dict[str, Any], out: Path) -> tuple[Path, Path]:
    """The env file (id, key path, webhook secret) and the PEM key, both mode 0600."""
    key_path = out.parent / f"pipeline-bot-{data['id']}.private-key.pem"
    _write_private(key_path, str(data["pem"]))
    lines = [
        f"GITHUB_APP_ID={data['id']}",
        f"GITHUB_APP_PRIVATE_KEY_PATH={key_path.resolve()}",
        f"GITHUB_WEBHOOK_SECRET={data['webhook_secret']}",
    ]
    _write_private(out, "\n".join(lines) + "\n")
    return out, key_path


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)


PAGE = """<!doctype html><html lang="en"><head><meta charset="utf-8">
<title>Register pipeline-bot</title></head><body style="font-family: sans-serif; margin: 3em">
<h1>Register pipeline-bot as a GitHub App</h1>
<p>This sends the App's manifest (permissions and events from app.yml) to GitHub. GitHub asks you to
confirm the name and creates the App; you come back here and the credentials are saved locally.</p>
<form id="register" method="post" action="{action}">
<input type="hidden" name="manifest" value="{manifest}">
<button type="submit">Create the App on GitHub</button></form>
</body></html>"""

DONE = """<!doctype html><html lang="en"><head><meta charset="utf-8"><title>pipeline-bot</title>
</head><body style="font-family: sans-serif; margin: 3em"><h1>{name} is registered</h1>
<p>Its id, private key and webhook secret are saved on this machine. Next, install it on your
repositories: <a href="{install}">{install}</a>, then run <code>pipeline-bot serve</code>.</p>
</body></html>"""


def run_setup(
    *,
    webhook_url: str,
    out: Path,
    host: str = "127.0.0.1",
    port: int = 3000,
    name: str = "pipeline-bot",
    org: str | None = None,
    github_url: str = "https://github.com",
    api_url: str | None = None,
    ready: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Serve the page until GitHub's redirect arrives; returns what was saved (no secrets)."""
    from pipeline_bot.integrations.github_app import convert_manifest_code

    if out.exists():
        raise PipelineBotError(f"{out} exists: remove it or choose another --out")
    state = secrets.token_urlsafe(24)
    result: dict[str, Any] = {}
    done = threading.Event()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            url = urlsplit(self.path)
            if url.path == "/":
                self._page(
                    PAGE.format(
                        action=html.escape(form_action(github_url, org, state)),
                        manifest=html.escape(
                            json.dumps(
                                manifest(
                                    name=name,
                                    webhook_url=webhook_url,
                                    redirect_url=f"http://{self._host()}/callback",
                                    homepage="https://github.com/apps",
                                )
                            )
                        ),
                    )
                )
            elif url.path == "/callback":
                self._callback(parse_qs(url.query))
            else:
                self._page("not found", 404)

        def _host(self) -> str:
            return str(self.headers.get("host") or f"{host}:{port}")

        def _callback(self, query: dict[str, list[str]]) -> None:
            given = (query.get("state") or [""])[0]
            code = (query.get("code") or [""])[0]
            if not secrets.compare_digest(given, state) or not code:
                self._page("This callback does not belong to this setup (state mismatch).", 400)
                return
            try:
                data = convert_manifest_code(code, api_url=api_url)
                env_file, key_file = write_credentials(data, out)
            except (PipelineBotError, OSError, KeyError) as exc:
                result["error"] = str(exc)
                self._page(f"Setup failed: {html.escape(str(exc))}", 502)
                done.set()
                return
            install = f"{data.get('html_url', '')}/installations/new"
            result.update(
                id=data["id"],
                slug=data.get("slug"),
                env_file=str(env_file),
                key_file=str(key_file),
                install_url=install,
            )
            self._page(
                DONE.format(
                    name=html.escape(str(data.get("name", name))), install=html.escape(install)
                )
            )
            done.set()

        def _page(self, text: str, status: int = 200) -> None:
            body = text.encode()
            self.send_response(status)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:  # the callback's URL holds the one-time code
            return

    server = ThreadingHTTPServer((host, port), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        ready(f"http://{host}:{server.server_address[1]}/")
        done.wait()
    finally:
        server.shutdown()
        server.server_close()
    if "error" in result:
        raise PipelineBotError(f"setup failed: {result['error']}")
    return result
