"""Writes axiom-dashboard.json: a Grafana dashboard for axiom-ray's run metrics.

    python cluster/grafana/build_dashboard.py   # rewrites cluster/grafana/axiom-dashboard.json

The metrics are the `ray.util.metrics` of axiom_ray/metrics.py, as Ray 2.60 exports them to
Prometheus (checked on a live node's /metrics endpoint): every name gets the `ray_` prefix, a
Counter additionally the OpenMetrics suffix `_total` (`axiom_samples_generated` ->
`ray_axiom_samples_generated_total`), a Gauge none (`axiom_pass_rate` -> `ray_axiom_pass_rate`).
Every series carries Ray's `SessionName` label (one per cluster start) and the run's own `run`
tag; on KubeRay a PodMonitor adds `ray_io_cluster`. Template variables follow Ray's default
dashboards (`${datasource}`, `$SessionName`, `$Cluster`) plus `$run`.

Gauges are set by the driver once per phase, so panels show their latest value per run (max
over the driver's series); counters are shown as rates.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

OUT = Path(__file__).with_name("axiom-dashboard.json")
FILTER = 'SessionName=~"$SessionName", ray_io_cluster=~"$Cluster", run=~"$run"'
RATE = "$__rate_interval"

# (title, description, unit, panel type, [(PromQL, legend)], width)
PANELS: list[tuple[str, str, str, str, list[tuple[str, str]], int]] = [
    (
        "Iteration",
        "Current expert-iteration round (model K being sampled or trained).",
        "none",
        "stat",
        [(f"max by (run) (ray_axiom_iteration{{{FILTER}}})", "{{run}}")],
        6,
    ),
    (
        "Pass rate",
        "Per-sample pass rate of the last pass (samples: training problems; eval: held out).",
        "percentunit",
        "stat",
        [(f"max by (run, kind) (ray_axiom_pass_rate{{{FILTER}}})", "{{run}} {{kind}}")],
        6,
    ),
    (
        "Problems solved",
        "Problems with at least one passing candidate in the last pass.",
        "none",
        "stat",
        [(f"max by (run, kind) (ray_axiom_problems_solved{{{FILTER}}})", "{{run}} {{kind}}")],
        6,
    ),
    (
        "Adapter swap time",
        "Seconds for the live generators to load the new adapter (no restart).",
        "s",
        "stat",
        [(f"max by (run) (ray_axiom_adapter_swap_seconds{{{FILTER}}})", "{{run}}")],
        6,
    ),
    (
        "Samples generated / s",
        "Candidates generated per second.",
        "ops",
        "timeseries",
        [
            (
                f"sum by (run, kind) (rate(ray_axiom_samples_generated_total{{{FILTER}}}[{RATE}]))",
                "{{run}} {{kind}}",
            )
        ],
        12,
    ),
    (
        "Verified by status / s",
        "Verdicts per second: passed, failed, timeout, memory, error, rejected.",
        "ops",
        "timeseries",
        [
            (
                f"sum by (status) (rate(ray_axiom_samples_verified_total{{{FILTER}}}[{RATE}]))",
                "{{status}}",
            )
        ],
        12,
    ),
    (
        "Generated tokens / s",
        "Throughput of the last pass (gauge) and the token counter's rate.",
        "short",
        "timeseries",
        [
            (
                f"max by (run, kind) (ray_axiom_tokens_per_second{{{FILTER}}})",
                "last pass {{run}} {{kind}}",
            ),
            (
                f"sum by (run) (rate(ray_axiom_tokens_generated_total{{{FILTER}}}[{RATE}]))",
                "rate {{run}}",
            ),
        ],
        12,
    ),
    (
        "Pass rate over time",
        "Per-sample pass rate of each pass, by kind.",
        "percentunit",
        "timeseries",
        [(f"max by (run, kind) (ray_axiom_pass_rate{{{FILTER}}})", "{{run}} {{kind}}")],
        12,
    ),
    (
        "Train loss",
        "Final loss of the last LoRA SFT run (mean per completion token).",
        "none",
        "timeseries",
        [(f"max by (run) (ray_axiom_train_loss{{{FILTER}}})", "{{run}}")],
        12,
    ),
    (
        "Train tokens / s",
        "LoRA SFT throughput, all Ray Train workers together.",
        "short",
        "timeseries",
        [(f"max by (run) (ray_axiom_train_tokens_per_second{{{FILTER}}})", "{{run}}")],
        12,
    ),
    (
        "Phase wall time",
        "Seconds of the last samples / eval / train / redeploy phase.",
        "s",
        "timeseries",
        [(f"max by (run, phase) (ray_axiom_phase_seconds{{{FILTER}}})", "{{run}} {{phase}}")],
        12,
    ),
    (
        "Current pass: generated, judged, passed",
        "Candidates of the pass running now, as they stream from the generators to the verifiers.",
        "none",
        "timeseries",
        [
            (f"max by (run, kind) (ray_axiom_pass_samples_{what}{{{FILTER}}})", f"{what} {{{{run}}}} {{{{kind}}}}")
            for what in ("generated", "judged", "passed")
        ],
        12,
    ),
    (
        "Current pass: tokens / s and ETA",
        "Generated tokens per second of the pass so far, and the seconds it estimates are left.",
        "short",
        "timeseries",
        [
            (f"max by (run, kind) (ray_axiom_pass_tokens_per_second{{{FILTER}}})", "tokens/s {{run}} {{kind}}"),
            (f"max by (run, kind) (ray_axiom_pass_eta_seconds{{{FILTER}}})", "ETA s {{run}} {{kind}}"),
        ],
        12,
    ),
    (
        "Adapter swap time over time",
        "Seconds to redeploy each new adapter into the live generators.",
        "s",
        "timeseries",
        [(f"max by (run) (ray_axiom_adapter_swap_seconds{{{FILTER}}})", "{{run}}")],
        12,
    ),
]


def _variable(name: str, label: str, query: str, all_value: str, multi: bool) -> dict[str, Any]:
    return {
        "name": name,
        "label": label,
        "type": "query",
        "datasource": "${datasource}",
        "definition": query,
        "query": {"query": query, "refId": f"{name}-query"},
        "refresh": 2,
        "includeAll": True,
        "allValue": all_value,
        "multi": multi,
        "sort": 2,
        "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
        "hide": 0,
    }


def _panel(
    pid: int,
    title: str,
    description: str,
    unit: str,
    kind: str,
    targets: list[tuple[str, str]],
    grid: dict[str, int],
) -> dict[str, Any]:
    panel: dict[str, Any] = {
        "id": pid,
        "type": kind,
        "title": title,
        "description": description,
        "datasource": "${datasource}",
        "gridPos": grid,
        "fieldConfig": {"defaults": {"unit": unit, "min": 0}, "overrides": []},
        "targets": [
            {
                "datasource": "${datasource}",
                "expr": expr,
                "legendFormat": legend,
                "refId": chr(65 + i),
                "interval": "",
            }
            for i, (expr, legend) in enumerate(targets)
        ],
    }
    if unit == "percentunit":
        panel["fieldConfig"]["defaults"]["max"] = 1
    if kind == "stat":
        panel["options"] = {
            "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
            "graphMode": "area",
            "colorMode": "value",
            "textMode": "auto",
        }
    else:
        panel["options"] = {
            "legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
            "tooltip": {"mode": "multi", "sort": "desc"},
        }
        panel["fieldConfig"]["defaults"]["custom"] = {
            "drawStyle": "line",
            "lineWidth": 1,
            "fillOpacity": 10,
            "showPoints": "auto",
            "spanNulls": True,
        }
    return panel


def build() -> dict[str, Any]:
    panels, x, y, row_h = [], 0, 0, 0
    for pid, (title, description, unit, kind, targets, width) in enumerate(PANELS, start=1):
        height = 5 if kind == "stat" else 8
        if x + width > 24:
            x, y = 0, y + row_h
            row_h = 0
        panels.append(
            _panel(
                pid,
                title,
                description,
                unit,
                kind,
                targets,
                {"h": height, "w": width, "x": x, "y": y},
            )
        )
        x, row_h = x + width, max(row_h, height)
    return {
        "title": "axiom-ray",
        "uid": "axiom-ray-run",
        "description": "Expert iteration runs of axiom-ray: generation, verification, training and "
        "redeploy (metrics from axiom_ray/metrics.py via Ray's Prometheus export).",
        "tags": ["ray", "axiom-ray"],
        "editable": True,
        "graphTooltip": 1,
        "schemaVersion": 39,
        "version": 1,
        "refresh": "30s",
        "time": {"from": "now-6h", "to": "now"},
        "timepicker": {},
        "timezone": "",
        "annotations": {"list": []},
        "links": [],
        "templating": {
            "list": [
                {
                    "name": "datasource",
                    "label": "Data source",
                    "type": "datasource",
                    "query": "prometheus",
                    "description": "The Prometheus that scrapes the Ray cluster.",
                    "hide": 0,
                    "current": {},
                    "refresh": 1,
                    "regex": "",
                },
                _variable(
                    "SessionName",
                    "Ray session",
                    "label_values(ray_axiom_iteration, SessionName)",
                    ".+",
                    False,
                ),
                _variable(
                    "Cluster",
                    "Cluster",
                    "label_values(ray_axiom_iteration, ray_io_cluster)",
                    ".*",
                    False,
                ),
                _variable(
                    "run",
                    "Run",
                    'label_values(ray_axiom_iteration{SessionName=~"$SessionName"}, run)',
                    ".+",
                    True,
                ),
            ]
        },
        "panels": panels,
    }


def render() -> str:
    return json.dumps(build(), indent=2) + "\n"


if __name__ == "__main__":
    OUT.write_text(render())
    print(f"wrote {OUT}")
