"""The `pipeline-bot` console script: `action` goes straight to the Action's fast entry (stdlib
first, SDKs only when used); everything else to the typer CLI."""

from __future__ import annotations

import sys


def main() -> None:
    from pipeline_bot.redaction import redact_logs, redact_streams

    redact_streams()  # every registered secret is masked in whatever this process prints
    redact_logs()
    if sys.argv[1:2] == ["action"]:
        from pipeline_bot.action.main import main as action_main

        sys.exit(action_main())
    from pipeline_bot.cli import main as cli_main

    cli_main()
