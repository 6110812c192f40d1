"""Error text for the demo rows, shaped as the engine writes it."""

# What a failed model call leaves in `last_error` (services.runs.format_error: the message, then
# the tail of the traceback), as the openai runtime raises it when its endpoint answers 503.
DEMO_TRACEBACK = """RuntimeFailure: model endpoint 'default' answered 503 Service Unavailable after 3 attempts

Traceback (most recent call last):
  File "/app/automation/services/execution.py", line 106, in execute_run
    result = get_runtime(run.agent.runtime).invoke(invocation)
             ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^
  File "/app/agentpress/agents/runtime/openai_runtime.py", line 112, in invoke
    response = _complete(invocation, client, endpoint, model, chat, tools)
               ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^
  File "/app/agentpress/agents/runtime/openai_runtime.py", line 146, in _complete
    raise RuntimeFailure(message) from None
agentpress.agents.runtime.base.RuntimeFailure: model endpoint 'default' answered 503 Service Unavailable after 3 attempts
"""
