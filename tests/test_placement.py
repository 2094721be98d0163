import pytest

from axiom_ray.config import build_config
from axiom_ray.placement import PlanError, make_plan


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
