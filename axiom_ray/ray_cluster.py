"""Which Ray cluster a command runs on: join a running one, or start (and stop) a local one.

`axiom iterate|generate|train|evaluate` (and `jobs/*.py`, the same commands) decide here, before
any other work:

1. `RAY_ADDRESS` set (by `ray job submit` for its driver, or by the user): join that cluster. A
   `ray://` (Ray Client) address works too; `local` starts a local cluster.
2. Else the address `ray start` last wrote on this machine (`<ray temp dir>/ray_current_cluster`,
   the temp dir being $RAY_TMPDIR, else $TMPDIR, else /tmp, plus `/ray`, as Ray reads it): join it.
3. Else: start a local cluster sized for the plan (placement.local_cluster_cpus, as
   scripts/run.sh does) and stop it when the command ends.

Every address is probed first (a TCP connect to its GCS port, PROBE_SECONDS at most): `ray.init`
on an address where nothing answers waits for minutes. An unreachable RAY_ADDRESS is bad input
(one line, exit 2); an unreachable address file is what a stopped `ray start` cluster leaves
behind (scripts/run.sh stops its cluster at the end), so it is named in one warning line and a
local cluster is started instead.

Pure up to `ray_session`: the resolution and the probe need neither Ray nor network beyond a
connect; `ray` is imported only to connect.
"""

from __future__ import annotations

import logging
import os
import socket
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass

from axiom_ray.config import RunConfig
from axiom_ray.placement import local_cluster_cpus

log = logging.getLogger(__name__)

ADDRESS_ENV = "RAY_ADDRESS"
ADDRESS_FILE = "ray_current_cluster"  # where `ray start` records its GCS address (Ray's name)
PROBE_SECONDS = 2.0
DASHBOARD_PORT = 8265  # Ray's default; another free port when it is taken (e.g. by scripts/run.sh)
NUM_CPUS_ENV = "AXIOM_NUM_CPUS"  # the same override scripts/run.sh reads
DASHBOARD_PORT_ENV = "AXIOM_DASHBOARD_PORT"


class ClusterAddressError(RuntimeError):
    """The cluster named to join cannot be joined; the message (one line) names the address."""


@dataclass(frozen=True)
class Target:
    """Where a command's driver connects: `address` None starts a local cluster. `source` says
    where the address came from (RAY_ADDRESS, or the address file's path)."""

    address: str | None
    source: str = ""


def ray_temp_dir(environ: Mapping[str, str] | None = None) -> str:
    """Ray's temp dir, as Ray picks it (ray._common.utils.get_default_ray_temp_dir)."""
    env = os.environ if environ is None else environ
    if "RAY_TMPDIR" in env:
        base = env["RAY_TMPDIR"]
    elif sys.platform.startswith("linux") and "TMPDIR" in env:
        base = env["TMPDIR"]
    else:
        base = "/tmp"
    return os.path.join(base, "ray")


def find_target(environ: Mapping[str, str] | None = None) -> Target:
    """The cluster to join, in the order of the module docstring (no probing here)."""
    env = os.environ if environ is None else environ
    value = env.get(ADDRESS_ENV, "").strip()
    if value == "local":
        return Target(None, ADDRESS_ENV)
    if value and value != "auto":
        if value.startswith(("http://", "https://")):
            raise ClusterAddressError(
                f"{ADDRESS_ENV}={value} is a dashboard address (what `ray job submit` takes); a direct "
                "run joins a cluster by its GCS address (host:port, `ray start --head --port`): "
                f"set {ADDRESS_ENV} to that, or unset it to start a local cluster")
        return Target(value, ADDRESS_ENV)
    path = os.path.join(ray_temp_dir(env), ADDRESS_FILE)
    try:
        with open(path, encoding="utf-8") as f:
            recorded = f.read().strip()
    except OSError:
        recorded = ""
    return Target(recorded or None, path if recorded else "")


def _host_port(address: str) -> tuple[str, int]:
    rest = address.split("://", 1)[-1].rstrip("/")
    host, sep, port = rest.rpartition(":")
    if not sep or not port.isdigit():
        raise ClusterAddressError(f"{address!r}: expected host:port (e.g. 127.0.0.1:6379)")
    return host.strip("[]") or "127.0.0.1", int(port)


def probe(address: str, timeout: float = PROBE_SECONDS) -> str | None:
    """None when something accepts a connection at the address's GCS port within `timeout`,
    else why not (e.g. "connection refused")."""
    host, port = _host_port(address)
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return None
    except TimeoutError:
        return f"no answer within {timeout:g} s"
    except OSError as e:
        return (e.strerror or str(e)).lower()


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def dashboard_port(environ: Mapping[str, str] | None = None) -> int:
    env = os.environ if environ is None else environ
    if env.get(DASHBOARD_PORT_ENV):
        return int(env[DASHBOARD_PORT_ENV])
    return DASHBOARD_PORT if _port_free(DASHBOARD_PORT) else _free_port()


def checked_target(environ: Mapping[str, str] | None = None) -> Target:
    """find_target, with its address probed: RAY_ADDRESS unreachable -> ClusterAddressError;
    the address file unreachable (a stopped cluster) -> one warning, and a local cluster."""
    target = find_target(environ)
    if target.address is None:
        return target
    why = probe(target.address)
    if why is None:
        return target
    if target.source == ADDRESS_ENV:
        raise ClusterAddressError(
            f"{ADDRESS_ENV}={target.address}: no Ray cluster answers there ({why}); point it at a running "
            f"cluster's GCS address (host:port), or unset it to start a local cluster")
    log.warning("%s names %s, where no Ray cluster answers (%s): a stopped cluster's address; starting a "
                "local cluster (set %s to join another)", target.source, target.address, why, ADDRESS_ENV)
    return Target(None, target.source)


@contextmanager
def ray_session(cfg: RunConfig) -> Iterator[None]:
    """Connect this driver for the length of a command: join the cluster checked_target finds,
    or start a local one sized for `cfg`'s plan and stop it at the end. Nothing to do when Ray
    is already initialised (a test's cluster, a notebook)."""
    loaded = sys.modules.get("ray")
    if loaded is not None and loaded.is_initialized():
        yield
        return
    target = checked_target()  # before importing Ray (seconds): a dead address fails at once
    import ray

    if target.address:
        ray.init(address=target.address, log_to_driver=True)
        log.info("joined the Ray cluster at %s (from %s)", target.address, target.source)
    else:
        cores = os.cpu_count() or 1
        cpus = int(os.environ.get(NUM_CPUS_ENV) or local_cluster_cpus(cfg, cores))
        port = dashboard_port()
        # The dashboard also serves the State API that Ray Train's controller reads.
        ray.init(address="local", num_cpus=cpus, include_dashboard=True, dashboard_host="127.0.0.1",
                 dashboard_port=port, log_to_driver=True)
        log.info("started a local Ray cluster (%d logical CPUs on %d cores, for the plan; dashboard "
                 "http://127.0.0.1:%d); it stops when this command ends", cpus, cores, port)
    try:
        yield
    finally:
        ray.shutdown()  # stops the cluster this driver started; only disconnects from a joined one
