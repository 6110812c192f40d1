"""Imports run one way (STYLE.md, "Layers, and arrows that run one way").

The import graph of the project's own modules, function-level imports included (a
function-level import written to dodge a cycle is the cycle still there), must have no
cycle, and no import may point from a lower layer to a higher one.
"""

import ast
import graphlib
from pathlib import Path

import pytest

from tests.support.services import ROOT

pytestmark = pytest.mark.sqlite

PACKAGES = ("agentpress", "automation", "monitor")

# bottom to top; a module takes the layer of its longest matching prefix, unlisted ones are free
LAYERS = {
    "automation.states": 1,
    "automation.cadence": 1,
    "automation.instants": 1,
    # models, and the rules that read them (no writes, no services)
    "agentpress": 2,
    "automation.providers.graph": 2,  # an outbound client, like the agent runtimes
    "automation.models": 2,
    "automation.stop_conditions": 2,
    "automation.follow_up_requests": 2,
    # transitions of a run and the named hot statements
    "automation.services.runs": 3,
    "automation.services.audit": 3,
    "automation.services.usage": 3,
    "automation.queries": 3,
    "automation.services.admission": 3,
    "automation.services.budgets": 3,
    "automation.services.capacity": 3,
    # the domains that hang on a run
    "automation.services.follow_ups": 4,
    "automation.services.provider_events": 4,
    "automation.services.schedules": 4,
    "automation.services.rate_limits": 4,
    "automation.services.retention": 4,
    "automation.services.wakeups": 4,
    "automation.services.tool_calls": 4,
    # settling a run's end
    "automation.services.settlement": 5,
    "automation.services.limits": 5,
    # Outlook mail and subscriptions: above provider events, whose ingest they feed
    "automation.providers.outlook": 5,
    "automation.services.outlook": 5,
    "automation.services.outlook_mail": 5,
    # the worker
    "automation.services.execution": 6,
    "automation.services.recovery": 6,
    "automation.worker": 6,
    "agentpress.ops.lifecycle": 6,
    # the edges
    "agentpress.ops.apps": 7,
    "automation.tasks": 7,
    "automation.api": 7,
    "automation.admin": 7,
    "automation.providers": 7,
    "automation.management": 7,
    "monitor": 7,
}
DOMAINS = 4  # the domains import the transitions, never each other


def project_modules() -> dict[str, Path]:
    modules = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            rel = path.relative_to(ROOT)
            if "migrations" in rel.parts:
                continue
            name = ".".join(rel.with_suffix("").parts).removesuffix(".__init__")
            modules[name] = path
    return modules


def import_graph() -> dict[str, set[str]]:
    modules = project_modules()

    def resolve(name: str) -> str | None:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    graph = {}
    for module, path in modules.items():
        is_package = path.name == "__init__.py"
        targets = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = module.split(".")[: None if is_package else -1]
                    parts = parts[: len(parts) - (node.level - 1)]
                    base = ".".join([*parts, base] if base else parts)
                targets.add(base)
                targets.update(f"{base}.{alias.name}" for alias in node.names)
        resolved = {resolve(t) for t in targets} - {None, module}
        graph[module] = {t for t in resolved if not (is_package and t.startswith(module + "."))}
    return graph


def layer_of(module: str) -> int | None:
    prefixes = [p for p in LAYERS if module == p or module.startswith(p + ".")]
    return LAYERS[max(prefixes, key=len)] if prefixes else None


def test_the_import_graph_has_no_cycle():
    graph = import_graph()
    try:
        tuple(graphlib.TopologicalSorter(graph).static_order())
    except graphlib.CycleError as exc:
        # the sorter reports each module before the one it is imported by
        pytest.fail(f"import cycle: {' imports '.join(reversed(exc.args[1]))}")


def test_no_import_points_up_a_layer():
    upward = []
    for module, targets in import_graph().items():
        here = layer_of(module)
        for target in sorted(targets):
            there = layer_of(target)
            if here is None or there is None:
                continue
            if there > here or (here == there == DOMAINS and module != target):
                upward.append(f"{module} (layer {here}) imports {target} (layer {there})")
    assert upward == []
