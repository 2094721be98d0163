"""Resource plan: what each role asks Ray for, derived from the config and the cluster, checked
before any actor starts. Pure: takes `ray.cluster_resources()` as a dict."""

from __future__ import annotations

import math
from dataclasses import dataclass

from axiom_ray.config import RunConfig


class PlanError(RuntimeError):
    """The cluster cannot fit the plan; the message says what is missing."""


@dataclass(frozen=True)
class Plan:
    replicas: int
    gen_num_gpus: float
    gen_num_cpus: float
    verifier_workers: int
    train_workers: int
    train_use_gpu: bool
    train_gpus_per_worker: float
    train_cpus_per_worker: float
    colocated: bool  # generators and trainer share GPUs and take turns (sleep/wake)

    def describe(self) -> str:
        gen = f"{self.replicas} generator(s) x {self.gen_num_gpus:g} GPU / {self.gen_num_cpus:g} CPU"
        train = (f"{self.train_workers} train worker(s) x "
                 f"{self.train_gpus_per_worker:g} GPU / {self.train_cpus_per_worker:g} CPU")
        mode = ", colocated on the GPUs (take turns)" if self.colocated else ""
        return f"{gen}; {self.verifier_workers} verifier(s) x 1 CPU; {train}{mode}"


def make_plan(cfg: RunConfig, resources: dict[str, float]) -> Plan:
    """Derive per-role resources from the config ("auto" values) and the cluster's totals."""
    gpus = float(resources.get("GPU", 0.0))
    cpus = float(resources.get("CPU", 0.0))
    g, t = cfg.generation, cfg.training
    train_use_gpu = gpus > 0 if t.use_gpu == "auto" else t.use_gpu == "true"
    gen_gpus = g.num_gpus if g.num_gpus >= 0 else (1.0 if gpus > 0 else 0.0)
    train_gpus = 1.0 if train_use_gpu else 0.0
    colocated = False
    if train_use_gpu and gen_gpus > 0 and g.replicas * gen_gpus + t.num_workers * train_gpus > gpus:
        # Not enough GPUs for both at once: each takes half a GPU on paper so Ray schedules them
        # side by side, and the loop makes them take turns (vLLM sleeps while the trainer runs).
        colocated = True
        gen_gpus = min(gen_gpus, 0.5)
        train_gpus = 0.5
    cpu_left = cpus - g.replicas * g.num_cpus
    workers = cfg.verifier.workers or max(1, int(cpu_left) - 1)
    plan = Plan(
        replicas=g.replicas, gen_num_gpus=gen_gpus, gen_num_cpus=g.num_cpus,
        verifier_workers=workers, train_workers=t.num_workers, train_use_gpu=train_use_gpu,
        train_gpus_per_worker=train_gpus, train_cpus_per_worker=t.cpus_per_worker,
        colocated=colocated,
    )
    check_fits(plan, resources)
    return plan


def check_fits(plan: Plan, resources: dict[str, float]) -> None:
    """Fail with what is missing when the phases that run together cannot be scheduled."""
    gpus = float(resources.get("GPU", 0.0))
    cpus = float(resources.get("CPU", 0.0))
    missing: list[str] = []
    gen_gpu = plan.replicas * plan.gen_num_gpus
    train_gpu = plan.train_workers * plan.train_gpus_per_worker
    if gen_gpu + train_gpu > gpus + 1e-9:
        missing.append(f"{gen_gpu + train_gpu:g} GPU for generators and trainer (cluster has {gpus:g}); "
                       "lower generation.replicas or training.num_workers, or set generation.num_gpus=0 "
                       "to sample on CPU")
    need_cpu = cpus_needed(plan.replicas * plan.gen_num_cpus, plan.train_workers * plan.train_cpus_per_worker)
    if need_cpu > cpus + 1e-9:
        missing.append(f"{need_cpu:g} CPU (cluster has {cpus:g}); lower generation.replicas, "
                       "generation.num_cpus or training.num_workers, or start Ray with more --num-cpus")
    if missing:
        raise PlanError("the cluster cannot fit the plan: needs " + " and ".join(missing))


def cpus_needed(gen_cpus: float, train_cpus: float) -> float:
    """CPUs the phases that run together need: sampling, the generators plus at least one
    verifier; training, the generators (kept alive for a live redeploy) plus the train workers."""
    return max(gen_cpus + 1, gen_cpus + train_cpus)


def local_cluster_cpus(cfg: RunConfig, machine_cpus: int) -> int:
    """Logical CPUs for a local cluster started for `cfg` (as scripts/run.sh starts one): the
    machine's cores, raised so the plan fits with one verifier to spare while sampling. Phases
    take turns, so logical CPUs above the cores cost nothing when idle."""
    g, t = cfg.generation, cfg.training
    need = cpus_needed(g.replicas * g.num_cpus, t.num_workers * t.cpus_per_worker)
    return max(machine_cpus, math.ceil(need) + 1)
