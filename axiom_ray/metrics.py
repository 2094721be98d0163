"""Run metrics for the Ray dashboard (ray.util.metrics), behind one small facade.

Metrics are created on first use inside a Ray process; outside Ray every call is a no-op, so
pure code and unit tests can report without a cluster.
"""

from __future__ import annotations

import functools
import logging
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from axiom_ray.evaluation import PassSummary

log = logging.getLogger(__name__)

PREFIX = "axiom_"
_COUNTERS = {
    "samples_generated": "Candidates generated",
    "samples_verified": "Candidates verified, by status",
    "tokens_generated": "Tokens generated",
}
_GAUGES = {
    "pass_rate": "Per-sample pass rate of the last pass (first-round samples, attempt 0)",
    "problems_solved": "Problems solved in the last pass",
    "tokens_per_second": "Generated tokens per second of the last pass",
    "train_loss": "Last training loss",
    "train_tokens_per_second": "Training tokens per second",
    "iteration": "Current iteration",
    "phase_seconds": "Wall time of the last phase, by phase",
    "adapter_swap_seconds": "Time to load a new adapter into the generators",
    # The pass in progress (pipeline.PassProgress, the figures of its progress line), by kind.
    "pass_samples_generated": "Candidates generated so far in the current pass",
    "pass_samples_judged": "Candidates judged so far in the current pass",
    "pass_samples_passed": "Candidates passed so far in the current pass",
    "pass_tokens_per_second": "Generated tokens per second of the current pass so far",
    "pass_eta_seconds": "Estimated seconds left in the current pass (0 before its first verdict)",
}


@functools.cache
def _metric(name: str) -> Any:
    from ray.util import metrics  # lazy: only called once Ray is up (see _ray_ready)

    if name in _COUNTERS:
        return metrics.Counter(PREFIX + name, description=_COUNTERS[name], tag_keys=("run", "kind", "status"))
    return metrics.Gauge(PREFIX + name, description=_GAUGES[name], tag_keys=("run", "kind", "phase"))


def _ray_ready() -> bool:
    try:
        import ray  # lazy: pure code and unit tests report without Ray installed or started

        return ray.is_initialized()
    except ImportError:
        return False


def inc(name: str, value: float = 1.0, **tags: str) -> None:
    if value and _ray_ready():
        _metric(name).inc(value, tags=_tags(tags, ("run", "kind", "status")))


def gauge(name: str, value: float, **tags: str) -> None:
    if _ray_ready():
        _metric(name).set(float(value), tags=_tags(tags, ("run", "kind", "phase")))


def _tags(given: dict[str, str], keys: tuple[str, ...]) -> dict[str, str]:
    return {k: str(given.get(k, "")) for k in keys}


def record_pass(summary: PassSummary, run: str, kind: str) -> None:
    """A finished pass's figures (the same PassSummary the manifest records)."""
    tags = {"run": run, "kind": kind}
    inc("samples_generated", summary.samples, **tags)
    for status, count in summary.status.items():
        inc("samples_verified", count, status=status, **tags)
    inc("tokens_generated", summary.tokens, **tags)
    gauge("pass_rate", summary.pass_rate, **tags)
    gauge("problems_solved", summary.solved, **tags)
    gauge("tokens_per_second", summary.tokens_per_s, **tags)
