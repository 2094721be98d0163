"""Resume after SIGKILL at every phase: the driver runs as a subprocess on the session cluster.

One interrupted run is killed once in each phase in turn (iteration 0: samples mid-write, eval;
iteration 1: train after an epoch checkpoint, redeploy, samples while generating before any row
is written, eval),
resumed each time by rerunning the same command, then compared with an uninterrupted run of the
same configuration: the same candidates (ids from the run's own id, the same code and verdicts),
none missing or doubled, the same training set and bit-identical adapter, no temporary
directory left, and no phase done twice. Generators are the scripted test double of
tests/fault_driver.py (the tiny model, with correct answers for some candidates so that iteration
1 trains, and slowed calls so that short phases can be caught running).
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import fault_driver
import pyarrow.parquet as pq
import pytest
from fault_driver import resume_config, start_scripted_generators
from tiny_model import tiny_assets

from axiom_ray.loop import run_iterations
from axiom_ray.rundir import RunDir
from axiom_ray.samples import sample_id

log = logging.getLogger(__name__)
KILL_TIMEOUT_S = 300  # per driver launch, generous: the machine's cores are shared
GENERATE_DELAY_S = 1.0  # scripted generator: each generate() call takes at least this long
ADAPTER_DELAY_S = 1.5  # ... and each adapter load, so redeploy lasts long enough to be caught


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return tiny_assets(tmp_path_factory.getbasetemp())


@dataclass(frozen=True)
class Kill:
    iteration: int
    phase: str
    when: str = "running"  # running | parquet (rows in the temp dir) | generating | checkpoint

    def label(self) -> str:
        return f"iter {self.iteration} {self.phase} ({self.when})"


KILLS = (
    Kill(0, "samples", "parquet"),  # generate, verify and write stream together: kill mid-write
    Kill(0, "eval"),
    Kill(1, "train", "checkpoint"),  # an epoch checkpoint is registered: resume continues from it
    Kill(1, "redeploy"),
    Kill(1, "samples", "generating"),  # inside a generate call, before any row is written
    Kill(1, "eval"),
)


def manifest(storage: Path) -> dict[str, Any]:
    path = storage / "manifest.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def phase_status(m: dict[str, Any], k: int, name: str) -> str | None:
    return m.get("iterations", {}).get(str(k), {}).get("phases", {}).get(name, {}).get("status")


def temp_parquet(storage: Path, k: int, phase: str) -> list[Path]:
    return sorted((storage / f"iter_{k}").glob(f".tmp-{phase}-*/*.parquet"))


def generating(address: str) -> bool:
    from ray.util.state import list_tasks

    return bool(list_tasks(address=address, limit=10, raise_on_missing_output=False, filters=[
        ("name", "=", "ScriptedGenerator.generate_stream"), ("state", "=", "RUNNING")]))


def kill_condition_met(storage: Path, kill: Kill, address: str) -> bool:
    if phase_status(manifest(storage), kill.iteration, kill.phase) != "running":
        return False
    if kill.when == "parquet":
        return bool(temp_parquet(storage, kill.iteration, kill.phase))
    if kill.when == "generating":
        return not temp_parquet(storage, kill.iteration, kill.phase) and generating(address)
    if kill.when == "checkpoint":
        return (storage / f"iter_{kill.iteration}" / "checkpoints" / "checkpoint_manager_snapshot.json").is_file()
    return True


def launch(model: str, storage: Path, address: str, log_path: Path) -> subprocess.Popen:
    return fault_driver.launch(["--model", model, "--storage", str(storage), "--generate-delay", str(GENERATE_DELAY_S),
                                "--adapter-delay", str(ADAPTER_DELAY_S)], {**os.environ, "RAY_ADDRESS": address}, log_path)


def run_until_killed(model: str, storage: Path, address: str, kill: Kill, log_path: Path) -> dict[str, Any]:
    """Launch the driver, SIGKILL it once `kill`'s condition holds; the manifest at that time."""
    proc = launch(model, storage, address, log_path)
    fault_driver.kill_when(proc, lambda: kill_condition_met(storage, kill, address), kill.label(), KILL_TIMEOUT_S,
                           log_path)
    return manifest(storage)


def run_to_completion(model: str, storage: Path, address: str, log_path: Path) -> None:
    fault_driver.wait_done(launch(model, storage, address, log_path), KILL_TIMEOUT_S, log_path)


def rows_by_key(storage: Path) -> dict[tuple[Any, ...], dict[str, Any]]:
    """Every sample and eval row of the run, keyed by what its sample_id is derived from
    (iteration, kind, problem, attempt, index); fails on a doubled key."""
    out: dict[tuple[Any, ...], dict[str, Any]] = {}
    for part in sorted(storage.glob("iter_*/*")):
        if part.name not in ("samples", "eval"):
            continue
        for row in pq.read_table(part).to_pylist():
            key = (row["iteration"], part.name, row["problem_id"], row["attempt"], row["index"])
            assert key not in out, f"doubled row {key}"
            out[key] = row
    return out


def done_phases(m: dict[str, Any]) -> dict[tuple[int, str], str]:
    return {(int(k), name): p.get("finished_at") for k, it in m.get("iterations", {}).items()
            for name, p in it["phases"].items() if p.get("status") == "done"}


def test_killed_at_every_phase_and_resumed_equals_an_uninterrupted_run(
        ray_cluster, tiny, tmp_path, monkeypatch):
    address = ray_cluster.get_runtime_context().gcs_address
    model = tiny["model"]
    storage = tmp_path / "killed"
    snapshots: list[dict[str, Any]] = []
    t0 = time.perf_counter()
    for i, kill in enumerate(KILLS):
        before = {key: len(rows) for key, rows in _row_counts(storage).items()}
        m = run_until_killed(model, storage, address, kill, tmp_path / f"driver-{i}.log")
        # Killed inside the phase: it is not marked done, and nothing of it was published.
        assert phase_status(m, kill.iteration, kill.phase) == "running", kill.label()
        if kill.phase in ("samples", "eval"):
            assert not (storage / f"iter_{kill.iteration}" / kill.phase).exists(), kill.label()
        in_temp = sum(pq.read_metadata(p).num_rows for p in temp_parquet(storage, kill.iteration, kill.phase))
        log.warning("killed at %s after %.0fs: rows published before %s, %d rows in the temp dir",
                    kill.label(), time.perf_counter() - t0, before, in_temp)
        if kill.when == "parquet":
            assert in_temp > 0
        snapshots.append(m)
    run_to_completion(model, storage, address, tmp_path / "driver-final.log")
    killed_seconds = time.perf_counter() - t0

    # The uninterrupted reference: the same configuration, in this process, no delays needed.
    monkeypatch.setattr("axiom_ray.loop.start_generators", start_scripted_generators)
    reference = tmp_path / "reference"
    run_iterations(resume_config(model, str(reference)))
    log.warning("interrupted run %.0fs (6 kills), reference %.0fs", killed_seconds,
                time.perf_counter() - t0 - killed_seconds)

    final = RunDir.open(str(storage))
    m = final.manifest.to_dict()
    # Every phase done; none done twice (redeploy acts on live actors, so it reruns by design).
    for k, name in [(0, "samples"), (0, "eval"), (1, "train"), (1, "redeploy"), (1, "samples"), (1, "eval")]:
        assert phase_status(m, k, name) == "done", (k, name)
    for snap in snapshots:
        for key, finished in done_phases(snap).items():
            if key[1] != "redeploy":
                assert done_phases(m)[key] == finished, f"{key} was done, then redone"
    assert not [p for p in storage.rglob(".tmp-*")], "temporary output left behind"

    # The same candidates as the uninterrupted run: ids, code and verdicts; none lost or doubled.
    got, want = rows_by_key(storage), rows_by_key(reference)
    assert sorted(got) == sorted(want) and len(got) == 2 * (3 * 2 + 1 * 2)
    ids = [r["sample_id"] for r in got.values()]
    assert len(set(ids)) == len(ids)
    assert {r["sample_id"] for r in got.values()} == {sample_id(final.run_id, k[0], k[2], k[1], k[3], k[4]) for k in want}
    for key, row in want.items():
        for column in ("code", "completion", "passed", "status", "adapter"):
            assert got[key][column] == row[column], (key, column)
    assert sum(r["passed"] for r in got.values()) > 0

    # Training resumed from the killed run's checkpoint and made the same adapter.
    assert m["iterations"]["1"]["phases"]["train"]["metrics"]["resumed_from_epoch"] >= 1
    train = sorted(pq.read_table(storage / "iter_1/train").column("code").to_pylist())
    assert train and train == sorted(pq.read_table(reference / "iter_1/train").column("code").to_pylist())
    weights = "iter_1/adapter/adapter_model.safetensors"
    assert (storage / weights).read_bytes() == (reference / weights).read_bytes()


def _row_counts(storage: Path) -> dict[str, list[Any]]:
    return {f"{p.parent.name}/{p.name}": pq.read_table(p).column("sample_id").to_pylist()
            for p in sorted(storage.glob("iter_*/*")) if p.name in ("samples", "eval")}

