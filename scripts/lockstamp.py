"""What a lock in requirements/ was made from, so a test can tell when pyproject.toml moved on.

    python3 scripts/lockstamp.py inputs cpu dev      # the requirement lines the lock resolves
    python3 scripts/lockstamp.py stamp cpu dev       # the stamp line scripts/lock.sh appends

The inputs are pyproject.toml's dependencies, the named extras and the build backend's
requirements (the lock installs with --no-build-isolation, so setuptools is locked too). The
stamp is a sha256 over exactly those lines: any edit to them changes it. Standard library only:
scripts/lock.sh runs it with the system python before any venv exists.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

ROOT = Path(__file__).resolve().parent.parent
STAMP_PREFIX = "# pyproject-stamp:"


def lock_inputs(extras: list[str], pyproject: Path = ROOT / "pyproject.toml") -> list[str]:
    """The requirements a lock with these extras resolves, in pyproject's order."""
    data = tomllib.loads(pyproject.read_text())
    optional = data["project"].get("optional-dependencies", {})
    missing = [e for e in extras if e not in optional]
    if missing:
        raise SystemExit(f"pyproject.toml has no extra {', '.join(missing)}")
    lines = list(data["project"]["dependencies"])
    for extra in extras:
        lines += optional[extra]
    return lines + list(data["build-system"]["requires"])


def stamp(extras: list[str], pyproject: Path = ROOT / "pyproject.toml") -> str:
    """`# pyproject-stamp: extras=a,b sha256=...` for a lock of these extras."""
    digest = hashlib.sha256(
        json.dumps({"extras": extras, "inputs": lock_inputs(extras, pyproject)}).encode()
    ).hexdigest()
    return f"{STAMP_PREFIX} extras={','.join(extras)} sha256={digest}"


def main(argv: list[str]) -> int:
    if len(argv) < 1 or argv[0] not in ("inputs", "stamp"):
        print("usage: lockstamp.py inputs|stamp EXTRA...", file=sys.stderr)
        return 2
    extras = argv[1:]
    print("\n".join(lock_inputs(extras)) if argv[0] == "inputs" else stamp(extras))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
