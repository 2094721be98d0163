"""cluster/ validated without a cluster: every YAML/JSON parses, the launcher config passes
Ray's own schema and preparation, the KubeRay manifests have what KubeRay and the code need,
the Grafana panels query metrics that axiom_ray/metrics.py really exports, and the resource
names and amounts fit the plan the code would make. Also the pure storage rule for multi-node
clusters (axiom_ray/cluster_check.py) and the local cluster script's argument handling.
"""

from __future__ import annotations

import copy
import importlib.util
import json
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from axiom_ray import metrics
from axiom_ray.cluster_check import (
    NodeLocalStorageError,
    alive_node_count,
    check_storage_for_cluster,
    is_shared_storage,
    mount_fs_type,
)
from axiom_ray.config import ConfigError, RunConfig, build_config
from axiom_ray.placement import make_plan

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    tomllib = pytest.importorskip("tomli")

ROOT = Path(__file__).resolve().parent.parent
CLUSTER = ROOT / "cluster"
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def ray_version() -> str:
    """The Ray release the project pins (ray[...]==X in pyproject.toml)."""
    for dep in PYPROJECT["project"]["dependencies"]:
        m = re.fullmatch(r"ray(\[[^\]]*\])?==([\w.]+)", dep.replace(" ", ""))
        if m:
            return m.group(2)
    raise AssertionError("pyproject.toml does not pin ray")


def load(rel: str) -> Any:
    path = CLUSTER / rel
    return (
        json.loads(path.read_text()) if path.suffix == ".json" else yaml.safe_load(path.read_text())
    )


def req_name(requirement: str) -> str:
    return re.split(r"[<>=!~\[ ;]", requirement, maxsplit=1)[0].lower().replace("_", "-")


# --- every file ----------------------------------------------------------------------------------


def manifest_files() -> list[Path]:
    return sorted(p for p in CLUSTER.rglob("*") if p.suffix in (".yaml", ".yml", ".json"))


def test_cluster_directory_has_the_expected_manifests():
    names = {p.relative_to(CLUSTER).as_posix() for p in manifest_files()}
    assert {
        "aws.yaml",
        "kuberay/rayjob.yaml",
        "kuberay/raycluster.yaml",
        "grafana/axiom-dashboard.json",
    } <= names


@pytest.mark.parametrize("path", manifest_files(), ids=lambda p: p.relative_to(CLUSTER).as_posix())
def test_every_manifest_parses(path):
    if path.suffix == ".json":
        docs = [json.loads(path.read_text())]
    else:
        docs = [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
    assert docs and all(isinstance(d, dict) for d in docs)


# --- the cluster launcher (cluster/aws.yaml) ----------------------------------------------------


@pytest.fixture(scope="module")
def launcher() -> dict[str, Any]:
    return load("aws.yaml")


def test_launcher_has_required_fields(launcher):
    for key in (
        "cluster_name",
        "provider",
        "available_node_types",
        "head_node_type",
        "max_workers",
        "setup_commands",
        "head_start_ray_commands",
        "worker_start_ray_commands",
        "file_mounts",
    ):
        assert key in launcher, key
    assert launcher["provider"]["type"] in ("aws", "gcp", "azure")
    types = launcher["available_node_types"]
    assert launcher["head_node_type"] in types
    for name, t in types.items():
        assert isinstance(t.get("resources"), dict) and t.get("node_config"), name
        assert t.get("min_workers", 0) <= t.get("max_workers", launcher["max_workers"]), name
    workers = [t for n, t in types.items() if n != launcher["head_node_type"]]
    assert sum(t["max_workers"] for t in workers) <= launcher["max_workers"]


def test_launcher_passes_rays_schema_and_preparation(launcher):
    """What `ray up` does before it calls the cloud: Ray's JSON schema, defaults and checks."""
    pytest.importorskip("jsonschema")
    from ray.autoscaler._private.util import prepare_config, validate_config

    validate_config(prepare_config(copy.deepcopy(launcher)))


def test_launcher_node_types_match_what_the_code_asks_for(launcher):
    """Generators ask for "GPU", verifiers and trainers for "CPU" (exact Ray resource names);
    the head takes no work; one type has a GPU, one only CPUs."""
    types = launcher["available_node_types"]
    for name, t in types.items():
        assert set(t["resources"]) <= {"CPU", "GPU"}, (
            f"{name}: unknown resource names {t['resources']}"
        )
    head = types[launcher["head_node_type"]]["resources"]
    assert head.get("CPU") == 0 and not head.get("GPU")
    gpu = [t for t in types.values() if t["resources"].get("GPU", 0) >= 1]
    cpu = [
        t
        for t in types.values()
        if t["resources"].get("CPU", 0) >= 1 and not t["resources"].get("GPU")
    ]
    assert gpu and cpu
    assert all(t.get("max_workers", 0) > t.get("min_workers", 0) for t in gpu + cpu)  # autoscaling


def launcher_resources(launcher: dict[str, Any], count: str) -> dict[str, float]:
    total: dict[str, float] = {}
    for name, t in launcher["available_node_types"].items():
        n = 1 if name == launcher["head_node_type"] else t.get(count, 0)
        for k, v in t["resources"].items():
            total[k] = total.get(k, 0) + v * n
    return total


def test_default_plan_fits_the_smallest_launcher_cluster(launcher):
    make_plan(RunConfig(), launcher_resources(launcher, "min_workers"))
    big = build_config(overrides=["generation.replicas=4", "training.num_workers=2"])
    make_plan(big, launcher_resources(launcher, "max_workers"))


def test_launcher_installs_the_gpu_extra_from_the_synced_tree(launcher):
    installs = [c for c in launcher["setup_commands"] if re.search(r"pip install .*\[gpu\]", c)]
    assert installs, "setup_commands must install the project with its gpu extra"
    path = re.search(r"-e \"?([^\"\[]+)\[gpu\]", installs[0]).group(1)
    assert launcher["file_mounts"].get(path) == ".", (
        "the installed path must be the synced working tree"
    )
    assert "gpu" in PYPROJECT["project"]["optional-dependencies"]


def test_launcher_start_commands(launcher):
    head = " ".join(launcher["head_start_ray_commands"])
    worker = " ".join(launcher["worker_start_ray_commands"])
    assert "ray start --head" in head and "--dashboard-host=0.0.0.0" in head
    assert "--autoscaling-config=~/ray_bootstrap_config.yaml" in head
    assert "--address=$RAY_HEAD_IP:6379" in worker
    for cmds in (head, worker):
        assert "RAY_AUTH_MODE=token" in cmds  # token auth stays on for a real cluster
    image = launcher["docker"]["image"]
    assert image.startswith(f"rayproject/ray:{ray_version()}-"), image
    assert launcher["file_mounts"].get("~/.ray/auth_token") == "~/.ray/auth_token"


# --- KubeRay (cluster/kuberay/) --------------------------------------------------------------------


@pytest.fixture(scope="module")
def rayjob() -> dict[str, Any]:
    return load("kuberay/rayjob.yaml")


def pod_templates(spec: dict[str, Any]) -> list[dict[str, Any]]:
    return [spec["headGroupSpec"]["template"], *(g["template"] for g in spec["workerGroupSpecs"])]


def test_rayjob_runs_the_iterate_entry_point(rayjob):
    assert rayjob["apiVersion"] == "ray.io/v1" and rayjob["kind"] == "RayJob"
    spec = rayjob["spec"]
    argv = shlex.split(spec["entrypoint"])
    assert argv[:2] == ["python", "jobs/iterate.py"] and (ROOT / "jobs/iterate.py").is_file()
    assert spec["shutdownAfterJobFinishes"] is True
    # The flags are the CLI's: parse them as `axiom iterate` would.
    from axiom_ray.cli import build_parser, config_from_args

    cfg = config_from_args(build_parser().parse_args(["iterate", *argv[2:]]))
    assert cfg.storage.startswith(("s3://", "gs://"))
    workers = spec["rayClusterSpec"]["workerGroupSpecs"]
    check_storage_for_cluster(cfg.storage, 1 + sum(g["minReplicas"] for g in workers))


def test_rayjob_runtime_env_has_the_code_and_the_projects_dependencies(rayjob):
    env = yaml.safe_load(rayjob["spec"]["runtimeEnvYAML"])
    assert isinstance(env, dict) and env.get("working_dir")
    pip = env["pip"]["packages"] if isinstance(env["pip"], dict) else env["pip"]
    listed = {req_name(p) for p in pip}
    project = PYPROJECT["project"]
    wanted = {req_name(d) for d in project["dependencies"]} - {"ray"}  # the image brings Ray
    wanted |= {req_name(d) for d in project["optional-dependencies"]["gpu"]}
    assert wanted <= listed, f"missing from runtimeEnvYAML pip: {sorted(wanted - listed)}"
    assert "ray" not in listed  # reinstalling Ray in a runtime env breaks the image's Ray


def test_raycluster_spec_has_head_gpu_and_cpu_groups(rayjob):
    spec = rayjob["spec"]["rayClusterSpec"]
    assert spec["rayVersion"] == ray_version()
    assert spec["enableInTreeAutoscaling"] is True
    assert spec["authOptions"]["mode"] == "token"
    head = spec["headGroupSpec"]
    assert head["rayStartParams"]["dashboard-host"] == "0.0.0.0"
    assert head["rayStartParams"]["num-cpus"] == "0"
    ports = {
        p["name"]: p["containerPort"] for p in head["template"]["spec"]["containers"][0]["ports"]
    }
    assert ports["dashboard"] == 8265 and ports["gcs-server"] == 6379
    gpu_groups, cpu_groups = [], []
    for group in spec["workerGroupSpecs"]:
        assert group["minReplicas"] <= group["replicas"] <= group["maxReplicas"], group["groupName"]
        res = group["template"]["spec"]["containers"][0]["resources"]
        assert res["requests"] == res["limits"], group["groupName"]  # Guaranteed QoS, exact sizing
        (gpu_groups if "nvidia.com/gpu" in res["limits"] else cpu_groups).append(group)
    assert gpu_groups and cpu_groups
    for group in gpu_groups:
        assert (
            int(group["template"]["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"])
            >= 1
        )


def test_kubernetes_resource_names(rayjob):
    """GPUs are `nvidia.com/gpu` on Kubernetes (KubeRay turns them into Ray's "GPU"); no other
    spelling, and no num-gpus override that could disagree with the limit."""
    spec = rayjob["spec"]["rayClusterSpec"]
    for group in [spec["headGroupSpec"], *spec["workerGroupSpecs"]]:
        assert "num-gpus" not in group["rayStartParams"]
        for container in group["template"]["spec"]["containers"]:
            for kind in ("requests", "limits"):
                names = set(container["resources"][kind])
                assert names <= {"cpu", "memory", "nvidia.com/gpu", "ephemeral-storage"}, names


def test_every_pod_runs_as_uid_1000_with_the_pinned_image(rayjob):
    spec = rayjob["spec"]
    templates = [*pod_templates(spec["rayClusterSpec"]), spec["submitterPodTemplate"]]
    for template in templates:
        sc = template["spec"]["securityContext"]
        assert sc["runAsUser"] == 1000 and sc["runAsNonRoot"] is True
        for container in template["spec"]["containers"]:
            assert container["image"].startswith(f"rayproject/ray:{ray_version()}-"), container[
                "image"
            ]
            assert container["securityContext"]["allowPrivilegeEscalation"] is False


def kuberay_resources(spec: dict[str, Any], count: str) -> dict[str, float]:
    """Ray resources KubeRay derives per pod: num-cpus if set, else the CPU limit; GPUs from
    nvidia.com/gpu."""
    groups = [(spec["headGroupSpec"], 1)] + [(g, g[count]) for g in spec["workerGroupSpecs"]]
    total = {"CPU": 0.0, "GPU": 0.0}
    for group, n in groups:
        limits = group["template"]["spec"]["containers"][0]["resources"]["limits"]
        total["CPU"] += n * float(group["rayStartParams"].get("num-cpus", limits["cpu"]))
        total["GPU"] += n * float(limits.get("nvidia.com/gpu", 0))
    return total


def test_the_rayjobs_own_plan_fits_its_cluster(rayjob):
    from axiom_ray.cli import build_parser, config_from_args

    spec = rayjob["spec"]
    cfg = config_from_args(
        build_parser().parse_args(["iterate", *shlex.split(spec["entrypoint"])[2:]])
    )
    make_plan(cfg, kuberay_resources(spec["rayClusterSpec"], "replicas"))
    make_plan(RunConfig(), kuberay_resources(spec["rayClusterSpec"], "minReplicas"))


def test_standalone_raycluster_is_the_rayjobs_cluster(rayjob):
    cluster = load("kuberay/raycluster.yaml")
    assert cluster["apiVersion"] == "ray.io/v1" and cluster["kind"] == "RayCluster"
    assert cluster["spec"] == rayjob["spec"]["rayClusterSpec"]


# --- Grafana (cluster/grafana/) --------------------------------------------------------------------


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    return load("grafana/axiom-dashboard.json")


def exported_names() -> dict[str, tuple[str, ...]]:
    """Prometheus name -> tag keys, as Ray 2.60 exports ray.util.metrics: `ray_` + name, and
    counters with `_total` (seen on a node's /metrics endpoint)."""
    out = {}
    for name in metrics._COUNTERS:
        out[f"ray_{metrics.PREFIX}{name}_total"] = ("run", "kind", "status")
    for name in metrics._GAUGES:
        out[f"ray_{metrics.PREFIX}{name}"] = ("run", "kind", "phase")
    return out


def panel_exprs(dashboard: dict[str, Any]) -> list[str]:
    return [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]


def test_dashboard_is_built_by_its_script(dashboard):
    spec = importlib.util.spec_from_file_location(
        "build_dashboard", CLUSTER / "grafana/build_dashboard.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert json.loads(module.render()) == dashboard, (
        "run: python cluster/grafana/build_dashboard.py"
    )


def test_dashboard_uses_the_datasource_variable(dashboard):
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    assert "SessionName" in variables
    for panel in dashboard["panels"]:
        assert panel["datasource"] == "${datasource}", panel["title"]
        assert panel["targets"], panel["title"]
        assert all(t["datasource"] == "${datasource}" for t in panel["targets"])


def test_dashboard_queries_exported_metric_names(dashboard):
    names = exported_names()
    used = set()
    for expr in panel_exprs(dashboard):
        found = re.findall(r"\bray_axiom_[a-z_]+\b", expr)
        assert found, expr
        for name in found:
            assert name in names, (
                f"{name} is not exported by axiom_ray/metrics.py ({sorted(names)})"
            )
            used.add(name)
        assert expr.count("(") == expr.count(")") and expr.count("{") == expr.count("}"), expr
        # Grouping labels must exist on the series: the metric's tag keys or Ray's own labels.
        for group in re.findall(r"by \(([^)]*)\)", expr):
            for label in (s.strip() for s in group.split(",")):
                assert any(label in names[n] for n in found) or label in (
                    "SessionName",
                    "instance",
                ), f"{label} is not a label of {found}"
    assert used == set(names), f"metrics without a panel: {sorted(set(names) - used)}"


def test_dashboard_has_the_panels_the_run_needs(dashboard):
    titles = " | ".join(p["title"].lower() for p in dashboard["panels"])
    for words in (
        "samples generated",
        "verified by status",
        "pass rate",
        "problems solved",
        "generated tokens",
        "train loss",
        "train tokens",
        "iteration",
        "phase",
        "adapter swap",
    ):
        assert words in titles, words


def test_dashboard_layout(dashboard):
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    cells = set()
    for p in dashboard["panels"]:
        g = p["gridPos"]
        assert g["x"] + g["w"] <= 24
        for x in range(g["x"], g["x"] + g["w"]):
            for y in range(g["y"], g["y"] + g["h"]):
                assert (x, y) not in cells, f"panel {p['title']} overlaps another"
                cells.add((x, y))


# --- the storage rule on a multi-node cluster (axiom_ray/cluster_check.py) -------------------------

MOUNTS = """\
/dev/vda / ext4 rw,relatime 0 0
tmpfs /tmp tmpfs rw 0 0
fs-0123.efs.us-west-2.amazonaws.com:/ /mnt/efs nfs4 rw,vers=4.1 0 0
/dev/vdb /mnt/efs/local\\040disk ext4 rw 0 0
"""


def test_a_single_node_takes_any_path():
    check_storage_for_cluster("/data/runs/x", 1, shared_paths=[], mounts_text=MOUNTS)


def test_a_local_path_is_refused_on_several_nodes(monkeypatch):
    monkeypatch.delenv("AXIOM_SHARED_PATHS", raising=False)
    with pytest.raises(NodeLocalStorageError) as e:
        check_storage_for_cluster("/x", 3, mounts_text=MOUNTS)
    assert isinstance(e.value, ValueError) and isinstance(e.value, ConfigError)
    assert str(e.value).startswith(
        "--storage /x is a node-local path but the cluster has 3 nodes: use shared storage "
        "(s3://, gs://, or an NFS mount path marked with --set shared_storage=true"
    )
    with pytest.raises(NodeLocalStorageError):
        check_storage_for_cluster("file:///x", 2, mounts_text=MOUNTS)


@pytest.mark.parametrize(
    "uri",
    [
        "s3://bucket/runs/x",
        "gs://bucket/runs/x",
        "hdfs://nn:8020/runs",
        "abfs://c@acct.dfs.core.windows.net/runs",
    ],
)
def test_remote_uris_are_shared(uri):
    check_storage_for_cluster(uri, 8, shared_paths=[], mounts_text="")


def test_escape_hatches(monkeypatch, tmp_path):
    shared = tmp_path / "shared"
    monkeypatch.setenv("AXIOM_SHARED_PATHS", f"/nonexistent:{shared}")
    check_storage_for_cluster(str(shared / "runs" / "x"), 4, mounts_text="")
    check_storage_for_cluster(str(shared), 4, mounts_text="")
    with pytest.raises(NodeLocalStorageError):  # a sibling with the same prefix is not under it
        check_storage_for_cluster(str(tmp_path / "shared2" / "x"), 4, mounts_text="")
    monkeypatch.delenv("AXIOM_SHARED_PATHS")
    check_storage_for_cluster(str(tmp_path / "x"), 4, shared=True, mounts_text="")


def test_a_network_mount_counts_as_shared():
    assert mount_fs_type("/mnt/efs/runs/x", MOUNTS) == "nfs4"
    assert mount_fs_type("/mnt/efs/local disk/x", MOUNTS) == "ext4"  # the longest mount point wins
    assert mount_fs_type("/tmp/x", MOUNTS) == "tmpfs"
    assert is_shared_storage("/mnt/efs/runs/new-run", shared_paths=[], mounts_text=MOUNTS)
    assert not is_shared_storage("/mnt/efs/local disk/run", shared_paths=[], mounts_text=MOUNTS)
    assert not is_shared_storage("/tmp/run", shared_paths=[], mounts_text=MOUNTS)


def test_alive_node_count():
    assert alive_node_count([{"Alive": True}, {"Alive": False}, {"Alive": True}]) == 2


# --- scripts/local_cluster.sh (no cluster started) -------------------------------------------------

SCRIPT = ROOT / "scripts" / "local_cluster.sh"


def run_script(*args: str, state: Path) -> subprocess.CompletedProcess:
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(state),
        "AXIOM_LOCAL_CLUSTER_DIR": str(state / "lc"),
    }
    return subprocess.run(
        ["bash", str(SCRIPT), *args], capture_output=True, text=True, env=env, timeout=30
    )


def test_local_cluster_script_syntax_and_usage(tmp_path):
    assert subprocess.run(["bash", "-n", str(SCRIPT)], capture_output=True).returncode == 0
    usage = run_script("--help", state=tmp_path)
    assert usage.returncode == 0 and "local_cluster.sh start" in usage.stdout
    assert run_script("bogus", state=tmp_path).returncode == 2


def test_local_cluster_script_refuses_bad_input_before_starting_anything(tmp_path):
    for args in (["--workers", "x"], ["--workers", "1", "--gpu-workers", "2"], ["--nope"]):
        r = run_script("start", *args, state=tmp_path)
        assert r.returncode == 2, (args, r.stdout, r.stderr)
        assert not (tmp_path / "lc" / "nodes.tsv").exists()


def test_local_cluster_script_status_and_stop_without_a_cluster(tmp_path):
    status = run_script("status", state=tmp_path)
    assert status.returncode == 1 and "no cluster started by this script" in status.stdout
    stop = run_script("stop", state=tmp_path)
    assert stop.returncode == 0 and "no cluster started by this script" in stop.stdout
