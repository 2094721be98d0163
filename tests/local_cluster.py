"""A real Ray cluster of separate raylets for a test, started and stopped by the shipped
`scripts/local_cluster.sh` (its own state and temp directory, so it never meets another cluster
on the machine, and it is stopped by the PIDs it recorded, never by `ray stop`).

    with LocalCluster(env=extra_env, args=["--workers", "2", ...]) as c:
        c.gcs_address, c.dashboard_url, c.env   # env: what a client of this cluster needs

Every raylet inherits `env` (e.g. the S3 credentials), as nodes of a real cluster have theirs
from their instance profile or pod.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "local_cluster.sh"
START_TIMEOUT_S = 900  # every raylet in turn (up to 180 s each), on a shared 2-core machine


class LocalCluster:
    def __init__(self, env: dict[str, str] | None = None, args: list[str] | None = None) -> None:
        # Short and under /tmp: Ray nests its session's Unix sockets here (107 bytes at most).
        self.state_dir = Path(tempfile.mkdtemp(prefix="axlc-", dir="/tmp"))
        self.args = args or []
        bin_dir = str(Path(sys.executable).parent)  # the Ray and Python of this test run
        self.env = {
            **os.environ,
            **(env or {}),
            "PATH": f"{bin_dir}:{os.environ.get('PATH', '')}",
            "AXIOM_LOCAL_CLUSTER_DIR": str(self.state_dir),
            "RAY_AUTH_MODE": "disabled",  # no token under the shared ~/.ray
            "RAY_USAGE_STATS_ENABLED": "0",
        }
        self.env.pop("RAY_ADDRESS", None)
        self.gcs_address = ""
        self.dashboard_url = ""

    def _script(self, *args: str, timeout: float) -> subprocess.CompletedProcess:
        return subprocess.run(["bash", str(SCRIPT), *args], env=self.env, cwd=ROOT, text=True,
                              capture_output=True, timeout=timeout)

    def __enter__(self) -> LocalCluster:
        done = self._script("start", *self.args, timeout=START_TIMEOUT_S)
        if done.returncode != 0:
            # Once more: on a saturated machine a Ray subprocess can time out at start
            # (seen here at load 40: "Timed out waiting for node info" in ray_client_server).
            self._script("stop", timeout=120)
            done = self._script("start", *self.args, timeout=START_TIMEOUT_S)
        if done.returncode != 0:
            self._script("stop", timeout=120)
            raise RuntimeError(f"local_cluster.sh start failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
        state = dict(line.split("=", 1) for line in (self.state_dir / "state.env").read_text().splitlines() if "=" in line)
        self.gcs_address = state["HEAD_ADDRESS"]
        self.dashboard_url = state["DASHBOARD_URL"]
        self.start_output = done.stdout
        return self

    def node_pids(self) -> list[int]:
        """The `ray start --block` PID of each node, head first (the script's nodes.tsv)."""
        rows = (self.state_dir / "nodes.tsv").read_text().splitlines()
        return [int(row.split("\t")[1]) for row in rows if row]

    def node_processes(self) -> list[list[str]]:
        """The command lines of each node's processes (its process group: `ray start --block`
        runs in its own session), head first."""
        out = []
        for pid in self.node_pids():
            found = subprocess.run(["pgrep", "-a", "-g", str(pid)], capture_output=True, text=True)
            out.append(found.stdout.splitlines())
        return out

    def __exit__(self, exc_type: object, *exc: object) -> None:
        self._script("stop", timeout=120)
        if exc_type is None:
            shutil.rmtree(self.state_dir, ignore_errors=True)  # kept for a post-mortem otherwise



def files_containing(root: Path, needle: bytes) -> list[str]:
    """Regular files under root whose bytes contain needle (e.g. a secret in Ray's logs)."""
    hits = []
    for path in root.rglob("*"):
        if path.is_file() and not path.is_symlink():
            with contextlib.suppress(OSError):
                if needle in path.read_bytes():
                    hits.append(str(path))
    return hits
