"""What a run's model calls used: one ``ModelCall`` row per attempt, and the run's totals.

A call's rows go to the database with the run's next step: before a tool acts (``flush``),
or with the run's end, in the statement of its completion or failure (``Usage``, taken by
``take``): a run that answers in one call costs no statement for its usage. Each write adds
the rows' tokens and cost to the run's totals (``input_tokens``, ``output_tokens``,
``cost``) in the same statement, so the totals are always the sum of the run's stored
calls, whether it completes, fails or is stopped; while it runs they lag by the calls since
its last tool at most (the per-run token ceiling's sweep reads them). A worker killed
between a model's answer and the run's end loses that answer's rows with the answer.

The per-run token ceiling (``Agent.max_tokens_per_run``) is enforced at the call that
passes it: the recorder stops the invocation there, so the run fails before the agent acts
on that answer (a tool call, the next round). The sweep
(``settlement.fail_runs_over_token_ceiling``) catches runs whose worker went quiet.
"""

from dataclasses import dataclass, field

from agentpress.agents.runtime import ModelCallRecord, RuntimeFailure
from agentpress.ops import metrics
from automation import queries
from automation.models import AgentRun, ModelCall
from automation.services import budgets
from automation.services.runs import record_event


class TokenCeilingReached(RuntimeFailure):
    """The run used more tokens than its agent's ``max_tokens_per_run``; the message is the
    run's ``last_error``."""


@dataclass
class Usage:
    """Model-call rows not stored yet, and the run's totals once they are: what the run's
    ending statement writes with it (``queries.finish_run``)."""

    rows: list[ModelCall] = field(default_factory=list)
    totals: dict = field(default_factory=dict)


class UsageRecorder:
    """Records one run's model calls; ``record`` is the invocation's ``report_model_call``.

    It counts the run's tokens as it records them (no read per call) from the totals the run
    was claimed with, and raises ``TokenCeilingReached`` once they pass the agent's ceiling.
    """

    def __init__(self, run: AgentRun):
        self.run = run
        self.ceiling = run.agent.max_tokens_per_run
        self.totals = {"input_tokens": run.input_tokens, "output_tokens": run.output_tokens, "cost": run.cost}
        self.pending: list[ModelCall] = []

    def record(self, call: ModelCallRecord) -> None:
        row = ModelCall(
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
        self.pending.append(row)
        self.totals["input_tokens"] += row.input_tokens
        self.totals["output_tokens"] += row.output_tokens
        self.totals["cost"] += row.cost
        metrics.record_model_call(org=self.run.organization.slug, agent=self.run.agent_id, call=call)
        used = self.totals["input_tokens"] + self.totals["output_tokens"]
        if self.ceiling is not None and used > self.ceiling:
            self.flush()
            record_event(self.run.pk, "token_ceiling_reached", used=used, max_tokens_per_run=self.ceiling)
            raise TokenCeilingReached(budgets.token_ceiling_error(used, self.ceiling))

    def flush(self) -> None:
        """Store the pending rows now, each adding to the run's totals (before a tool acts,
        when the run is stopped, or when its ending statement found the lease gone)."""
        rows, self.pending = self.pending, []
        for row in rows:
            queries.record_model_call(row)

    def take(self) -> Usage:
        """The pending rows and the totals with them, for the run's ending statement; then
        ``ended`` with whether that statement was written."""
        return Usage(rows=list(self.pending), totals=dict(self.totals))

    def ended(self, written: bool) -> None:
        """The run's ending statement wrote the pending rows, or (the lease was gone, nothing
        written) they are stored on their own: the tokens were spent either way."""
        if written:
            self.pending = []
        else:
            self.flush()
