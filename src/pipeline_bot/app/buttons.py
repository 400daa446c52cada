"""The analysis check run's buttons, within GitHub's limits: label 20, description 40 and
identifier 20 characters.

An environment's name does not fit an identifier (`deploy:preproduction-eu` cut to 20 characters
is `deploy:preproduction`, another environment), so the deploy button carries a hash of the name.
A press deploys to the configured environment with that hash, and is refused when none has it any
more (the configuration changed since the analysis).
"""

from __future__ import annotations

import hashlib

from pipeline_bot.core.commands import CommandSyntaxError

DEPLOY = "deploy:"
IDENTIFIER_LIMIT = 20
_HASH_CHARS = IDENTIFIER_LIMIT - len(DEPLOY)
STALE = (
    "this button's environment is no longer in the configuration on the default branch (it "
    "changed since the analysis): press **Re-analyze** for new buttons, or comment "
    "`/deploy <environment>`."
)


def actions(environments: list[str]) -> list[dict[str, str]]:
    """The buttons: deploy to the first environment in promotion order, and re-analyze."""
    out = []
    if environments:
        env = environments[0]
        out.append(
            {
                "label": _fit(f"Deploy to {env}", 20),
                "description": _fit(f"Deploy this head to {env}", 40),
                "identifier": DEPLOY + digest(env),
            }
        )
    out.append(
        {
            "label": "Re-analyze",
            "description": "Analyse the change again",
            "identifier": "reanalyze",
        }
    )
    return out


def digest(environment: str) -> str:
    return hashlib.sha256(environment.encode()).hexdigest()[:_HASH_CHARS]


def environment(token: str, configured: list[str]) -> str:
    """The configured environment a deploy button names (`token` follows `deploy:`)."""
    for name in configured:
        if digest(name) == token:
            return name
    # a button from before the hashes: its name is whole only when it was under the limit
    if len(DEPLOY + token) < IDENTIFIER_LIMIT and token in configured:
        return token
    raise CommandSyntaxError(STALE, "deploy")


def _fit(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
