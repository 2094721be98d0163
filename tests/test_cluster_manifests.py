"""cluster/ validated without a cluster: every YAML/JSON parses, the launcher config passes
Ray's own schema and preparation, the KubeRay manifests pass KubeRay's CRD schemas (vendored,
tests/data/kuberay-v1.5.1) with no field the API server would prune, every node runs the
project's image with its preflight (axiom_ray/node_check.py), writes storage under an identity,
and asks for no more than its instance type has allocatable; the Grafana panels query metrics
that axiom_ray/metrics.py really exports, and the resource names and amounts fit the plan the
code would make. Also the pure storage rule for multi-node clusters (axiom_ray/cluster_check.py)
and the local cluster script's argument handling.
"""

from __future__ import annotations

import copy
import errno
import functools
import gzip
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

from axiom_ray import metrics, node_check
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


def project_version() -> str:
    return PYPROJECT["project"]["version"]


def project_image(stack: str = "gpu") -> str:
    """The image the Dockerfile builds, as the manifests name it: REGISTRY/axiom-ray:VERSION-STACK."""
    return f"axiom-ray:{project_version()}-{stack}"


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


def test_launcher_runs_the_project_image_and_installs_nothing(launcher):
    """Every node runs the image built from the Dockerfile (the locked GPU stack, the project and
    the embedded model); a pip install on the node would drift from the lock."""
    assert launcher["docker"]["image"].endswith("/" + project_image("gpu"))
    commands = [
        *launcher.get("initialization_commands", []),
        *launcher.get("setup_commands", []),
        *launcher.get("head_setup_commands", []),
        *launcher.get("worker_setup_commands", []),
    ]
    assert not [c for c in commands if "pip install" in c], commands
    registry = launcher["docker"]["image"].split("/")[0]
    assert any(registry in c and "docker login" in c for c in launcher["initialization_commands"])


# Ray's default AMI when ImageId is unset: Ubuntu 18.04 with Linux 5.4 (no Landlock).
LANDLOCK_IMAGES = re.compile(
    r"^(ami-[0-9a-f]{8,17}|resolve:ssm:/aws/service/deeplearning/ami/x86_64/"
    r"[a-z0-9-]*ubuntu-(22|24)\.04/latest/ami-id)$"
)


def test_launcher_nodes_boot_an_image_with_a_landlock_kernel(launcher):
    for name, t in launcher["available_node_types"].items():
        image = t["node_config"].get("ImageId", "")
        assert LANDLOCK_IMAGES.match(image), (
            f"{name}: ImageId {image!r}: unset means Ray's default AMI (Linux 5.4, no Landlock)"
        )


def test_launcher_workers_run_the_node_preflight_before_joining(launcher):
    commands = launcher["worker_start_ray_commands"]
    check = [i for i, c in enumerate(commands) if "python -m axiom_ray.node_check" in c]
    start = [i for i, c in enumerate(commands) if "ray start" in c]
    assert check and start and check[0] < start[0]
    assert "--min-isolation landlock" in commands[check[0]]
    assert RunConfig().verifier.min_isolation == "landlock"  # what the preflight checks for


def test_every_launcher_node_type_has_an_instance_profile(launcher):
    """Every node writes the run directory (head: manifest; gpu: adapters and checkpoints; cpu:
    Parquet), so every node type needs an identity with write access to the bucket."""
    for name, t in launcher["available_node_types"].items():
        arn = t["node_config"].get("IamInstanceProfile", {}).get("Arn", "")
        assert re.fullmatch(r"arn:aws:iam::\d{12}:instance-profile/[\w+=,.@-]+", arn), name


def test_launcher_start_commands(launcher):
    head = " ".join(launcher["head_start_ray_commands"])
    worker = " ".join(launcher["worker_start_ray_commands"])
    assert "ray start --head" in head and "--dashboard-host=0.0.0.0" in head
    assert "--autoscaling-config=~/ray_bootstrap_config.yaml" in head
    assert "--address=$RAY_HEAD_IP:6379" in worker
    for cmds in (head, worker):
        assert "RAY_AUTH_MODE=token" in cmds  # token auth stays on for a real cluster
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


def dockerfile_workdir() -> str:
    return re.findall(r"^WORKDIR (\S+)", (ROOT / "Dockerfile").read_text(), re.M)[-1]


def test_rayjob_runs_the_images_own_checkout_with_the_images_packages(rayjob):
    """The entry point's working_dir is the image's checkout (the submitter pod, which runs the
    same image, uploads it); no pip in the runtime env: the image has the locked stack."""
    env = yaml.safe_load(rayjob["spec"]["runtimeEnvYAML"])
    assert env["working_dir"] == dockerfile_workdir()
    assert not {"pip", "uv", "conda"} & set(env), "packages come from the image (the lock)"
    argv = shlex.split(rayjob["spec"]["entrypoint"])
    assert (ROOT / argv[1]).is_file()  # jobs/iterate.py, relative to that checkout


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


def test_every_pod_runs_as_uid_1000_with_the_project_image(rayjob):
    spec = rayjob["spec"]
    templates = [*pod_templates(spec["rayClusterSpec"]), spec["submitterPodTemplate"]]
    for template in templates:
        sc = template["spec"]["securityContext"]
        assert sc["runAsUser"] == 1000 and sc["runAsNonRoot"] is True
        for container in template["spec"]["containers"]:
            assert container["image"].endswith("/" + project_image("gpu")), container["image"]
            assert container["securityContext"]["allowPrivilegeEscalation"] is False


def test_the_dockerfile_builds_on_the_pinned_ray_image():
    text = (ROOT / "Dockerfile").read_text()
    assert f"ARG BASE=rayproject/ray:{ray_version()}-py311-cpu" in text
    assert (
        f"--build-arg BASE=rayproject/ray:{ray_version()}-py311-gpu --build-arg STACK=gpu" in text
    )
    assert (
        f"-t REGISTRY/{project_image('gpu')}" in text and f"REGISTRY/{project_image('cpu')}" in text
    )
    # py311 in the tags: the locks are resolved for Python 3.11.
    assert "PYTHON_VERSION=3.11\n" in (ROOT / "scripts" / "lock.sh").read_text()


def test_every_ray_pod_has_the_storage_service_account(rayjob):
    account = load("kuberay/serviceaccount.yaml")
    assert account["kind"] == "ServiceAccount"
    assert account["metadata"]["annotations"]["eks.amazonaws.com/role-arn"].startswith(
        "arn:aws:iam::"
    )
    for template in pod_templates(rayjob["spec"]["rayClusterSpec"]):
        assert template["spec"].get("serviceAccountName") == account["metadata"]["name"]


def test_no_pod_mounts_its_own_dev_shm(rayjob):
    """KubeRay mounts a memory-backed /dev/shm sized to the container's memory limit; a smaller
    one of our own would push Ray's object store to disk."""
    for template in pod_templates(rayjob["spec"]["rayClusterSpec"]):
        for container in template["spec"]["containers"]:
            mounts = [m["mountPath"] for m in container.get("volumeMounts", [])]
            assert "/dev/shm" not in mounts, container["name"]
        for volume in template["spec"].get("volumes", []):
            assert volume.get("emptyDir", {}).get("medium") != "Memory", volume["name"]


def ray_container_args(template: dict[str, Any]) -> str:
    return " ".join(template["spec"]["containers"][0].get("args", []))


def test_every_ray_container_runs_the_preflight_before_ray_start(rayjob):
    """KubeRay runs a container's own args, then `&& ... ray start` (when the args do not
    contain `ray start` themselves): the preflight stops a pod whose operator dropped
    authOptions (KubeRay < 1.5.1) or whose node kernel lacks Landlock."""
    spec = rayjob["spec"]["rayClusterSpec"]
    head = ray_container_args(spec["headGroupSpec"]["template"])
    assert head.startswith("python -m axiom_ray.node_check") and "--require-token-auth" in head
    assert "ray start" not in head
    for group in spec["workerGroupSpecs"]:
        args = ray_container_args(group["template"])
        assert args.startswith("python -m axiom_ray.node_check"), group["groupName"]
        assert "--require-token-auth" in args and "--min-isolation landlock" in args
        assert "ray start" not in args
        node_check.build_parser().parse_args(shlex.split(args)[3:])  # flags it really has


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


# --- requests that fit the instance types the manifests name --------------------------------------

# vCPUs, GiB and the EKS AMI's max pods (eni-max-pods.txt: ENIs x (IPs per ENI - 1) + 2) of the
# instance types cluster/ names; add a row when a manifest names another type.
INSTANCE_TYPES = {
    "m6i.2xlarge": (8, 32, 58),
    "g6.2xlarge": (8, 32, 58),
    "c7i.4xlarge": (16, 32, 234),
}
# What a node's DaemonSets request (VPC CNI, kube-proxy, EBS CSI, NVIDIA device plugin, a log and
# a metrics agent), kept free on every node.
DAEMONSET_CPU_M, DAEMONSET_MEMORY_MI = 500, 1024
# A node reports somewhat less memory than the type's GiB (firmware and kernel reservations):
# 96 % is below what EKS nodes of these sizes report.
REPORTED_MEMORY = 0.96


def eks_allocatable(instance_type: str) -> tuple[float, float]:
    """(millicores, MiB) a pod can request on an EKS node of this type: capacity less the EKS
    AMI's kube-reserved (CPU: 6 % of the first core, 1 % of the second, 0.5 % of the next two,
    0.25 % of the rest; memory: 11 MiB per pod + 255 MiB), the 100 MiB eviction threshold and
    the DaemonSets."""
    vcpu, gib, max_pods = INSTANCE_TYPES[instance_type]
    reserved_cpu = 60 + 10 + 5 * min(max(vcpu - 2, 0), 2) + 2.5 * max(vcpu - 4, 0)
    cpu = vcpu * 1000 - reserved_cpu - DAEMONSET_CPU_M
    memory = gib * 1024 * REPORTED_MEMORY - (11 * max_pods + 255) - 100 - DAEMONSET_MEMORY_MI
    return cpu, memory


def quantity(value: Any, unit: str) -> float:
    """A Kubernetes quantity in millicores (unit "m") or MiB (unit "Mi")."""
    text = str(value)
    if unit == "m":
        return float(text[:-1]) if text.endswith("m") else float(text) * 1000
    factors = {"Ki": 1 / 1024, "Mi": 1, "Gi": 1024, "Ti": 1024**2}
    for suffix, factor in factors.items():
        if text.endswith(suffix):
            return float(text[: -len(suffix)]) * factor
    return float(text) / 2**20  # bytes


def pod_requests(template: dict[str, Any], extra: list[dict[str, Any]]) -> tuple[float, float]:
    cpu = memory = 0.0
    for resources in [c.get("resources", {}) for c in template["spec"]["containers"]] + extra:
        requests = resources.get("requests", resources.get("limits", {}))
        cpu += quantity(requests.get("cpu", 0), "m")
        memory += quantity(requests.get("memory", 0), "Mi")
    return cpu, memory


def test_every_pod_fits_the_allocatable_capacity_of_its_instance_type(rayjob):
    spec = rayjob["spec"]["rayClusterSpec"]
    groups = [("head", spec["headGroupSpec"], [spec["autoscalerOptions"]["resources"]])]
    groups += [(g["groupName"], g, []) for g in spec["workerGroupSpecs"]]
    for name, group, sidecars in groups:
        template = group["template"]
        instance_type = template["spec"]["nodeSelector"]["node.kubernetes.io/instance-type"]
        assert instance_type in INSTANCE_TYPES, f"{name}: add {instance_type} to INSTANCE_TYPES"
        cpu, memory = pod_requests(template, sidecars)
        free_cpu, free_memory = eks_allocatable(instance_type)
        assert cpu <= free_cpu, f"{name}: {cpu:.0f}m CPU > {free_cpu:.0f}m on {instance_type}"
        assert memory <= free_memory, (
            f"{name}: {memory:.0f} MiB > {free_memory:.0f} MiB allocatable on {instance_type}"
        )


def test_a_whole_machines_request_does_not_fit():
    """The check above is not vacuous: the old gpu pod (8 CPUs, 32 GiB on a g6.2xlarge) fails."""
    old = {"spec": {"containers": [{"resources": {"requests": {"cpu": "8", "memory": "32Gi"}}}]}}
    cpu, memory = pod_requests(old, [])
    free_cpu, free_memory = eks_allocatable("g6.2xlarge")
    assert cpu > free_cpu and memory > free_memory


# --- KubeRay's CRD schemas (tests/data/kuberay-v1.5.1) ----------------------------------------------

KUBERAY_VERSION = "v1.5.1"  # the oldest KubeRay that keeps spec.authOptions (cluster/README.md)
CRDS = ROOT / "tests" / "data" / f"kuberay-{KUBERAY_VERSION}"


@functools.cache
def _crd(plural: str) -> dict[str, Any]:
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # 2 MB of YAML: the C parser
    return yaml.load(gzip.decompress((CRDS / f"ray.io_{plural}.yaml.gz").read_bytes()), loader)


def crd_schema(plural: str) -> dict[str, Any]:
    """The v1 openAPIV3Schema of a vendored CRD (a copy: callers may not alter the cache)."""
    crd = copy.deepcopy(_crd(plural))
    (version,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1"]
    return version["schema"]["openAPIV3Schema"]


def pruned_fields(value: Any, schema: dict[str, Any], path: str) -> list[str]:
    """Paths in `value` that the API server would drop under this structural schema: object
    keys not in `properties`, unless the schema preserves unknown fields or has
    additionalProperties."""
    out: list[str] = []
    if isinstance(value, dict):
        props = schema.get("properties", {})
        extra = schema.get("additionalProperties")
        keep_unknown = schema.get("x-kubernetes-preserve-unknown-fields") is True
        for key, item in value.items():
            if key in props:
                out += pruned_fields(item, props[key], f"{path}.{key}")
            elif isinstance(extra, dict):
                out += pruned_fields(item, extra, f"{path}.{key}")
            elif not (keep_unknown or extra is True):
                out.append(f"{path}.{key}")
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for n, item in enumerate(value):
            out += pruned_fields(item, schema["items"], f"{path}[{n}]")
    return out


def schema_errors(document: dict[str, Any], schema: dict[str, Any]) -> list[str]:
    jsonschema = pytest.importorskip("jsonschema")
    body = {k: v for k, v in document.items() if k != "metadata"}  # ObjectMeta: the server's own
    trimmed = {
        **schema,
        "properties": {k: v for k, v in schema["properties"].items() if k != "metadata"},
    }
    validator = jsonschema.Draft7Validator(trimmed)
    return [
        f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(body)
    ]


@pytest.mark.parametrize(
    ("rel", "plural"),
    [("kuberay/rayjob.yaml", "rayjobs"), ("kuberay/raycluster.yaml", "rayclusters")],
)
def test_kuberay_manifest_passes_the_crd_schema_with_nothing_pruned(rel, plural):
    document = load(rel)
    schema = crd_schema(plural)
    assert not schema_errors(document, schema)
    spec_schema = schema["properties"]["spec"]
    assert pruned_fields(document["spec"], spec_schema, "spec") == []


def test_the_prune_check_sees_unknown_and_misplaced_fields():
    schema = crd_schema("rayclusters")["properties"]["spec"]
    spec = copy.deepcopy(load("kuberay/raycluster.yaml")["spec"])
    spec["headGroupSpec"]["template"]["spec"]["containers"][0]["shmSize"] = "8Gi"
    spec["authOption"] = {"mode": "token"}  # a typo of authOptions
    assert pruned_fields(spec, schema, "spec") == [
        "spec.headGroupSpec.template.spec.containers[0].shmSize",
        "spec.authOption",
    ]
    spec = copy.deepcopy(load("kuberay/raycluster.yaml")["spec"])
    spec["workerGroupSpecs"][0]["replicas"] = "two"
    document = {"apiVersion": "ray.io/v1", "kind": "RayCluster", "spec": spec}
    assert any("replicas" in e for e in schema_errors(document, crd_schema("rayclusters")))


def test_kuberay_operator_validation_rules_that_apply():
    """The rules KubeRay v1.5.1's operator checks beyond the schema
    (ray-operator/controllers/ray/utils/validation.go) that these manifests touch."""
    from packaging.version import Version

    dns1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
    rayjob, cluster = load("kuberay/rayjob.yaml"), load("kuberay/raycluster.yaml")
    assert dns1035.match(cluster["metadata"]["name"]) and len(cluster["metadata"]["name"]) <= 53
    assert dns1035.match(rayjob["metadata"]["name"]) and len(rayjob["metadata"]["name"]) <= 47
    for spec in (rayjob["spec"]["rayClusterSpec"], cluster["spec"]):
        if spec.get("authOptions", {}).get("mode") == "token":
            assert Version(spec["rayVersion"]) >= Version("2.52.0")  # token auth needs Ray 2.52+
        for group in [spec["headGroupSpec"], *spec["workerGroupSpecs"]]:
            assert "labels" not in group["rayStartParams"]
            if group.get("resources"):  # group-level resources exclude rayStartParams' own
                assert not {"num-cpus", "num-gpus", "memory", "resources"} & set(
                    group["rayStartParams"]
                )
    spec = rayjob["spec"]
    yaml.safe_load(spec["runtimeEnvYAML"])
    assert spec["activeDeadlineSeconds"] > 0 and spec["backoffLimit"] >= 0
    assert spec["shutdownAfterJobFinishes"] or "ttlSecondsAfterFinished" not in spec
    assert spec["submitterPodTemplate"]["spec"]["restartPolicy"] == "Never"


def test_the_vendored_crds_are_the_version_the_guide_requires():
    guide = (CLUSTER / "README.md").read_text()
    assert f"KubeRay {KUBERAY_VERSION.lstrip('v')}" in guide
    assert "authOptions" in crd_schema("rayclusters")["properties"]["spec"]["properties"]


# --- the node preflight (axiom_ray/node_check.py) --------------------------------------------------


def test_preflight_names_the_missing_kernel_feature():
    # Ray's default AMI (Ubuntu 18.04): Linux 5.4 has no Landlock at all.
    assert node_check.landlock_problem("5.4.0-1103-aws", 0, errno.ENOSYS).startswith(
        "Landlock: kernel 5.4.0-1103-aws is older than 5.13 and has none"
    )
    assert "lsm= parameter" in node_check.landlock_problem("6.8.0-1015-aws", 0, errno.EOPNOTSUPP)
    blocked = node_check.landlock_problem("6.8.0-1015-aws", 0, errno.EPERM)
    assert "seccomp profile" in blocked and "CONFIG_SECURITY_LANDLOCK" in blocked
    assert node_check.landlock_problem("6.8.0-1015-aws", 3, 0) is None
    assert node_check.kernel_version("5.13.0") == (5, 13)


def test_preflight_on_this_machine(capfd):
    """The real probe: this machine's kernel has Landlock (the sandbox tests need it too)."""
    assert node_check.main(["--min-isolation", "landlock"]) == 0
    assert "Landlock ABI" in capfd.readouterr().out


def test_preflight_refuses_a_pod_without_token_auth(monkeypatch, capfd):
    monkeypatch.delenv("RAY_AUTH_MODE", raising=False)
    assert node_check.main(["--min-isolation", "rlimits", "--require-token-auth"]) == 1
    err = capfd.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "KubeRay" in err[0] and ">= 1.5.1" in err[0]
    monkeypatch.setenv("RAY_AUTH_MODE", "token")
    assert node_check.main(["--min-isolation", "rlimits", "--require-token-auth"]) == 0


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
