"""One small expert iteration on a simulated multi-node Ray cluster, run as its own process.

`tests/test_multinode.py` runs this script with `sys.executable`: a `ray.cluster_utils.Cluster`
(several raylets on this machine) cannot live in the pytest process, which holds the suite's
session-wide `ray.init(address="local")` cluster. The script prints one line
`MULTINODE_RESULT {json}` with what the test asserts on: the nodes and their resources, where
each actor ran (State API), the rows and adapter files in the shared storage, and timings.

Cluster: a head with 1 CPU (the driver's node), a "GPU node" with 1 CPU and 1 logical GPU, and
two CPU nodes with 1 CPU each. The generator asks for `num_gpus=1` and `num_cpus=1`, so it can
only land on the GPU node and it fills that node's CPU, so the verifiers (1 CPU each) cannot.
The logical GPU has no device behind it: the transformers engine finds no CUDA
(torch.cuda.is_available() is False on this CPU build) and runs on the CPU.

The iteration: the iteration-0 samples are written here (verified two_sum solutions, since the
tiny random model never passes a test), then the real loop runs `iterations=1`: Ray Train
trains adapter 1 on them, the live generator loads it from the shared run directory, and
model 1 samples and is verified on the cluster.

    python tests/multinode_scenario.py --model DIR --storage DIR
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

# Set before Ray starts the nodes: every raylet and worker inherits this environment.
for key, value in {
    "RAY_AUTH_MODE": "disabled",
    "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
    "RAY_USAGE_STATS_ENABLED": "0",
    "RAY_DEDUP_LOGS": "0",
    "TOKENIZERS_PARALLELISM": "false",
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
}.items():
    os.environ.setdefault(key, value)

MARKER = "MULTINODE_RESULT "
TWO_SUM = (
    "def two_sum(nums, target):\n    seen = {}\n    for i, x in enumerate(nums):\n"
    "        if target - x in seen:\n            return [seen[target - x], i]\n        seen[x] = i\n"
)


def config(model: str, storage: str):
    from axiom_ray.config import build_config

    return build_config(
        overrides=[
            f"model={model}",
            f"storage={storage}",
            "iterations=1",
            "problems=two_sum,fizzbuzz",
            "generation.engine=transformers",
            "generation.samples=2",
            "generation.max_tokens=16",
            "generation.num_gpus=1",  # must land on the node that has the (logical) GPU
            "generation.num_cpus=1",
            "verifier.workers=2",
            "training.use_gpu=false",  # the GPU is logical: torch cannot train on it
            "training.epochs=1",
            "training.grad_accum=1",
            "training.cpus_per_worker=1",  # every simulated node has a single CPU
            "evaluation.problems=",  # no held-out pass: keeps the run short
        ]
    )


def write_verified_samples(run: Any, rows: int) -> None:
    """Model 0's samples as if it had solved two_sum, marked done, so iteration 1 trains."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from axiom_ray.samples import code_hash, sample_id

    table = pa.Table.from_pylist(
        [
            {
                "run_id": run.run_id,
                "iteration": 0,
                "problem_id": "two_sum",
                "sample_id": sample_id(run.run_id, 0, "two_sum", "samples", 0, i),
                "prompt": "<|im_start|>user\nSolve two_sum<|im_end|>\n<|im_start|>assistant\n",
                "completion": f"```python\n{TWO_SUM}```",
                "code": TWO_SUM + "\n" * i,
                "passed": True,
                "passed_tests": 6,
                "total_tests": 6,
                "status": "passed",
                "reward": 1.0,
                "duration_ms": 1.0,
                "model": "tiny",
                "adapter": None,
                "temperature": 0.7,
                "seed": 0,
                "num_tokens": 40,
                "code_hash": code_hash(TWO_SUM),
                "created_at": "2026-01-01T00:00:00+00:00",
                "attempt": 0,
                "index": i,
                "finish_reason": "stop",
                "isolation": "test",
                "verdict_detail": "",
            }
            for i in range(rows)
        ]
    )
    run.storage.makedirs("iter_0/samples")
    pq.write_table(table, f"{run.uri('iter_0/samples')}/part-0.parquet")
    run.mark(0, "samples", "done", seconds=0.0, metrics={})


def actor_placements() -> list[dict[str, Any]]:
    from ray.util.state import list_actors

    return [
        {
            "class_name": a.class_name,
            "name": a.name,
            "state": a.state,
            "node_id": a.node_id,
            "pid": a.pid,
        }
        for a in list_actors(detail=True, limit=1000, raise_on_missing_output=False)
    ]


def storage_check_facts(storage: str, num_nodes: int) -> dict[str, Any]:
    """The multi-node storage rule on this cluster: refused without the escape hatch, accepted
    with it (AXIOM_SHARED_PATHS, set by the test: every node here shares this machine's disk)."""
    from axiom_ray.cluster_check import NodeLocalStorageError, check_storage_for_cluster

    facts: dict[str, Any] = {"num_nodes": num_nodes}
    try:
        check_storage_for_cluster(storage, num_nodes, shared_paths=[], mounts_text="")
        facts["refused_without_hatch"] = None
    except NodeLocalStorageError as e:
        facts["refused_without_hatch"] = str(e)
    check_storage_for_cluster(storage, num_nodes)  # raises if the hatch does not work
    facts["accepted_with_env"] = True
    return facts


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--storage", required=True)
    args = parser.parse_args()
    # All the simulated nodes are this machine: the run directory is shared by construction, so
    # it is marked shared the documented way (the test sets the same; this covers a hand run).
    os.environ.setdefault("AXIOM_SHARED_PATHS", str(Path(args.storage).resolve().parent))
    # Keep this cluster's sessions, sockets and `ray_current_cluster` address file out of the
    # shared /tmp/ray, so no `ray.init()` elsewhere on the machine attaches to it.
    # (short, under /tmp: Ray's socket paths nest under it and Unix sockets allow 107 bytes)
    ray_tmp = tempfile.mkdtemp(prefix="axmn-", dir="/tmp")
    os.environ["RAY_TMPDIR"] = ray_tmp

    import ray
    from ports import free_port
    from ray.cluster_utils import Cluster

    from axiom_ray.cluster_check import alive_node_count
    from axiom_ray.loop import prepare
    from axiom_ray.rundir import RunDir

    t0 = time.perf_counter()
    result: dict[str, Any] = {"ok": False, "timings": {}}
    store = 100 * 1024 * 1024  # per node: four nodes share this machine's /dev/shm
    cluster = Cluster(
        initialize_head=True,
        head_node_args={
            "num_cpus": 1,
            "object_store_memory": store,
            "include_dashboard": True,  # the State API (and Ray Train's controller) need it
            "dashboard_host": "127.0.0.1",
            "dashboard_port": free_port(),  # 8265 is taken while the test session's cluster is up
        },
    )
    try:
        gpu_node = cluster.add_node(num_cpus=1, num_gpus=1, object_store_memory=store)
        for _ in range(2):
            cluster.add_node(num_cpus=1, object_store_memory=store)
        cluster.wait_for_nodes()
        cluster.connect()
        result["timings"]["cluster_s"] = round(time.perf_counter() - t0, 1)

        nodes = [n for n in ray.nodes() if n["Alive"]]
        result["nodes"] = [{"node_id": n["NodeID"], "resources": n["Resources"]} for n in nodes]
        result["gpu_node_id"] = gpu_node.node_id
        result["head_node_id"] = cluster.head_node.node_id
        result["storage_check"] = storage_check_facts(args.storage, alive_node_count(nodes))

        cfg = config(args.model, args.storage)
        write_verified_samples(RunDir.open_or_create(args.storage, cfg), rows=3)

        t1 = time.perf_counter()
        loop = prepare(cfg)  # what run_iterations does, keeping the generators to ask them
        result["generator_ready"] = ray.get([g.ready.remote() for g in loop.pool.actors])
        result["plan"] = loop.plan.describe()
        try:
            loop.run_all()
            # Placement is read before close(): dead actors stay listed, but read it live.
            result["actors"] = actor_placements()
        finally:
            loop.close()
        result["timings"]["iteration_s"] = round(time.perf_counter() - t1, 1)

        import pyarrow.parquet as pq

        run = RunDir.open(args.storage)
        rows = pq.read_table(run.uri("iter_1/samples")).to_pylist()
        result["iter1_rows"] = [
            {k: r[k] for k in ("problem_id", "adapter", "status", "iteration")} for r in rows
        ]
        result["adapter"] = run.adapter(1)
        adapter_dir = Path(args.storage) / "iter_1" / "adapter"
        result["adapter_files"] = (
            sorted(p.name for p in adapter_dir.iterdir()) if adapter_dir.is_dir() else []
        )
        result["phases"] = {
            name: run.phase(1, name).status for name in ("train", "redeploy", "samples")
        }
        result["train_metrics"] = run.phase(1, "train").metrics
        result["ok"] = True
    except BaseException as e:  # report it in the JSON: the test prints it with the logs
        result["error"] = f"{type(e).__name__}: {e}"
        result["traceback"] = traceback.format_exc()
    finally:
        ray.shutdown()
        cluster.shutdown()
        result["timings"]["total_s"] = round(time.perf_counter() - t0, 1)
        if result["ok"]:
            shutil.rmtree(ray_tmp, ignore_errors=True)
        else:
            result["ray_logs"] = ray_tmp  # kept for a post-mortem
    print(MARKER + json.dumps(result, default=str), flush=True)
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
