from .base import (
    CancelSignal,
    Invocation,
    InvocationResult,
    ModelCallRecord,
    OutMessage,
    RunCancelled,
    Runtime,
    RuntimeFailure,
    Tool,
)


def get_runtime(name: str) -> Runtime:
    if name == "openai":
        from .openai_runtime import OpenAIRuntime

        return OpenAIRuntime()
    if name == "scripted":
        from .scripted import ScriptedRuntime

        return ScriptedRuntime()
    raise RuntimeFailure(f"Unknown agent runtime {name!r}; expected 'scripted' or 'openai'.")


__all__ = [
    "CancelSignal",
    "Invocation",
    "InvocationResult",
    "ModelCallRecord",
    "OutMessage",
    "RunCancelled",
    "Runtime",
    "RuntimeFailure",
    "Tool",
    "get_runtime",
]
