"""installation and installation_repositories: recorded; ping: acknowledged."""

from __future__ import annotations

from pipeline_bot.app.context import EventContext


def handle(ctx: EventContext) -> str:
    installation = ctx.payload["installation"]
    known = ctx.services.deliveries.installation(int(installation["id"]))
    repos = set(known["repositories"]) if known else set()
    repos |= {r["full_name"] for r in ctx.payload.get("repositories") or []}
    repos |= {r["full_name"] for r in ctx.payload.get("repositories_added") or []}
    repos -= {r["full_name"] for r in ctx.payload.get("repositories_removed") or []}
    action = str(ctx.payload.get("action") or "")
    status = (
        "deleted" if action == "deleted" else ("suspended" if action == "suspend" else "active")
    )
    account = (installation.get("account") or {}).get("login", "")
    ctx.services.deliveries.record_installation(
        int(installation["id"]), account, sorted(repos), status
    )
    return f"installation {installation['id']} ({account}): {action}, {len(repos)} repositories"


def handle_ping(ctx: EventContext) -> str:
    return f"ping: {ctx.payload.get('zen', '')}"
