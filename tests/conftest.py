"""Shared fixtures: one real local Ray cluster for the whole session (started on first use)."""

from __future__ import annotations

import os

import pytest
from ports import free_port

# A one-machine cluster on 127.0.0.1, no token prompts in tests, quiet and quick.
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_DEDUP_LOGS", "0")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture(scope="session")
def ray_cluster():
    """A real local Ray cluster (never attaches to a running one), shared by every test."""
    import ray

    if not ray.is_initialized():
        ray.init(
            address="local",
            num_cpus=4,  # logical CPUs: phases take turns on this 2-core machine
            object_store_memory=512 * 1024 * 1024,
            include_dashboard=True,  # Ray Train's controller needs the State API
            dashboard_host="127.0.0.1",
            dashboard_port=free_port(),  # not 8265: scripts/run.sh would take it for its cluster
            log_to_driver=False,
            runtime_env={"env_vars": {"RAY_AUTH_MODE": "disabled", "HF_HUB_OFFLINE": "1"}},
        )
    yield ray
    ray.shutdown()
