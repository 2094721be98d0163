"""Test double and driver for the resume and fault tests (tests/test_resume.py, test_faults.py).

TEST DOUBLE, used only by those tests: `ScriptedGenerator` is the real `GeneratorActor` on the
tiny random model (tests/tiny_model.py) with three changes, so that a run of a few seconds has
something to train on and phases long enough to be killed in:
- candidates with index < `solved` of the problems in `solutions` are replaced by a correct
  solution (a random model never passes, and the loop skips training without verified samples);
  the verifier still judges them for real;
- `generate`, `generate_stream` (what a pass calls) and `load_adapter` sleep first
  (`generate_delay_s`, `adapter_delay_s`), so the
  samples, eval and redeploy phases last long enough to be caught `running` and killed;
- nothing else: the engine, seeds, adapters and rows are the production code paths.
Real engines are tested in test_generation_*.py and test_loop.py.

As a script this is the driver the resume test kills: it connects to the test session's cluster
(RAY_ADDRESS), swaps `axiom_ray.loop.start_generators` for the scripted one and runs the loop:

    RAY_ADDRESS=... python tests/fault_driver.py --model DIR --storage DIR [--set key=value ...]

`launch`, `kill_when` and `wait_done` run that script for a test (test_resume, test_s3).
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from axiom_ray.generation.actor import GeneratorActor
from axiom_ray.generation.engines import Completion

SOLUTIONS = {
    "two_sum": (
        "def two_sum(nums, target):\n    seen = {}\n    for i, x in enumerate(nums):\n"
        "        if target - x in seen:\n            return [seen[target - x], i]\n        seen[x] = i\n"
    ),
    "reverse_string": "def reverse_string(s):\n    return s[::-1]\n",
    "is_palindrome": (
        "def is_palindrome(s):\n    t = [c.lower() for c in s if c.isalnum()]\n    return t == t[::-1]\n"
    ),
    "fizzbuzz": (
        "def fizzbuzz(n):\n    out = []\n    for i in range(1, n + 1):\n"
        "        out.append('FizzBuzz' if i % 15 == 0 else 'Fizz' if i % 3 == 0 else"
        " 'Buzz' if i % 5 == 0 else str(i))\n    return out\n"
    ),
}
DONE_MARKER = "FAULT_DRIVER_DONE"


def slow_solutions(seconds: float) -> dict[str, str]:
    """SOLUTIONS that sleep in every call: still correct, but each verdict takes a while (the
    hidden tests call the function several times), so a verifier can be killed mid-batch."""
    out = {}
    for pid, code in SOLUTIONS.items():
        head, body = code.split("\n", 1)
        out[pid] = f"import time\n{head}\n    time.sleep({seconds})\n{body}"
    return out


def write_verified_samples(run: Any, problem_id: str, rows: int) -> None:
    """Model 0's samples as if it had solved `problem_id` `rows` times (different code each
    time, one AST: train with data.dedupe=false), marked done, so that iteration 1 trains."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from axiom_ray.samples import code_hash, sample_id, sample_schema

    def row(i: int) -> dict[str, Any]:
        code = SOLUTIONS[problem_id] + f"# variant {i}\n"
        return {
            "run_id": run.run_id, "iteration": 0, "problem_id": problem_id,
            "sample_id": sample_id(run.run_id, 0, problem_id, "samples", 0, i),
            "prompt": f"<|im_start|>user\nSolve {problem_id} #{i}<|im_end|>\n<|im_start|>assistant\n",
            "completion": f"```python\n{code}```", "code": code, "passed": True, "passed_tests": 6,
            "total_tests": 6, "status": "passed", "reward": 1.0, "duration_ms": 1.0, "model": "tiny",
            "adapter": None, "temperature": 0.7, "seed": 0, "num_tokens": 40,
            "code_hash": code_hash(code), "created_at": "2026-01-01T00:00:00+00:00",
            "attempt": 0, "index": i, "finish_reason": "stop", "isolation": "test", "verdict_detail": "",
        }

    run.storage.makedirs("iter_0/samples")
    table = pa.Table.from_pylist([row(i) for i in range(rows)], schema=sample_schema())
    pq.write_table(table, f"{run.uri('iter_0/samples')}/part-0.parquet")
    run.mark(0, "samples", "done", seconds=0.0, metrics={})


class ScriptedGenerator(GeneratorActor):
    """GeneratorActor with scripted correct answers and slowed calls (see the module doc)."""

    def __init__(self, *args: Any, solutions: dict[str, str] | None = None, solved: int = 1,
                 generate_delay_s: float = 0.0, adapter_delay_s: float = 0.0, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.solutions = solutions if solutions is not None else SOLUTIONS
        self.solved = solved
        self.generate_delay_s = generate_delay_s
        self.adapter_delay_s = adapter_delay_s

    def generate(self, requests: list[dict[str, Any]], *args: Any, **kwargs: Any) -> list[dict[str, Any]]:
        time.sleep(self.generate_delay_s)
        return super().generate(requests, *args, **kwargs)

    def generate_stream(self, requests: list[dict[str, Any]], *args: Any, **kwargs: Any) -> Iterator[list[dict[str, Any]]]:
        time.sleep(self.generate_delay_s)
        yield from super().generate_stream(requests, *args, **kwargs)

    def load_adapter(self, path_or_uri: str, iteration: int) -> float:
        time.sleep(self.adapter_delay_s)
        return super().load_adapter(path_or_uri, iteration)

    def _row(self, request: dict[str, Any], index: int, completion: Any) -> dict[str, Any]:
        code = self.solutions.get(request["problem_id"])
        if code is not None and index < self.solved:
            completion = Completion(text=f"```python\n{code}```", num_tokens=completion.num_tokens,
                                    finish_reason="stop")
        return super()._row(request, index, completion)


def start_scripted_generators(cfg: Any, plan: Any, run_id: str, **script: Any) -> Any:
    """`axiom_ray.loop.start_generators` with ScriptedGenerator: the same Ray options
    (restarts included) and constructor arguments, plus the script; the GeneratorPool."""
    from axiom_ray.generation.pool import start_generators

    return start_generators(cfg, plan, run_id, actor_class=ScriptedGenerator, **script)


def use_scripted_generators(**script: Any) -> None:
    """Make the loop start scripted generators (in this process)."""
    import axiom_ray.loop

    axiom_ray.loop.start_generators = functools.partial(start_scripted_generators, **script)


def _pickle_by_value() -> None:
    """Ray workers cannot import this tests/ module by name: ship its classes by value."""
    if __name__ != "__main__":
        from ray import cloudpickle

        cloudpickle.register_pickle_by_value(sys.modules[__name__])


_pickle_by_value()


def resume_config(model: str, storage: str, *extra: str) -> Any:
    """The resume test's run: iteration 0 and 1 (train, redeploy, samples, eval) on three
    problems, one prompt per Ray Data block so that rows reach Parquet while later prompts are
    still being sampled (a kill can land mid-write)."""
    from axiom_ray.config import build_config

    return build_config(overrides=[
        f"model={model}", f"storage={storage}", "iterations=1", "generation.engine=transformers",
        "problems=two_sum,fizzbuzz,reverse_string", "generation.samples=2", "generation.max_tokens=8",
        "generation.batch_size=1", "evaluation.problems=is_palindrome", "evaluation.samples=2",
        "verifier.workers=1", "verifier.batch_size=2", "training.epochs=3", "training.grad_accum=1",
        *extra])


# --- running this script from a test ------------------------------------------------------------


def launch(args: list[str], env: dict[str, str], log_path: Path) -> subprocess.Popen:
    """This script as a driver process with `args`, its output to `log_path`. Its own session:
    a SIGKILL goes to the driver's process group and nothing else."""
    here = Path(__file__)
    return subprocess.Popen([sys.executable, str(here), *args], cwd=here.parent.parent, env=env,
                            stdout=log_path.open("w"), stderr=subprocess.STDOUT, start_new_session=True)


def tail(path: Path, chars: int = 4000) -> str:
    return path.read_text(errors="replace")[-chars:]


def kill_when(proc: subprocess.Popen, condition: Callable[[], bool], what: str, timeout_s: float,
              log_path: Path, poll_s: float = 0.05) -> None:
    """SIGKILL the driver's process group once `condition()` holds; fail, with the driver's log,
    when it exits first or `what` is not reached within `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    try:
        while not condition():
            assert proc.poll() is None, f"driver exited ({proc.returncode}) before {what}:\n{tail(log_path)}"
            assert time.monotonic() < deadline, f"{what} never reached:\n{tail(log_path)}"
            time.sleep(poll_s)
    finally:
        with contextlib.suppress(ProcessLookupError):  # it may have exited on its own (a failure)
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def wait_done(proc: subprocess.Popen, timeout_s: float, log_path: Path) -> None:
    """Wait for the driver to finish its run; fail, with its log, unless it ended well in time."""
    try:
        proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        raise AssertionError(f"the driver did not finish:\n{tail(log_path)}") from None
    assert proc.returncode == 0 and DONE_MARKER in log_path.read_text(), tail(log_path)


def main() -> int:
    parser = argparse.ArgumentParser(description="run the loop with scripted generators")
    parser.add_argument("--model", required=True)
    parser.add_argument("--storage", required=True)
    parser.add_argument("--generate-delay", type=float, default=0.0)
    parser.add_argument("--adapter-delay", type=float, default=0.0)
    parser.add_argument("--set", action="append", default=[], dest="overrides")
    args = parser.parse_args()

    import logging

    import ray

    from axiom_ray.loop import run_iterations

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    ray.init(address=os.environ["RAY_ADDRESS"], log_to_driver=False)
    use_scripted_generators(generate_delay_s=args.generate_delay, adapter_delay_s=args.adapter_delay)
    run_iterations(resume_config(args.model, args.storage, *args.overrides))
    print(DONE_MARKER, flush=True)
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    sys.exit(main())
