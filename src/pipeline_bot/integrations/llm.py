"""Any OpenAI-compatible endpoint through the `openai` client: Chat Completions with tools for
investigation and a strict `json_schema` response format for the final answer.

No model configured (PIPELINE_BOT_LLM_MODEL unset) means no client is built and no request is
made. OPENAI_API_KEY and OPENAI_BASE_URL are the client's own variables, so OpenAI, Azure OpenAI,
Ollama, vLLM and LiteLLM all work. Errors say what happened (timeout, 429 with its Retry-After,
unreachable, a status) and never carry the key or the request.
"""

from __future__ import annotations

from typing import Any

from pipeline_bot.core.agent import ModelTurn, ToolRequest
from pipeline_bot.errors import IntegrationError
from pipeline_bot.redaction import redact_data
from pipeline_bot.settings import Settings


def llm_from_settings(settings: Settings) -> OpenAIChat | None:
    if not settings.llm_model:
        return None
    return OpenAIChat(
        settings.llm_model,
        api_key=settings.openai_api_key.get_secret_value() if settings.openai_api_key else None,
        base_url=settings.openai_base_url,
        timeout=settings.llm_timeout,
        retries=settings.llm_retries,
    )


class OpenAIChat:
    """LLMPort over the `openai` client."""

    def __init__(
        self,
        model: str,
        *,
        api_key: str | None,
        base_url: str | None,
        timeout: float = 60,
        retries: int = 2,
    ) -> None:
        from openai import OpenAI

        self.model = model
        self.timeout = timeout
        # local servers (Ollama, vLLM) take any key; the client insists on one
        self._client = OpenAI(
            api_key=api_key or "unused", base_url=base_url, timeout=timeout, max_retries=retries
        )

    def complete(
        self,
        messages: list[dict[str, Any]],
        *,
        tools: list[dict[str, Any]],
        schema: dict[str, Any],
        schema_name: str,
    ) -> ModelTurn:
        import openai
        from openai.types.chat import ChatCompletion, ChatCompletionMessageFunctionToolCall

        options: dict[str, Any] = {
            "model": self.model,
            # a registered secret never reaches the model, whatever text carried it in
            "messages": redact_data(messages),
            "response_format": {
                "type": "json_schema",
                "json_schema": {"name": schema_name, "strict": True, "schema": schema},
            },
        }
        if tools:
            options["tools"] = tools
        try:
            response = self._client.chat.completions.create(**options)
        except openai.APITimeoutError:
            raise IntegrationError(
                f"the model did not answer within {self.timeout:g} s", service="llm"
            ) from None
        except openai.RateLimitError as exc:
            after = exc.response.headers.get("retry-after")
            hint = f", retry after {after} s" if after else ""
            raise IntegrationError(
                f"the model's server is rate-limiting requests (429{hint})",
                service="llm",
                status=429,
            ) from None
        except openai.APIConnectionError:
            raise IntegrationError(
                "the model's server could not be reached", service="llm"
            ) from None
        except openai.APIStatusError as exc:
            raise IntegrationError(
                f"the model's server answered {exc.status_code}",
                service="llm",
                status=exc.status_code,
            ) from None
        except openai.OpenAIError as exc:  # a body the client cannot read, say
            raise IntegrationError(
                f"the model's answer could not be read ({type(exc).__name__})", service="llm"
            ) from None
        if not isinstance(response, ChatCompletion):  # e.g. an HTML page from a proxy
            raise IntegrationError(
                "the model's answer could not be read (not a chat completion)", service="llm"
            )
        if not response.choices:
            raise IntegrationError("the model's server answered with no choices", service="llm")
        message = response.choices[0].message
        calls = [
            ToolRequest(c.id, c.function.name, c.function.arguments)
            for c in message.tool_calls or []
            if isinstance(c, ChatCompletionMessageFunctionToolCall)  # custom tools: not offered
        ]
        usage = response.usage
        return ModelTurn(
            content=message.content,
            tool_calls=calls,
            prompt_tokens=usage.prompt_tokens if usage else 0,
            completion_tokens=usage.completion_tokens if usage else 0,
        )
