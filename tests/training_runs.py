"""Training runs compared (test_training, test_training_stack): a run whose Ray Train workers
are SIGKILLed mid-way against the same run undisturbed, and two runs' loss curves and adapters
within float tolerance."""

from __future__ import annotations

import math
import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

from axiom_ray.training import train_adapter

LOSS_RTOL = 1e-3  # float32 sums in another order (all-reduce, ZeRO partitions)


def assert_same_curve(a: Any, b: Any, rtol: float = LOSS_RTOL) -> None:
    assert a.steps == b.steps and len(a.losses) == len(b.losses)
    for x, y in zip(a.losses, b.losses, strict=True):
        assert math.isclose(x, y, rel_tol=rtol), (a.losses, b.losses)


def adapter_tensors(folder: str) -> dict:
    from safetensors.torch import load_file

    return load_file(str(Path(folder) / "adapter_model.safetensors"))


def assert_same_adapter(a: str, b: str, atol: float = 1e-3) -> None:
    import torch

    ta, tb = adapter_tensors(a), adapter_tensors(b)
    assert ta.keys() == tb.keys() and ta
    for k in ta:
        assert torch.allclose(ta[k], tb[k], atol=atol), k


def killed_and_undisturbed(address: str, tmp_path: Path, timeout_s: float, **kwargs: Any) -> tuple[Any, Any]:
    """Train twice with `kwargs` (train_adapter's, without adapter_dir and run_name): first with
    every Ray Train worker SIGKILLed as soon as the run's first checkpoint is registered (Ray
    Train restarts them from it), then undisturbed. Their results (killed, undisturbed); the
    adapters are under tmp_path/killed and tmp_path/clean."""
    from ray.util.state import list_actors

    out: dict[str, Any] = {}

    def killed_run() -> None:
        out["killed"] = train_adapter(adapter_dir=str(tmp_path / "killed"), run_name="k", **kwargs)

    thread = threading.Thread(target=killed_run)
    thread.start()
    snapshot = tmp_path / "k" / "checkpoint_manager_snapshot.json"  # written once registered
    deadline = time.monotonic() + timeout_s
    while not snapshot.exists() and thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.02)
    workers = list_actors(address=address, filters=[("class_name", "=", "RayTrainWorker"), ("state", "=", "ALIVE")])
    assert workers, "the run ended before its workers could be killed"
    for worker in workers:
        os.kill(worker.pid, signal.SIGKILL)
    thread.join()
    clean = train_adapter(adapter_dir=str(tmp_path / "clean"), run_name="c", **kwargs)
    return out["killed"], clean
