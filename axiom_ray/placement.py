"""Resource plan: what each role asks Ray for, derived from the config and the cluster, checked
before any actor starts. Pure: takes `ray.cluster_resources()` as a dict (and each node's CPUs)."""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

from axiom_ray.config import RunConfig

# The least CPU share a verifier may ask for: below it the plan is refused (see check_fits).
MIN_VERIFIER_CPUS = 0.1


class PlanError(RuntimeError):
    """The cluster cannot fit the plan; the message says what is missing."""


@dataclass(frozen=True)
class Plan:
    replicas: int
    gen_num_gpus: float
    gen_num_cpus: float
    verifier_workers: int
    verifier_cpus: float  # per verifier (1, or a share where fewer CPUs are left beside the generators)
    verifier_concurrency: int  # candidates each verifier judges at once (capped by its node's cores)
    # The verifiers do not fit beside the trainer as well: the loop stops them while it trains
    # and starts them again after (otherwise they live for the whole run).
    release_verifiers_to_train: bool
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
        verifiers = (f"{self.verifier_workers} verifier(s) x {self.verifier_cpus:g} CPU, "
                     f"up to {self.verifier_concurrency} candidate(s) at once each")
        if self.release_verifiers_to_train:
            verifiers += " (stopped while training: they do not fit beside the trainer)"
        return f"{gen}; {verifiers}; {train}{mode}"


def make_plan(cfg: RunConfig, resources: dict[str, float], node_cpus: Sequence[float] | None = None) -> Plan:
    """Derive per-role resources from the config ("auto" values) and the cluster's totals.
    `node_cpus`: each alive node's CPUs (one node of the total CPUs when not given)."""
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
    # Verifiers take whole CPUs (a fraction could leave every node a part of a CPU and no node
    # a whole one for a train worker). By default as many as fit beside the generators and the
    # trainer on every node layout Ray may choose, so they live for the whole run; where none
    # fits (or verifier.workers asks for more), they are stopped while training.
    nodes = list(node_cpus) if node_cpus is not None else [cpus]
    beside_trainer = int(cpu_left - t.num_workers * t.cpus_per_worker + 1e-9)
    while beside_trainer > 0 and not trainer_fits_beside(
            nodes, [g.num_cpus] * g.replicas + [1.0] * beside_trainer, t.num_workers, t.cpus_per_worker):
        beside_trainer -= 1
    workers = cfg.verifier.workers or (beside_trainer if beside_trainer >= 1 else max(1, int(cpu_left) - 1))
    plan = Plan(
        replicas=g.replicas, gen_num_gpus=gen_gpus, gen_num_cpus=g.num_cpus,
        verifier_workers=workers, verifier_cpus=verifier_cpus(cpu_left, workers),
        verifier_concurrency=cfg.verifier.concurrency or verifier_concurrency(cpu_left, workers),
        release_verifiers_to_train=workers > beside_trainer,
        train_workers=t.num_workers, train_use_gpu=train_use_gpu,
        train_gpus_per_worker=train_gpus, train_cpus_per_worker=t.cpus_per_worker,
        colocated=colocated,
    )
    check_fits(plan, resources)
    return plan


def trainer_fits_beside(node_cpus: Sequence[float], placed: Sequence[float], workers: int,
                        cpus_per_worker: float) -> bool:
    """Whether `workers` train workers of `cpus_per_worker` CPUs each still find room however
    Ray has spread the actors already placed (their CPUs: `placed`) over the nodes.

    Ray places each actor by its own policy (it spreads once a node is half used), so totals are
    not enough: two 3-CPU nodes hold four 1-CPU actors as 2 + 2, which leaves no node the 2 CPUs
    of a train worker, and Ray Train waits for them forever. The worst layout takes train slots
    away cheapest first; with pieces of the smallest actor's size (a safe bound for mixed sizes),
    pushing a node's free CPUs below k slots' worth takes floor((free - k * cpus_per_worker) /
    piece) + 1 pieces."""
    if workers <= 0 or cpus_per_worker <= 0:
        return True
    piece = min(placed, default=1.0)
    pieces = sum(placed) / piece
    slots, costs = 0, []
    for cpus in node_cpus:
        n = int(cpus / cpus_per_worker + 1e-9)
        slots += n
        taken = [math.floor((cpus - k * cpus_per_worker) / piece + 1e-9) + 1 for k in range(n, 0, -1)]
        costs += [b - a for a, b in itertools.pairwise([0, *taken])]
    broken, spent = 0, 0.0
    for cost in sorted(costs):
        if spent + cost > pieces + 1e-9:
            break
        spent += cost
        broken += 1
    return slots - broken >= workers


def verifier_cpus(free: float, workers: int) -> float:
    """CPUs each verifier asks for: one, or an equal share of `free` where that is less,
    rounded down to hundredths; 0 when nothing is left."""
    return max(0.0, math.floor(min(1.0, free / workers) * 100) / 100)


def verifier_concurrency(free: float, workers: int) -> int:
    """Candidates each verifier judges at once by default: the CPUs left beside the generators,
    shared out. While sampling, the trainer's CPUs are idle: a verifier that judged one candidate
    at a time would leave them idle too, and a pass's last candidates (often ones that loop to
    their CPU limit) would queue behind each other on one core."""
    return max(1, int(free / max(1, workers) + 1e-9))


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
    # The generators live for the whole run; the verifiers too, beside the trainer when there
    # is room, else stopped while it trains (make_plan).
    need_cpu = cpus_needed(plan.replicas * plan.gen_num_cpus, plan.train_workers * plan.train_cpus_per_worker,
                           MIN_VERIFIER_CPUS * plan.verifier_workers)
    if plan.verifier_cpus < MIN_VERIFIER_CPUS or need_cpu > cpus + 1e-9:
        missing.append(f"{max(need_cpu, plan.replicas * plan.gen_num_cpus + 1):g} CPU (cluster has {cpus:g}); "
                       "lower generation.replicas, generation.num_cpus, training.num_workers or verifier.workers, "
                       "or start Ray with more --num-cpus")
    if missing:
        raise PlanError("the cluster cannot fit the plan: needs " + " and ".join(missing))


def cpus_needed(gen_cpus: float, train_cpus: float, verifier_cpus: float = 1.0) -> float:
    """CPUs the phases that run together need: sampling, the generators plus the verifiers (one
    by default); training, the generators (kept alive for a live redeploy) plus the train workers
    (Ray Train's controller takes none)."""
    return max(gen_cpus + verifier_cpus, gen_cpus + train_cpus)


def local_cluster_cpus(cfg: RunConfig, machine_cpus: int) -> int:
    """Logical CPUs for a local cluster started for `cfg` (as scripts/run.sh starts one): the
    machine's cores, raised so the plan fits with one verifier to spare while sampling. Phases
    take turns, so logical CPUs above the cores cost nothing when idle."""
    g, t = cfg.generation, cfg.training
    need = cpus_needed(g.replicas * g.num_cpus, t.num_workers * t.cpus_per_worker)
    return max(machine_cpus, math.ceil(need) + 1)
