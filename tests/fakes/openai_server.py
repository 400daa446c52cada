"""Test double for an OpenAI-compatible server: POST /v1/chat/completions answered from a script,
on a loopback port, recording every request body. Replies are built from the `openai` package's
own response types (ChatCompletion and friends), so their shape is the client's, not ours."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from openai.types.chat import ChatCompletion, ChatCompletionMessage
from openai.types.chat.chat_completion import Choice
from openai.types.chat.chat_completion_message_function_tool_call import (
    ChatCompletionMessageFunctionToolCall,
    Function,
)
from openai.types.completion_usage import CompletionUsage


@dataclass
class Reply:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0


def completion(
    content: str | None = None, tool_calls: list[tuple[str, dict[str, Any]]] = ()
) -> Reply:
    calls = [
        ChatCompletionMessageFunctionToolCall(
            id=f"call_{i}",
            type="function",
            function=Function(name=name, arguments=json.dumps(args)),
        )
        for i, (name, args) in enumerate(tool_calls)
    ]
    message = ChatCompletionMessage(role="assistant", content=content, tool_calls=calls or None)
    response = ChatCompletion(
        id="chatcmpl-test",
        object="chat.completion",
        created=int(time.time()),
        model="scripted",
        choices=[Choice(index=0, finish_reason="tool_calls" if calls else "stop", message=message)],
        usage=CompletionUsage(prompt_tokens=1000, completion_tokens=100, total_tokens=1100),
    )
    return Reply(body=response.model_dump_json(exclude_none=True).encode())


def answer(data: dict[str, Any]) -> Reply:
    return completion(json.dumps(data))


class ScriptedModel:
    """Serves `script` in order (the last reply repeats); `requests` holds each body received."""

    def __init__(self, script: list[Reply | Callable[[dict[str, Any]], Reply]]) -> None:
        self.script = script
        self.requests: list[bytes] = []
        self._lock = threading.Lock()
        model = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("content-length") or 0))
                with model._lock:
                    model.requests.append(raw)
                    step = model.script[min(len(model.requests), len(model.script)) - 1]
                reply = step(json.loads(raw)) if callable(step) else step
                if reply.delay:
                    time.sleep(reply.delay)  # a slow model, for the client's timeout
                self.send_response(reply.status)
                self.send_header(
                    "Content-Type", reply.headers.get("Content-Type", "application/json")
                )
                for key, value in reply.headers.items():
                    if key != "Content-Type":
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(reply.body)))
                self.end_headers()
                self.wfile.write(reply.body)

            def log_message(self, *args: Any) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def bodies(self) -> list[dict[str, Any]]:
        return [json.loads(r) for r in self.requests]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
