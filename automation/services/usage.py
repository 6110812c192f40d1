"""What a run's model calls used: one ``ModelCall`` row per attempt, and the run's totals.

Each row is written as the call happens, in one statement with the increments of the
run's totals (``input_tokens``, ``output_tokens``, ``cost``), so the totals are always the
sum of the run's model calls: whether it then completes, fails or is stopped, and while it
is running (the per-run token ceiling reads them).

The per-run token ceiling (``Agent.max_tokens_per_run``) is enforced at the call that
passes it: the recorder stops the invocation there, so the run fails before the agent acts
on that answer (a tool call, the next round). The sweep
(``settlement.fail_runs_over_token_ceiling``) catches runs whose worker went quiet.
"""

from agentpress.agents.runtime import ModelCallRecord, RuntimeFailure
from agentpress.ops import metrics
from automation import queries
from automation.models import AgentRun, ModelCall
from automation.services import budgets
from automation.services.runs import record_event


class TokenCeilingReached(RuntimeFailure):
    """The run used more tokens than its agent's ``max_tokens_per_run``; the message is the
    run's ``last_error``."""


class UsageRecorder:
    """Records one run's model calls; ``record`` is the invocation's ``report_model_call``.

    It counts the run's tokens as it records them (no read per call) from the totals the run
    was claimed with, and raises ``TokenCeilingReached`` once they pass the agent's ceiling.
    """

    def __init__(self, run: AgentRun):
        self.run = run
        self.ceiling = run.agent.max_tokens_per_run
        self.used = run.input_tokens + run.output_tokens

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
        self.used += call.input_tokens + call.output_tokens
        if self.ceiling is not None and self.used > self.ceiling:
            record_event(
                self.run.pk, "token_ceiling_reached", used=self.used, max_tokens_per_run=self.ceiling
            )
            raise TokenCeilingReached(budgets.token_ceiling_error(self.used, self.ceiling))
