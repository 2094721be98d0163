"""Checks a run makes before it takes a multi-node cluster's resources. Pure: no Ray, no I/O
beyond reading /proc/self/mounts (whether a path is local is storage.py's question).

The run directory (`--storage`) is read and written by every node: the driver writes the
manifest, Ray Data's verifier actors write Parquet, Ray Train's workers write checkpoints and the
generators read adapters. On one node any local path works; on several, a node-local path
silently splits the run across disks (an adapter written on node A is "missing" on node B). So
a local path is refused on a multi-node cluster unless it is known to be shared:

- a URI of a remote filesystem (`s3://`, `gs://`, `hdfs://`, `abfs://`, ...), or
- a path under a directory listed in `AXIOM_SHARED_PATHS` (`:`-separated, like PATH), for a
  mount every node has at the same place (NFS, EFS, Lustre, a one-machine test cluster), or
- the caller's explicit `shared=True` (proposed config key `shared_storage`), or
- a path whose mount on this node is a network filesystem (`/proc/mounts` type nfs, nfs4,
  cifs, lustre, ceph, a FUSE bucket mount, ...): the usual shape of a shared mount.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from axiom_ray.config import ConfigError
from axiom_ray.storage import is_local, local_path

SHARED_PATHS_ENV = "AXIOM_SHARED_PATHS"
CONFIG_FLAG = "shared_storage"  # the proposed RunConfig key: --set shared_storage=true

# Mount types that are shared between machines by construction. A FUSE mount counts only when
# it is a known network/bucket client; host-to-VM shares (9p, virtiofs) do not count: they are
# shared with the host, not with the other nodes.
_NETWORK_FS = """
    nfs nfs4 cifs smb3 smbfs lustre gpfs beegfs ceph glusterfs afs ocfs2 gfs2 panfs
    wekafs orangefs efs fuse.gcsfuse fuse.s3fs fuse.goofys fuse.mountpoint-s3 fuse.juicefs
    fuse.ceph-fuse fuse.glusterfs fuse.blobfuse fuse.blobfuse2 fuse.rclone fuse.alluxio-fuse
    fuse.weka
"""
NETWORK_FS_TYPES = frozenset(_NETWORK_FS.split())


class NodeLocalStorageError(ConfigError):
    """A node-local run directory on a multi-node cluster; the message says what to use. A
    ConfigError (so a ValueError): the CLI reports it in one line and exits 2."""


def shared_paths_from_env(environ: Mapping[str, str] | None = None) -> list[str]:
    """Directories named in AXIOM_SHARED_PATHS (empty entries ignored)."""
    env = os.environ if environ is None else environ
    return [p for p in env.get(SHARED_PATHS_ENV, "").split(os.pathsep) if p.strip()]


def _is_under(path: str, root: str) -> bool:
    root = local_path(root)
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def _unescape_mount(field: str) -> str:
    """/proc/mounts escapes space, tab, newline and backslash as octal (\\040 ...)."""
    for code, char in (("\\040", " "), ("\\011", "\t"), ("\\012", "\n"), ("\\134", "\\")):
        field = field.replace(code, char)
    return field


def mount_fs_type(path: str, mounts_text: str | None = None) -> str | None:
    """The filesystem type of the mount holding `path` (longest matching mount point), from
    `mounts_text` in /proc/mounts format (read from /proc/self/mounts when None)."""
    if mounts_text is None:
        try:
            with open("/proc/self/mounts", encoding="utf-8") as f:
                mounts_text = f.read()
        except OSError:
            return None  # not Linux: no auto-detection, the explicit escape hatches still work
    best: tuple[int, str] | None = None
    for line in mounts_text.splitlines():
        parts = line.split()
        if len(parts) < 3:
            continue
        mount_point, fs_type = _unescape_mount(parts[1]), parts[2]
        if _is_under(path, mount_point) and (best is None or len(mount_point) > best[0]):
            best = (len(mount_point), fs_type)
    return best[1] if best else None


def is_shared_storage(
    uri: str,
    *,
    shared: bool = False,
    shared_paths: Sequence[str] | None = None,
    mounts_text: str | None = None,
) -> bool:
    """Whether every node of a cluster sees the same run directory at `uri` (see module doc).
    `shared_paths` defaults to AXIOM_SHARED_PATHS."""
    if shared or not is_local(uri):
        return True
    path = local_path(uri)
    roots = shared_paths_from_env() if shared_paths is None else list(shared_paths)
    if any(_is_under(path, root) for root in roots):
        return True
    # A path that does not exist yet (a new run) lies on the mount of its longest mounted prefix.
    return mount_fs_type(path, mounts_text) in NETWORK_FS_TYPES


def check_storage_for_cluster(
    storage_uri: str,
    num_nodes: int,
    *,
    shared: bool = False,
    shared_paths: Sequence[str] | None = None,
    mounts_text: str | None = None,
) -> None:
    """Refuse a node-local run directory on a cluster of more than one node.

    Raises NodeLocalStorageError naming the path, the node count and the ways out."""
    if num_nodes <= 1:
        return
    if is_shared_storage(
        storage_uri, shared=shared, shared_paths=shared_paths, mounts_text=mounts_text
    ):
        return
    raise NodeLocalStorageError(
        f"--storage {storage_uri} is a node-local path but the cluster has {num_nodes} nodes: "
        "use shared storage (s3://, gs://, or an NFS mount path marked with "
        f"--set {CONFIG_FLAG}=true or listed in {SHARED_PATHS_ENV})"
    )


def alive_node_count(nodes: Iterable[Mapping[str, Any]]) -> int:
    """Alive nodes in `ray.nodes()` output (dead nodes stay listed there for a while)."""
    return sum(1 for n in nodes if n.get("Alive", n.get("alive", False)))


def alive_node_resources(nodes: Iterable[Mapping[str, Any]], key: str) -> list[float]:
    """Each alive node's amount of resource `key` ("CPU", "memory", ...) in `ray.nodes()` output."""
    return [float(n.get("Resources", {}).get(key, 0.0)) for n in nodes if n.get("Alive", n.get("alive", False))]


def alive_node_cpus(nodes: Iterable[Mapping[str, Any]]) -> list[float]:
    """Each alive node's CPUs (placement.make_plan's node_cpus)."""
    return alive_node_resources(nodes, "CPU")

