"""pipeline-bot: takes a change from commit to production safely."""

__version__ = "0.1.0"
