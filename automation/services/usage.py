"""What a run's model calls used: one ``ModelCall`` row per attempt, and the run's totals.

Each row is written as the call happens, in one statement with the increments of the
run's totals (``input_tokens``, ``output_tokens``, ``cost``), so the totals are always the
sum of the run's model calls: whether it then completes, fails or is stopped, and while it
is running (the per-run token ceiling reads them).
"""

from agentpress.agents.runtime import ModelCallRecord
from agentpress.ops import metrics
from automation import queries
from automation.models import AgentRun, ModelCall


class UsageRecorder:
    """Records one run's model calls; ``record`` is the invocation's ``report_model_call``."""

    def __init__(self, run: AgentRun):
        self.run = run

    def record(self, call: ModelCallRecord) -> None:
        queries.record_model_call(
            ModelCall(
                run_id=self.run.pk,
                organization_id=self.run.organization_id,
                agent_id=self.run.agent_id,
                endpoint=call.endpoint[:100],
                model=call.model[:200],
                attempt=call.attempt,
                input_tokens=call.input_tokens,
                output_tokens=call.output_tokens,
                cached_tokens=call.cached_tokens,
                latency_ms=call.latency_ms,
                outcome=call.outcome,
                status_code=call.status_code,
                error=call.error,
                cost=call.cost,
            )
        )
        metrics.record_model_call(org=self.run.organization.slug, agent=self.run.agent_id, call=call)
