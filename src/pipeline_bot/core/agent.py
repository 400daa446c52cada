"""The agent loop as a state machine, pure: the model's turn in, the next step out.

The runner (tools/review.py) calls the model, hands each turn to `advance`, runs the tool calls
it approves and records their results here. Only tools in `offered` (the registry's read-only
ones) are approved; a call to any other tool, to an unknown one, or with arguments that are not
a JSON object is answered with an error result the model can read, and recorded. The step limit
ends a model that keeps asking for tools.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

from pipeline_bot.models import AIRefusal, AIToolCall, AIUsage


@dataclass(frozen=True)
class ToolRequest:
    id: str
    name: str
    arguments: str  # JSON text, as the model wrote it


@dataclass(frozen=True)
class ModelTurn:
    content: str | None
    tool_calls: list[ToolRequest] = field(default_factory=list)
    prompt_tokens: int = 0
    completion_tokens: int = 0


@dataclass(frozen=True)
class RunTools:
    calls: list[tuple[ToolRequest, dict[str, Any]]]  # approved, with parsed arguments


@dataclass(frozen=True)
class Finish:
    content: str


@dataclass(frozen=True)
class Stop:
    reason: str


@dataclass
class AgentState:
    messages: list[dict[str, Any]]
    offered: frozenset[str]
    known: frozenset[str]
    max_steps: int
    steps: int = 0
    repairs: int = 0
    tool_calls: list[AIToolCall] = field(default_factory=list)
    refused: list[AIRefusal] = field(default_factory=list)
    usage: AIUsage = field(default_factory=AIUsage)


def advance(state: AgentState, turn: ModelTurn) -> RunTools | Finish | Stop:
    state.steps += 1
    state.usage.prompt_tokens += turn.prompt_tokens
    state.usage.completion_tokens += turn.completion_tokens
    if turn.tool_calls:
        state.messages.append(
            {
                "role": "assistant",
                "content": turn.content,
                "tool_calls": [
                    {
                        "id": c.id,
                        "type": "function",
                        "function": {"name": c.name, "arguments": c.arguments},
                    }
                    for c in turn.tool_calls
                ],
            }
        )
        approved = []
        for call in turn.tool_calls:
            problem, arguments = _check(state, call)
            if problem is not None:
                record_result(state, call, ok=False, text=f"error: {problem}")
            else:
                approved.append((call, arguments))
        if state.steps >= state.max_steps:
            for call, _ in approved:  # every call gets an answer, even when the loop ends
                record_result(state, call, ok=False, text="error: the step limit was reached")
            return Stop(
                f"the model was still calling tools at the step limit ({state.max_steps} steps)"
            )
        return RunTools(approved)
    if turn.content:
        state.messages.append({"role": "assistant", "content": turn.content})
        return Finish(turn.content)
    return Stop("the model answered with neither a tool call nor content")


def _check(state: AgentState, call: ToolRequest) -> tuple[str | None, dict[str, Any]]:
    if call.name not in state.known:
        state.refused.append(AIRefusal(action=f"call {call.name[:80]}", reason="no such tool"))
        return f"there is no tool named {call.name[:80]!r}", {}
    if call.name not in state.offered:
        reason = (
            f"{call.name} is not read-only: the model may advise and investigate, only a person "
            "and the policy may change a cluster"
        )
        state.refused.append(AIRefusal(action=f"call {call.name}", reason=reason))
        return reason, {}
    try:
        arguments = json.loads(call.arguments or "{}")
    except ValueError:
        return "the arguments are not valid JSON", {}
    if not isinstance(arguments, dict):
        return "the arguments must be a JSON object", {}
    return None, arguments


def record_result(state: AgentState, call: ToolRequest, *, ok: bool, text: str) -> None:
    state.tool_calls.append(AIToolCall(name=call.name[:80], ok=ok))
    state.messages.append({"role": "tool", "tool_call_id": call.id, "content": text})


def ask_for_repair(state: AgentState, problems: str) -> None:
    """The one repair request after an answer that does not match the schema."""
    state.repairs += 1
    state.messages.append(
        {
            "role": "user",
            "content": "Your answer does not match the required JSON schema: "
            f"{problems[:1500]}. Answer again with only the JSON object.",
        }
    )


def strict_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The model's JSON Schema in the shape strict structured output accepts: every object
    closed and every property required (optional ones may be null)."""
    schema = copy.deepcopy(model.model_json_schema())

    def visit(node: Any) -> None:  # a schema node (never a `properties` or `$defs` mapping)
        if isinstance(node, list):
            for item in node:
                visit(item)
            return
        if not isinstance(node, dict):
            return
        for key in ("title", "default", "minimum", "maximum", "exclusiveMinimum"):
            node.pop(key, None)
        if node.get("type") == "object" and "properties" in node:
            node["additionalProperties"] = False
            node["required"] = list(node["properties"])
        for key, value in node.items():
            if key in ("properties", "$defs") and isinstance(value, dict):
                for child in value.values():
                    visit(child)
            else:
                visit(value)

    visit(schema)
    return schema
