"""The run directory on a real S3 API server (moto's standalone server, tests/s3_server.py).

Credentials and endpoint reach every process the standard way, as environment variables
(AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_ENDPOINT_URL): the driver's, and the raylets' of
a cluster started by scripts/local_cluster.sh with them (as the nodes of a real cluster have
theirs). Nothing names them on a command line or in the config.

- the storage layer on S3: atomic writes, publish (S3 has no directory rename), temp cleanup,
  adapter download, the run directory's manifest, the report;
- a whole run on S3, killed in adapter 1's training after an epoch checkpoint and resumed by
  rerunning the same command: the sample_id set of an undisturbed run (every pass, problem and
  index once), nothing doubled or left in a temp, training resumed from its S3 checkpoint, the
  generators of iteration 1 sampling with adapter 1 (they can only have fetched it from S3), the
  report on S3, and the secret key in no manifest or log.
The scripted generators and the driver are tests/fault_driver.py's, as in tests/test_resume.py
(which kills a local run in every phase and compares it row by row with an uninterrupted one).
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Any

import fault_driver
import pyarrow.fs as pafs
import pytest
from local_cluster import LocalCluster, files_containing
from s3_server import S3Server, all_keys
from tiny_model import tiny_assets

from axiom_ray.config import build_config
from axiom_ray.evaluation import read_rows
from axiom_ray.report import write_report
from axiom_ray.rundir import MANIFEST, RunDir, RunDirError
from axiom_ray.samples import sample_id
from axiom_ray.storage import Storage, filesystem, local_folder

DRIVER_TIMEOUT_S = 900  # per launch, generous: the machine's cores are shared (load 40+ seen)


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    server = S3Server(tmp_path_factory.mktemp("s3") / "moto.log").start()
    yield server
    server.stop()


@pytest.fixture
def s3_env(s3, monkeypatch):
    """This process opens s3:// URIs the way any axiom-ray process does: from its environment."""
    for key, value in s3.env().items():
        monkeypatch.setenv(key, value)
    return s3


def test_pyarrow_finds_the_endpoint_and_keys_in_the_environment(s3_env):
    fs, path = filesystem(s3_env.uri("probe"))
    assert fs.type_name == "s3" and path == f"{s3_env.bucket}/probe"
    fs.create_dir(path)
    assert fs.get_file_info(f"{s3_env.bucket}").type == pafs.FileType.Directory


def test_storage_and_run_directory_on_s3(s3_env, tmp_path):
    root = s3_env.uri("unit/run")
    st = Storage(root)
    assert st.fs.type_name == "s3" and st.root == root

    st.write_json_atomic("a/b.json", {"x": 1})
    assert st.read_json("a/b.json") == {"x": 1} and st.list_dir("a") == ["b.json"]

    # publish: a folder of files (and a subfolder) replaces the old one; no temp is left
    st.write_text_atomic("iter_0/samples/old.parquet", "old")
    tmp = st.temp_name("iter_0/samples")
    st.write_text_atomic(f"{tmp}/part-0.parquet", "new")
    st.write_text_atomic(f"{tmp}/sub/x.txt", "deep")
    st.publish(tmp, "iter_0/samples")
    assert st.list_dir("iter_0") == ["samples"]
    assert st.list_dir("iter_0/samples") == ["part-0.parquet", "sub"]
    with st.fs.open_input_stream(f"{st.base}/iter_0/samples/sub/x.txt") as f:
        assert f.read() == b"deep"

    # a phase cut off: its temp folder is removed, the published one kept
    st.write_text_atomic(f"{st.temp_name('iter_0/eval')}/part-0.parquet", "half")
    st.clean_temps("iter_0")
    assert st.list_dir("iter_0") == ["samples"]

    # an adapter on S3 is downloaded for a generator or a train worker
    st.write_text_atomic("iter_1/adapter/adapter_config.json", "{}")
    local = local_folder(st.uri("iter_1/adapter"), str(tmp_path))
    assert (Path(local) / "adapter_config.json").read_text() == "{}"
    with pytest.raises(FileNotFoundError, match="no such folder"):
        local_folder(st.uri("iter_9/adapter"), str(tmp_path))

    # the manifest: created, reopened (resume), another configuration refused by name
    cfg = build_config()
    run = RunDir.open_or_create(s3_env.uri("unit/rundir"), cfg)
    run.mark(0, "samples", "done", seconds=1.0)
    again = RunDir.open_or_create(s3_env.uri("unit/rundir"), cfg)
    assert again.run_id == run.run_id and again.is_done(0, "samples")
    with pytest.raises(RunDirError, match="seed"):
        RunDir.open_or_create(s3_env.uri("unit/rundir"), build_config(overrides=["seed=7"]))
    # ... and the report, written next to it
    paths = write_report(s3_env.uri("unit/rundir"))
    assert paths["md"] == s3_env.uri("unit/rundir/report.md")
    assert Storage(s3_env.uri("unit/rundir")).exists("report.html")


# --- a run killed mid-phase on S3 and resumed -------------------------------------------------


def phase_status(st: Storage, k: int, name: str) -> str | None:
    try:
        m = st.read_json(MANIFEST)
    except (FileNotFoundError, ValueError):
        # none yet, or replaced while read (an S3 reader sizes the object first, so a GET racing
        # the driver's next write can come back cut): the driver alone reads it during a run
        return None
    return m.get("iterations", {}).get(str(k), {}).get("phases", {}).get(name, {}).get("status")


def temp_parquet(st: Storage, k: int, phase: str) -> list[str]:
    temps = [n for n in st.list_dir(f"iter_{k}") if n.startswith(f".tmp-{phase}-")]
    return [n for t in temps for n in st.list_dir(f"iter_{k}/{t}") if n.endswith(".parquet")]


def launch(model: str, uri: str, cluster: LocalCluster, log_path: Path) -> subprocess.Popen:
    return fault_driver.launch(["--model", model, "--storage", uri], {**cluster.env, "RAY_ADDRESS": cluster.gcs_address},
                               log_path)


def kill_when(model: str, uri: str, cluster: LocalCluster, log_path: Path, k: int, phase: str,
              ready: Any) -> None:
    """Launch the driver and SIGKILL it once phase (k, phase) is running and `ready(st)`."""
    st = Storage(uri)
    proc = launch(model, uri, cluster, log_path)
    fault_driver.kill_when(proc, lambda: phase_status(st, k, phase) == "running" and ready(st), f"{phase} {k}",
                           DRIVER_TIMEOUT_S, log_path, poll_s=0.1)
    assert phase_status(st, k, phase) == "running"


def run_to_completion(model: str, uri: str, cluster: LocalCluster, log_path: Path) -> None:
    fault_driver.wait_done(launch(model, uri, cluster, log_path), DRIVER_TIMEOUT_S, log_path)


def rows_by_key(uri: str) -> dict[tuple[Any, ...], dict[str, Any]]:
    """Every sample and eval row, keyed by what its sample_id derives from; fails on a double."""
    out: dict[tuple[Any, ...], dict[str, Any]] = {}
    st = Storage(uri)
    for it in (n for n in st.list_dir("") if n.startswith("iter_")):
        for kind in ("samples", "eval"):
            for row in read_rows(st.uri(it, kind)).to_pylist():
                key = (row["iteration"], kind, row["problem_id"], row["attempt"], row["index"])
                assert key not in out, f"doubled row {key}"
                out[key] = row
    return out


@pytest.mark.slow
def test_run_on_s3_killed_mid_phase_resumes_with_the_same_samples(s3_env, tmp_path_factory, tmp_path):
    model = tiny_assets(tmp_path_factory.getbasetemp())["model"]
    uri = s3_env.uri("resume/run")
    st = Storage(uri)
    # A single-node cluster of the shipped script whose raylet (so every worker) has the S3
    # credentials in its environment, as a cloud node has them from its instance profile.
    with LocalCluster(env=s3_env.env(),
                      args=["--workers", "0", "--head-cpus", "4", "--object-store-mb", "300"]) as cluster:
        t0 = time.perf_counter()
        # Killed in adapter 1's training once an epoch checkpoint is on S3: iteration 0's
        # samples and eval are published there, iteration 1 is still to come.
        kill_when(model, uri, cluster, tmp_path / "driver-killed.log", 1, "train",
                  lambda s: s.exists("iter_1/checkpoints/checkpoint_manager_snapshot.json"))
        before = {kind: read_rows(st.uri("iter_0", kind)).column("sample_id").to_pylist()
                  for kind in ("samples", "eval")}
        assert not st.exists("iter_1/adapter") and not st.exists("iter_1/samples")
        run_to_completion(model, uri, cluster, tmp_path / "driver-resumed.log")
        print(f"killed in training and resumed: {time.perf_counter() - t0:.0f}s")
        # The secret key is in no Ray log of the cluster (every raylet's, worker's and job's).
        assert not files_containing(cluster.state_dir, s3_env.secret_key.encode())

    final = RunDir.open(uri)
    m = final.manifest.to_dict()
    for k, name in [(0, "samples"), (0, "eval"), (1, "train"), (1, "redeploy"), (1, "samples"), (1, "eval")]:
        assert phase_status(st, k, name) == "done", (k, name)
    assert not [p for p in all_keys(st) if "/.tmp-" in p], "temporary output left behind"

    # The sample_id set of an undisturbed run of this configuration: every (pass, problem,
    # index) of each model once (one attempt: generation.max_attempts is 1), none doubled, and
    # the rows published before the kill kept as they were.
    cfg = final.config
    got = rows_by_key(uri)
    want = {(k, kind, pid, 0, i)
            for k in (0, 1)
            for kind, pids, n in (("samples", m["problems"]["train"], cfg.generation.samples),
                                  ("eval", m["problems"]["eval"], cfg.evaluation.samples))
            for pid in pids for i in range(n)}
    assert set(got) == want and len(want) == 2 * (3 * 2 + 1 * 2)
    assert {r["sample_id"] for r in got.values()} == {sample_id(final.run_id, k[0], k[2], k[1], k[3], k[4]) for k in want}
    assert sorted(r["sample_id"] for k, r in got.items() if k[0] == 0 and k[1] == "samples") == sorted(before["samples"])
    assert sum(r["passed"] for r in got.values()) > 0
    # Training resumed from its checkpoint on S3; iteration 1 sampled with adapter 1, which
    # exists only on S3: the generators fetched it there.
    assert m["iterations"]["1"]["phases"]["train"]["metrics"]["resumed_from_epoch"] >= 1
    assert final.adapter(1) == "iter_1/adapter"
    assert {"adapter_config.json", "adapter_model.safetensors"} <= set(st.list_dir("iter_1/adapter"))
    assert {r["adapter"] for k, r in got.items() if k[0] == 1} == {"iter_1/adapter"}

    # The report goes to S3 next to the manifest (what `axiom iterate` does at the end).
    write_report(uri)
    assert st.exists("report.md") and st.exists("report.html")

    # The secret key is in neither the manifest nor the driver's logs.
    secret = s3_env.secret_key.encode()
    with st.fs.open_input_stream(f"{st.base}/{MANIFEST}") as f:
        manifest_bytes = f.read()
    assert secret not in manifest_bytes and json.loads(manifest_bytes)["run_id"] == final.run_id
    assert not files_containing(tmp_path, secret)
