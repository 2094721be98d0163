"""A node dies mid-pass on a simulated multi-node cluster; the pass finishes on the rest.

Run as its own process by tests/test_faults.py (a `ray.cluster_utils.Cluster` cannot share the
pytest process with the session's `ray.init(address="local")`). Cluster: a head with no CPU (the
driver's node, never removed) and two 2-CPU nodes. One scripted generator (tests/fault_driver.py)
and one verifier run on them. While the generator is inside a generate call (plus a seeded random
delay), its node is removed without warning (`Cluster.remove_node(..., allow_graceful=False)`):
the generator, and whatever else lived there, dies with it. Prints one line
`NODE_FAILURE_RESULT {json}` with the rows and placements the test asserts on.

    python tests/node_failure_scenario.py --model DIR --storage DIR --seed N
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import sys
import tempfile
import threading
import time
import traceback
from pathlib import Path
from typing import Any

for key, value in {
    "RAY_AUTH_MODE": "disabled", "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_USAGE_STATS_ENABLED": "0",
    "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
}.items():
    os.environ.setdefault(key, value)

sys.path.insert(0, str(Path(__file__).resolve().parent))
MARKER = "NODE_FAILURE_RESULT "
PROBLEMS = ("two_sum", "fizzbuzz", "reverse_string", "is_palindrome")
SAMPLES = 2


def config(model: str, storage: str) -> Any:
    from axiom_ray.config import build_config

    return build_config(overrides=[
        f"model={model}", f"storage={storage}", "iterations=0", f"problems={','.join(PROBLEMS)}",
        "generation.engine=transformers", f"generation.samples={SAMPLES}", "generation.max_tokens=8",
        "generation.batch_size=1", "verifier.workers=1", "evaluation.problems="])


def alive(fragment: str) -> list[Any]:
    from ray.util.state import list_actors

    actors = list_actors(filters=[("state", "=", "ALIVE")], limit=1000, raise_on_missing_output=False)
    return [a for a in actors if fragment in a.class_name]


def generating() -> bool:
    from ray.util.state import list_tasks

    return bool(list_tasks(filters=[("name", "=", "ScriptedGenerator.generate_stream"), ("state", "=", "RUNNING")],
                           limit=10, raise_on_missing_output=False))


def wait_for(what: str, predicate: Any, thread: threading.Thread, timeout_s: float = 300) -> Any:
    deadline = time.monotonic() + timeout_s
    while not (value := predicate()):
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError(f"never saw {what}")
        time.sleep(0.1)
    return value


def alive_nodes_without(node_id: str, timeout_s: float = 120) -> list[str]:
    """The alive nodes once `node_id` is no longer among them (or as they are at the timeout)."""
    import ray

    deadline = time.monotonic() + timeout_s
    while True:
        nodes = [n["NodeID"] for n in ray.nodes() if n["Alive"]]
        if node_id not in nodes or time.monotonic() > deadline:
            return nodes
        time.sleep(0.5)


def run(args: argparse.Namespace, cluster: Any, result: dict[str, Any]) -> None:
    import pyarrow.parquet as pq
    from fault_driver import use_scripted_generators

    from axiom_ray.generation.pool import wait_ready
    from axiom_ray.loop import prepare

    nodes = {n.node_id: n for n in cluster.worker_nodes}
    use_scripted_generators(solutions={}, generate_delay_s=1.0)
    loop = prepare(config(args.model, args.storage))
    errors: list[BaseException] = []

    def phase() -> None:
        try:
            loop.phase(0, "samples", lambda: loop.sample(0, "samples"))
        except BaseException as e:
            errors.append(e)

    try:
        thread = threading.Thread(target=phase, daemon=True)
        thread.start()
        [gen] = wait_for("the generator", lambda: alive("ScriptedGenerator"), thread)
        wait_for("a generate call", generating, thread)
        delay = random.Random(args.seed).uniform(0.0, 0.8)
        time.sleep(delay)
        tmp = list(Path(args.storage, "iter_0").glob(".tmp-samples-*/*.parquet"))
        result["rows_before"] = sum(pq.read_metadata(p).num_rows for p in tmp)
        result["removed"] = {"node_id": gen.node_id, "delay_s": round(delay, 2),
                             "actors": [a.class_name for a in alive("") if a.node_id == gen.node_id]}
        cluster.remove_node(nodes[gen.node_id], allow_graceful=False)
        thread.join(300)
        if errors:
            raise errors[0]
        if thread.is_alive():
            raise RuntimeError("the pass did not finish after the node was removed")
        # The loop's own wait: a call that reaches the generator before Ray has noticed its old
        # node is gone fails at once (ActorUnavailableError), and is asked again until it is back.
        result["generator_after"] = wait_ready(loop.pool.actors[0])
        result["generator_node_after"] = [a.node_id for a in alive("ScriptedGenerator")]
        # The pass can finish before the GCS marks the node dead: a killed raylet takes its
        # workers with it at once, but its node is declared dead only after missed health checks.
        result["alive_nodes"] = alive_nodes_without(gen.node_id)
    finally:
        loop.close()
    rows = pq.read_table(Path(args.storage, "iter_0", "samples")).to_pylist()
    result["rows"] = [{k: r[k] for k in ("sample_id", "problem_id", "index", "status")} for r in rows]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--storage", required=True)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    # This cluster's sockets and address file stay out of the shared /tmp/ray.
    ray_tmp = tempfile.mkdtemp(prefix="axnf-", dir="/tmp")
    os.environ["RAY_TMPDIR"] = ray_tmp

    import ray
    from ports import free_port
    from ray.cluster_utils import Cluster

    t0 = time.perf_counter()
    result: dict[str, Any] = {"ok": False}
    store = 100 * 1024 * 1024
    cluster = Cluster(initialize_head=True, head_node_args={
        "num_cpus": 0, "object_store_memory": store, "include_dashboard": True, "dashboard_host": "127.0.0.1",
        "dashboard_port": free_port()})  # the State API needs the dashboard
    try:
        for _ in range(2):
            cluster.add_node(num_cpus=2, object_store_memory=store)
        cluster.wait_for_nodes()
        cluster.connect()
        run(args, cluster, result)
        result["ok"] = True
    except BaseException as e:  # reported in the JSON line: the test prints it with the log
        result["error"] = f"{type(e).__name__}: {e}"
        result["traceback"] = traceback.format_exc()
    finally:
        ray.shutdown()
        cluster.shutdown()
        result["seconds"] = round(time.perf_counter() - t0, 1)
        if result["ok"]:
            shutil.rmtree(ray_tmp, ignore_errors=True)
    print(MARKER + json.dumps(result, default=str), flush=True)
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
