"""Front end 2: the GitHub App (FastAPI webhook intake, durable queue, handlers, REST API)."""
