"""Slash-commands in PR comments, parsed without I/O: `/deploy staging --strategy canary`.

Only a comment's first line is read. A line that does not start with `/` is no command (None); one
that does but is unknown or malformed raises CommandSyntaxError, whose message ends with the usage.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal

CommandName = Literal[
    "deploy",
    "rollback",
    "promote",
    "abort",
    "approve",
    "status",
    "analyze",
    "lock",
    "unlock",
    "help",
]
STRATEGIES = ("auto", "rolling", "blue-green", "canary")
# what each command changes: these need the environment's required permission
CHANGES_ENVIRONMENT = frozenset(
    {"deploy", "rollback", "promote", "abort", "approve", "lock", "unlock"}
)

USAGE = {
    "deploy": "/deploy <environment> [--strategy auto|rolling|blue-green|canary] [--image TAG] "
    "[--app NAME]",
    "rollback": "/rollback <environment> [--app NAME]",
    "promote": "/promote <environment> [--app NAME]",
    "abort": "/abort <environment> [--app NAME]",
    "approve": "/approve <environment> [--image TAG]",
    "status": "/status [environment]",
    "analyze": "/analyze",
    "lock": "/lock <environment> [reason]",
    "unlock": "/unlock <environment>",
    "help": "/help",
}
HELP = "\n".join(f"- `{line}`" for line in USAGE.values())

_ENV = re.compile(r"^[a-z0-9]([a-z0-9._-]{0,61}[a-z0-9])?$")
_IMAGE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:@/+-]{0,254}$")
_APP = _ENV
_OPTIONS: dict[str, tuple[str, ...]] = {
    "deploy": ("--strategy", "--image", "--app"),
    "rollback": ("--app",),
    "promote": ("--app",),
    "abort": ("--app",),
    "approve": ("--image",),
}


class CommandSyntaxError(ValueError):
    """A `/command` that cannot be run as written; `command` is its name when it was known."""

    def __init__(self, message: str, command: str | None = None) -> None:
        usage = USAGE.get(command or "")
        text = f"{message}\n\nUsage: `{usage}`" if usage else f"{message}\n\nCommands:\n{HELP}"
        super().__init__(text)
        self.command = command


@dataclass(frozen=True)
class Command:
    name: CommandName
    environment: str | None = None
    strategy: str = "auto"
    image: str | None = None
    app: str | None = None
    reason: str = ""
    options: dict[str, str] = field(default_factory=dict)

    @property
    def changes_environment(self) -> bool:
        return self.name in CHANGES_ENVIRONMENT


def parse_command(body: str) -> Command | None:
    """The command on the comment's first line, None when the comment is not a command."""
    text = body.lstrip("\ufeff").strip()  # a body of only a BOM has no first line
    first = text.splitlines()[0].strip() if text else ""
    if not first.startswith("/"):
        return None
    words = first.split()
    name = words[0][1:].lower()
    if name not in USAGE:
        raise CommandSyntaxError(f"`{words[0][:40]}` is not a pipeline-bot command.")
    args = words[1:]
    if name in ("help", "analyze"):
        if args:
            raise CommandSyntaxError(f"`/{name}` takes no arguments.", name)
        return Command(name=name)  # type: ignore[arg-type]
    if name == "status":
        if len(args) > 1:
            raise CommandSyntaxError("`/status` takes at most one environment.", name)
        return Command(name="status", environment=_environment(args[0], name) if args else None)
    if not args or args[0].startswith("--"):
        raise CommandSyntaxError(f"`/{name}` needs an environment.", name)
    environment = _environment(args[0], name)
    if name == "lock":
        reason = first.split(None, 2)[2] if len(args) > 1 else ""
        return Command(name="lock", environment=environment, reason=reason[:200])
    if name == "unlock" and len(args) > 1:
        raise CommandSyntaxError("`/unlock` takes only an environment.", name)
    options = _options(args[1:], name)
    strategy = options.get("--strategy", "auto")
    if strategy not in STRATEGIES:
        raise CommandSyntaxError(
            f"unknown strategy `{strategy[:40]}`: use one of {', '.join(STRATEGIES)}.", name
        )
    image = options.get("--image")
    if image is not None and not _IMAGE.match(image):
        raise CommandSyntaxError(f"`{image[:80]}` is not an image tag or reference.", name)
    app = options.get("--app")
    if app is not None and not _APP.match(app):
        raise CommandSyntaxError(f"`{app[:80]}` is not an app name.", name)
    return Command(
        name=name,  # type: ignore[arg-type]
        environment=environment,
        strategy=strategy,
        image=image,
        app=app,
        options=options,
    )


def _environment(word: str, command: str) -> str:
    if not _ENV.match(word):
        raise CommandSyntaxError(f"`{word[:64]}` is not an environment name.", command)
    return word


def _options(words: list[str], command: str) -> dict[str, str]:
    allowed = _OPTIONS.get(command, ())
    options: dict[str, str] = {}
    i = 0
    while i < len(words):
        word = words[i]
        key, eq, value = word.partition("=")
        if key not in allowed:
            what = f"`{word[:40]}`"
            raise CommandSyntaxError(f"unexpected {what} for `/{command}`.", command)
        if not eq:
            if i + 1 >= len(words) or words[i + 1].startswith("--"):
                raise CommandSyntaxError(f"`{key}` needs a value.", command)
            value = words[i + 1]
            i += 1
        if key in options:
            raise CommandSyntaxError(f"`{key}` is given twice.", command)
        options[key] = value
        i += 1
    return options
