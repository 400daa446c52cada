"""`python -m pipeline_bot` runs the CLI."""

from pipeline_bot.cli import main

main()
