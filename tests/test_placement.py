import pytest

from axiom_ray.config import build_config
from axiom_ray.placement import PlanError, make_plan, trainer_fits_beside


def test_cpu_only_plan():
    plan = make_plan(build_config(), {"CPU": 4})
    assert plan.gen_num_gpus == 0 and not plan.train_use_gpu and not plan.colocated
    # Whole CPUs beside the generator (1) and the trainer (2): one verifier, kept while training.
    assert (plan.verifier_workers, plan.verifier_cpus, plan.release_verifiers_to_train) == (1, 1.0, False)


def test_verifiers_that_do_not_fit_beside_the_trainer_are_released_to_it():
    plan = make_plan(build_config(overrides=["generation.replicas=2"]), {"CPU": 4})
    assert plan.release_verifiers_to_train and plan.verifier_workers == 1 and plan.verifier_cpus == 1.0
    # Asked for more than fit beside the trainer: they share what the generators leave.
    plan = make_plan(build_config(overrides=["verifier.workers=4"]), {"CPU": 4})
    assert plan.release_verifiers_to_train and plan.verifier_cpus == 0.75


def test_verifiers_stay_beside_the_trainer_only_where_every_layout_leaves_it_a_node():
    # Two 3-CPU workers and a CPU-less head (the RayJob manifest's shape): in total 2 generators,
    # 2 verifiers and a 2-CPU trainer fit (6 CPUs), but Ray may place the four 1-CPU actors
    # 2 + 2, leaving no node 2 CPUs: one verifier stays (any layout of three leaves one node 2).
    cfg = build_config(overrides=["generation.replicas=2"])
    assert make_plan(cfg, {"CPU": 6}).verifier_workers == 2  # one node of 6: totals are enough
    plan = make_plan(cfg, {"CPU": 6}, node_cpus=[0, 3, 3])
    assert (plan.verifier_workers, plan.release_verifiers_to_train) == (1, False)
    # Nodes too small for a train worker beside anything: the verifiers are stopped to train.
    plan = make_plan(cfg, {"CPU": 4}, node_cpus=[2, 2])
    assert plan.release_verifiers_to_train


@pytest.mark.parametrize("nodes, placed, workers, fits", [
    ([3, 3], [1] * 4, 1, False),  # 2 + 2: one CPU left on each node
    ([3, 3], [1] * 3, 1, True),  # 2 + 1 or 3 + 0: a node keeps 2
    ([4, 4], [1] * 5, 1, True),  # 3 + 2 or 4 + 1: a node keeps 2
    ([4, 4], [1] * 6, 1, False),  # 3 + 3
    ([4, 4], [1] * 3, 2, True),  # 3 + 0 leaves 4 on one node: two workers
    ([4, 4], [0.5] * 6, 2, False),  # 2.5 + 0.5: 1.5 and 3.5 CPUs left, one slot
    ([6], [1] * 4, 1, True),
    ([6], [1] * 5, 1, False),
    ([0, 3, 3], [], 2, True),
])
def test_trainer_fits_beside_the_worst_layout(nodes, placed, workers, fits):
    assert trainer_fits_beside(nodes, placed, workers, 2) is fits


def test_one_gpu_colocates_generator_and_trainer():
    plan = make_plan(build_config(), {"CPU": 8, "GPU": 1})
    assert plan.colocated and plan.gen_num_gpus == 0.5 and plan.train_gpus_per_worker == 0.5


def test_enough_gpus_no_colocation():
    plan = make_plan(build_config(overrides=["generation.replicas=2"]), {"CPU": 16, "GPU": 4})
    assert not plan.colocated and plan.gen_num_gpus == 1 and plan.train_use_gpu


@pytest.mark.parametrize("resources, overrides, missing", [
    ({"CPU": 1}, [], "CPU"),
    ({"CPU": 8}, ["training.use_gpu=true"], "GPU"),
    ({"CPU": 8, "GPU": 1}, ["generation.replicas=3"], "GPU"),
])
def test_plan_that_cannot_fit_says_what_is_missing(resources, overrides, missing):
    with pytest.raises(PlanError, match=missing):
        make_plan(build_config(overrides=overrides), resources)


def test_verifiers_judge_with_the_cpus_the_sampling_phase_leaves_them():
    # 4 CPUs, the generator takes 1: while sampling, the 3 left (the trainer's 2 are idle then)
    # are the one verifier's; the actor caps it at its node's cores.
    plan = make_plan(build_config(), {"CPU": 4})
    assert plan.verifier_concurrency == 3 and "up to 3 candidate(s) at once" in plan.describe()
    assert make_plan(build_config(overrides=["verifier.workers=3"]), {"CPU": 4}).verifier_concurrency == 1
    assert make_plan(build_config(overrides=["verifier.concurrency=1"]), {"CPU": 4}).verifier_concurrency == 1
    assert make_plan(build_config(overrides=["verifier.concurrency=5"]), {"CPU": 4}).verifier_concurrency == 5
