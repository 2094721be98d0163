"""A node's preflight, run before `ray start` on every cluster node (cluster/aws.yaml's start
commands, the KubeRay containers' args): it refuses to let a node join when the node could not
do its share of a run, naming the missing feature, instead of letting the verifiers fail later.

    python -m axiom_ray.node_check [--min-isolation landlock] [--require-token-auth]

- `--min-isolation LEVEL` (default `landlock`, the default of `verifier.min_isolation`): the
  kernel feature the sandbox needs for that level. Landlock needs Linux >= 5.13 with the LSM
  enabled at boot, and a container seccomp profile that allows its system calls.
- `--require-token-auth`: RAY_AUTH_MODE must be `token`. KubeRay >= 1.5.1 sets it from
  `spec.authOptions`; an older operator drops that field without a word, and this check turns
  the silent loss of authentication into a pod that does not start.

Exit 0 with one line per check when the node is fit; exit 1 with one line per missing feature.
Imports only the standard library and axiom_ray.sandbox.kernel (no Ray, no torch).
"""

from __future__ import annotations

import argparse
import ctypes
import errno
import os
import re
import socket
import sys
from collections.abc import Mapping

LEVELS = ("rlimits", "seccomp", "landlock", "namespaces")
LANDLOCK_MIN_KERNEL = (5, 13)


def kernel_version(release: str) -> tuple[int, int]:
    """(major, minor) of a `uname -r` string such as `5.4.0-1103-aws` (0, 0 if unreadable)."""
    m = re.match(r"(\d+)\.(\d+)", release)
    return (int(m.group(1)), int(m.group(2))) if m else (0, 0)


def landlock_problem(release: str, abi: int, err: int) -> str | None:
    """Why Landlock is unusable on this node, in one line; None when `abi` >= 1.

    `err` is the errno of the failed version query: ENOSYS from a kernel (or a seccomp profile)
    that does not know the call, EOPNOTSUPP from a kernel built with Landlock but not booted
    with it."""
    if abi >= 1:
        return None
    if kernel_version(release) < LANDLOCK_MIN_KERNEL:
        return (
            f"Landlock: kernel {release} is older than 5.13 and has none; use a node image "
            "with a newer kernel (cluster/README.md, 'Node requirements')"
        )
    if err == errno.EOPNOTSUPP:
        return (
            f"Landlock: kernel {release} has it but it is disabled at boot; add landlock to "
            "the kernel's lsm= parameter"
        )
    return (
        f"Landlock: kernel {release} refuses landlock_create_ruleset ({os.strerror(err or errno.ENOSYS)}):"
        " built without CONFIG_SECURITY_LANDLOCK, or the container's seccomp profile blocks it"
    )


def probe_landlock() -> tuple[int, int]:
    """(ABI version, errno) from the kernel: (0, errno) when unavailable."""
    from axiom_ray.sandbox import kernel

    ctypes.set_errno(0)
    abi = kernel.landlock_abi()
    return abi, (0 if abi else ctypes.get_errno())


def auth_problem(environ: Mapping[str, str]) -> str | None:
    mode = environ.get("RAY_AUTH_MODE", "")
    if mode == "token":
        return None
    return (
        f"token auth: RAY_AUTH_MODE is {mode!r}, not 'token'; on KubeRay the operator must be "
        ">= 1.5.1 (an older one drops spec.authOptions)"
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m axiom_ray.node_check",
        description="Refuse to start a Ray node that lacks what axiom-ray needs (kernel "
        "features for the verifier sandbox, token auth).",
    )
    parser.add_argument(
        "--min-isolation",
        choices=LEVELS,
        default="landlock",
        help="the sandbox level verifiers on this node need (default: landlock)",
    )
    parser.add_argument(
        "--require-token-auth",
        action="store_true",
        help="fail unless RAY_AUTH_MODE=token (KubeRay >= 1.5.1 sets it)",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    node = socket.gethostname()
    problems: list[str] = []
    if LEVELS.index(args.min_isolation) >= LEVELS.index("landlock"):
        abi, err = probe_landlock()
        problem = landlock_problem(os.uname().release, abi, err)
        if problem:
            problems.append(problem)
        else:
            print(f"[node_check] {node}: Landlock ABI {abi} (kernel {os.uname().release})")
    if args.require_token_auth:
        problem = auth_problem(os.environ)
        if problem:
            problems.append(problem)
        else:
            print(f"[node_check] {node}: token auth on")
    for problem in problems:
        print(f"[node_check] {node}: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
