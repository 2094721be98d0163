"""A direct run (`python jobs/iterate.py`, `axiom iterate`) with no cluster, with a stale address,
with RAY_ADDRESS: real driver processes and real Ray clusters.

Each driver gets its own Ray temp dir (RAY_TMPDIR, short: Ray's socket paths live under it), so
the address file it reads (`<RAY_TMPDIR>/ray/ray_current_cluster`) is the test's, never another
cluster's on this machine.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from ports import free_port
from tiny_model import tiny_assets

from axiom_ray.config import build_config
from axiom_ray.placement import PlanError, local_cluster_cpus, make_plan
from axiom_ray.ray_cluster import (
    ADDRESS_FILE,
    ClusterAddressError,
    checked_target,
    find_target,
    probe,
)
from axiom_ray.rundir import RunDir

REPO = Path(__file__).resolve().parent.parent
TINY_PLAN = ["--engine", "transformers", "--problems", "two_sum", "--samples", "1", "--max-tokens", "8",
             "--iterations", "0", "--eval-problems", ""]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return tiny_assets(tmp_path_factory.getbasetemp())


@pytest.fixture
def ray_tmp():
    path = tempfile.mkdtemp(prefix="axr-", dir="/tmp")  # short: unix socket paths are limited
    yield path
    shutil.rmtree(path, ignore_errors=True)


def driver_env(ray_tmp: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env.update(RAY_TMPDIR=ray_tmp, RAY_AUTH_MODE="disabled", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
               AXIOM_DASHBOARD_PORT=str(free_port()), RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0",
               PYTHONPATH=str(REPO))
    env.update(extra)
    return env


def write_address_file(ray_tmp: str, address: str) -> Path:
    path = Path(ray_tmp) / "ray" / ADDRESS_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(address)
    return path


def processes_using(path: str) -> list[str]:
    """Command lines of live processes that name `path` (a cluster's raylet, GCS, workers)."""
    out = []
    for pid in os.listdir("/proc"):
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if path in cmd and "pytest" not in cmd:
            out.append(cmd)
    return out


def dead_address() -> str:
    return f"127.0.0.1:{free_port()}"  # bound a moment ago and released: nothing listens there


@pytest.mark.slow
def test_direct_run_with_a_stale_address_starts_and_stops_a_local_cluster(tiny, ray_tmp, tmp_path) -> None:
    """What scripts/run.sh leaves behind: the address of a cluster it has stopped."""
    stale = dead_address()
    address_file = write_address_file(ray_tmp, stale)
    storage = tmp_path / "run"
    r = subprocess.run([sys.executable, "jobs/iterate.py", "--model", tiny["model"], *TINY_PLAN, "--storage",
                        str(storage)], cwd=REPO, env=driver_env(ray_tmp), capture_output=True, text=True,
                       timeout=400)
    assert r.returncode == 0, r.stderr[-3000:]
    warning = [line for line in r.stderr.splitlines() if stale in line]
    assert len(warning) == 1 and str(address_file) in warning[0] and "starting a local cluster" in warning[0]
    assert "started a local Ray cluster" in r.stderr
    manifest = RunDir.open(str(storage)).manifest
    assert manifest.iteration(0).phase("samples").is_done
    assert (storage / "report.md").is_file()
    # the cluster it started is stopped: no raylet, GCS or worker of its temp dir is left
    deadline = time.monotonic() + 30
    while processes_using(ray_tmp) and time.monotonic() < deadline:
        time.sleep(1)
    assert processes_using(ray_tmp) == []


def test_unreachable_ray_address_is_one_line_within_seconds(ray_tmp, tmp_path) -> None:
    address = dead_address()
    t0 = time.monotonic()
    r = subprocess.run([sys.executable, "jobs/iterate.py", *TINY_PLAN, "--storage", str(tmp_path / "run")],
                       cwd=REPO, env=driver_env(ray_tmp, RAY_ADDRESS=address), capture_output=True, text=True,
                       timeout=60)
    seconds = time.monotonic() - t0
    assert r.returncode == 2, r.stderr[-2000:]
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and f"RAY_ADDRESS={address}" in lines[0] and "no Ray cluster answers" in lines[0]
    assert "Traceback" not in r.stderr
    assert seconds < 20, seconds  # the probe gives up after 2 s, before Ray is even imported
    assert not (tmp_path / "run").exists()  # nothing written before the cluster question is settled


def test_ray_address_of_a_running_cluster_is_joined(ray_cluster, tiny, ray_tmp, tmp_path) -> None:
    """The test session's cluster (4 CPUs) stands for one started with `ray start` or by `ray job
    submit`. A plan of 9 generators does not fit it: the driver that joined says so about that
    cluster's 4 CPUs (a local cluster would have been sized for the plan); a plan that fits runs
    on it in test_direct_run_with_a_stale_address_starts_and_stops_a_local_cluster's way."""
    address = ray_cluster.get_runtime_context().gcs_address
    r = subprocess.run([sys.executable, "-m", "axiom_ray", "iterate", "--model", tiny["model"], *TINY_PLAN,
                        "--replicas", "9", "--storage", str(tmp_path / "run")], cwd=REPO,
                       env=driver_env(ray_tmp, RAY_ADDRESS=address), capture_output=True, text=True, timeout=120)
    assert r.returncode == 2, r.stderr[-3000:]
    assert f"joined the Ray cluster at {address} (from RAY_ADDRESS)" in r.stderr
    assert "needs 11 CPU (cluster has 4)" in r.stderr.strip().splitlines()[-1]
    assert not list((Path(ray_tmp) / "ray").glob("session_*"))  # no cluster of its own was started
    assert ray_cluster.cluster_resources().get("CPU") == 4  # the joined cluster is still up


def test_address_file_of_a_running_cluster_is_joined_and_a_dead_one_is_not(ray_cluster, ray_tmp) -> None:
    """`ray start` on this machine records its address where ray_cluster looks for it."""
    live = ray_cluster.get_runtime_context().gcs_address
    env = {"RAY_TMPDIR": ray_tmp}
    assert find_target(env).address is None  # nothing recorded: a local cluster
    path = write_address_file(ray_tmp, live)
    assert checked_target(env).address == live and checked_target(env).source == str(path)
    write_address_file(ray_tmp, dead_address())
    assert checked_target(env).address is None
    assert probe(live) is None and probe(dead_address())
    assert find_target({"RAY_TMPDIR": ray_tmp, "RAY_ADDRESS": "local"}).address is None
    # RAY_ADDRESS wins over the file; a dead one (Ray Client's ray:// too) is an error, not a hang
    write_address_file(ray_tmp, live)
    for dead in (dead_address(), "ray://" + dead_address()):
        with pytest.raises(ClusterAddressError, match=f"RAY_ADDRESS={dead}: no Ray cluster answers"):
            checked_target({"RAY_TMPDIR": ray_tmp, "RAY_ADDRESS": dead})
    with pytest.raises(ClusterAddressError, match="is a dashboard address"):
        find_target({"RAY_ADDRESS": "http://127.0.0.1:8265"})


@pytest.mark.parametrize("overrides, machine, expected", [
    ([], 2, 4),  # the default plan on this 2-core machine: what scripts/run.sh starts
    (["generation.replicas=3"], 2, 6),
    ([], 16, 16),  # a bigger machine: its cores
])
def test_local_cluster_is_sized_for_the_plan(overrides, machine, expected) -> None:
    cfg = build_config(overrides=overrides)
    cpus = local_cluster_cpus(cfg, machine)
    assert cpus == expected
    make_plan(cfg, {"CPU": cpus})  # fits (raises PlanError otherwise)
    with pytest.raises(PlanError, match=r"needs \d+ CPU \(cluster has 2\)"):
        make_plan(cfg, {"CPU": 2})  # the error a 2-CPU cluster gave before
