"""Any OpenAI-compatible chat-completions endpoint (OpenAI, Ollama, vLLM) via the official SDK.

``runtime_config``: ``base_url``, ``model``, ``api_key`` (or the ``OPENAI_API_KEY``
environment variable), ``timeout_seconds`` (default 60), ``max_tool_rounds`` (default 4).
"""

import json
import os

import openai

from .base import Invocation, InvocationResult, OutMessage, RuntimeFailure


class OpenAIRuntime:
    def invoke(self, invocation: Invocation) -> InvocationResult:
        config = invocation.config
        model = config.get("model")
        if not model:
            raise RuntimeFailure("The openai runtime needs a 'model' in the agent's runtime_config.")
        client = openai.OpenAI(
            base_url=config.get("base_url") or os.environ.get("OPENAI_BASE_URL"),
            api_key=config.get("api_key") or os.environ.get("OPENAI_API_KEY") or "not-set",
            timeout=float(config.get("timeout_seconds", 60)),
            max_retries=int(config.get("max_retries", 1)),
        )
        chat = [{"role": "system", "content": invocation.instructions or "You are a helpful agent."}]
        chat += [m for m in invocation.history if m["role"] in ("user", "assistant", "system")]
        chat.append({"role": "user", "content": invocation.prompt})
        tools = [
            {
                "type": "function",
                "function": {"name": t.name, "description": t.description, "parameters": t.parameters},
            }
            for t in invocation.tools
        ]
        messages: list[OutMessage] = []
        tool_calls: list[dict] = []
        for _ in range(int(config.get("max_tool_rounds", 4)) + 1):
            invocation.check_cancelled()
            try:
                response = client.chat.completions.create(
                    model=model, messages=chat, **({"tools": tools} if tools else {})
                )
            except openai.APIError as exc:
                raise RuntimeFailure(f"{type(exc).__name__} from {client.base_url}: {exc}") from exc
            choice = response.choices[0].message
            if not choice.tool_calls:
                messages.append(OutMessage("assistant", choice.content or "", {"model": model}))
                return InvocationResult(messages=messages, tool_calls=tool_calls)
            chat.append(choice.model_dump(exclude_none=True))
            for call in choice.tool_calls:
                result = self._call_tool(invocation, call.function.name, call.function.arguments)
                tool_calls.append(
                    {"name": call.function.name, "arguments": call.function.arguments, "result": result}
                )
                messages.append(OutMessage("tool", json.dumps(result), {"tool": call.function.name}))
                chat.append({"role": "tool", "tool_call_id": call.id, "content": json.dumps(result)})
        raise RuntimeFailure("The model kept calling tools without answering; gave up after the last round.")

    @staticmethod
    def _call_tool(invocation: Invocation, name: str, raw_arguments: str) -> dict:
        tool = invocation.tool(name)
        if tool is None:
            return {"ok": False, "error": f"Unknown tool {name!r}."}
        try:
            arguments = json.loads(raw_arguments or "{}")
        except json.JSONDecodeError:
            return {"ok": False, "error": "The arguments are not valid JSON."}
        return tool.call(arguments)
