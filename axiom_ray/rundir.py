"""The run directory and its manifest (docs/design.md, "Run directory"): config, per-iteration
phase status, adapter paths and metrics. Only the driver writes it; every write is atomic.

The manifest is JSON; `Manifest`, `IterationRecord` and `PhaseRecord` are typed views over it
(reading and writing the same dict), so the file's content is what it always was and code never
spells its keys outside this module.
"""

from __future__ import annotations

import datetime as dt
import sys
import uuid
from typing import Any

from axiom_ray.config import RunConfig, config_from_dict, diff_identity
from axiom_ray.storage import Storage, resolve

MANIFEST = "manifest.json"
DONE, RUNNING, FAILED = "done", "running", "failed"
# The phases of an iteration, in the order they run (iteration 0 has no train or redeploy).
PHASES = ("train", "redeploy", "samples", "eval")


class RunDirError(ValueError):
    """The run directory cannot be used as asked (another configuration, unreadable manifest)."""


def now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def iter_dir(iteration: int) -> str:
    return f"iter_{iteration}"


def phases_of(k: int, with_eval: bool = True) -> tuple[str, ...]:
    """Iteration 0 samples (and evaluates) the base model; later ones train and redeploy first."""
    names = PHASES if k > 0 else PHASES[PHASES.index("samples"):]
    return names if with_eval else tuple(n for n in names if n != "eval")


class PhaseRecord:
    """One phase's entry, `iterations.K.phases.NAME`: status, times and the phase's metrics."""

    def __init__(self, data: dict[str, Any]) -> None:
        self.data = data

    @property
    def status(self) -> str | None:
        return self.data.get("status")

    @property
    def is_done(self) -> bool:
        return self.status == DONE

    @property
    def finished_at(self) -> str | None:
        return self.data.get("finished_at")

    @property
    def seconds(self) -> float | None:
        return self.data.get("seconds")

    @property
    def metrics(self) -> dict[str, Any]:
        """What the phase returned: a pass's figures (evaluation.PassSummary.phase_metrics plus
        `paired`, `curriculum`, `greedy`), training's figures, or redeploy's."""
        return self.data.get("metrics") or {}

    def paired(self, part: str | None = None) -> dict[str, dict[str, Any]]:
        """The paired differences the loop recorded ({"vs_base": ..., "vs_previous": ...}, each
        evaluation.PairedDifference.to_dict()); `part` names a nested pass, e.g. "greedy"."""
        metrics = (self.metrics.get(part) or {}) if part else self.metrics
        return metrics.get("paired") or {}


class IterationRecord:
    """`iterations.K`: model k's adapter, its phases and, with the curriculum, its problems."""

    def __init__(self, k: int, data: dict[str, Any]) -> None:
        self.k = k
        self.data = data

    @property
    def adapter(self) -> str | None:
        return self.data.get("adapter")

    @adapter.setter
    def adapter(self, rel: str | None) -> None:
        self.data["adapter"] = rel

    def phase(self, name: str) -> PhaseRecord:
        """The phase's record (an empty one, not stored, when it never started)."""
        return PhaseRecord((self.data.get("phases") or {}).get(name) or {})

    def mark(self, name: str, status: str, **fields: Any) -> None:
        self.data.setdefault("phases", {}).setdefault(name, {}).update(status=status, **fields)

    @property
    def curriculum(self) -> dict[str, Any] | None:
        """The curriculum's choice for this iteration's samples (curriculum.Selection.to_dict())."""
        value = self.data.get("curriculum")
        return value if isinstance(value, dict) else None

    @curriculum.setter
    def curriculum(self, selection: dict[str, Any]) -> None:
        self.data["curriculum"] = selection


class Manifest:
    """The whole manifest; `to_dict()` is the JSON written to `manifest.json`."""

    def __init__(self, data: dict[str, Any]) -> None:
        self.data = data

    @classmethod
    def new(cls, cfg: RunConfig) -> Manifest:
        return cls({
            "run_id": f"{cfg.experiment}-{uuid.uuid4().hex[:8]}",
            "experiment": cfg.experiment,
            "created_at": now(),
            "argv": sys.argv,
            "model": cfg.model,
            "config": cfg.to_dict(),
            "problems": {},
            "iterations": {},
        })

    def to_dict(self) -> dict[str, Any]:
        return self.data

    @property
    def run_id(self) -> str:
        return str(self.data.get("run_id") or "")  # "" only in a hand-made manifest

    @property
    def experiment(self) -> str | None:
        return self.data.get("experiment")

    @property
    def created_at(self) -> str | None:
        return self.data.get("created_at")

    @property
    def argv(self) -> list[str]:
        return [str(a) for a in self.data.get("argv") or []]

    @property
    def model(self) -> str | None:
        return self.data.get("model")

    @property
    def config(self) -> dict[str, Any]:
        """The run's configuration as recorded (RunConfig.to_dict(); see RunDir.config)."""
        return self.data.get("config") or {}

    def setting(self, dotted: str) -> Any:
        """One recorded config value ("generation.samples"), None when absent (a manifest of an
        older version, or a partial one)."""
        node: Any = self.config
        for part in dotted.split("."):
            if not isinstance(node, dict) or part not in node:
                return None
            node = node[part]
        return node

    def set_config(self, cfg: RunConfig) -> None:
        self.data["config"] = cfg.to_dict()

    def add_resume(self) -> None:
        self.data.setdefault("resumed_at", []).append(now())

    def tracker_run(self, backend: str) -> dict[str, Any]:
        """What a tracker recorded to continue its run on a resume (`tracking.BACKEND`: its run id
        and where it keeps it), {} when it never ran on this run directory."""
        value = (self.data.get("tracking") or {}).get(backend)
        return value if isinstance(value, dict) else {}

    def set_tracker_run(self, backend: str, info: dict[str, Any]) -> None:
        self.data.setdefault("tracking", {})[backend] = info

    def problems(self, split: str) -> list[str]:
        """The problem ids of a split ("train" or "eval") the run resolved."""
        return [str(p) for p in (self.data.get("problems") or {}).get(split) or []]

    def set_problems(self, train: list[str], held_out: list[str]) -> None:
        self.data["problems"] = {"train": train, "eval": held_out}

    def iteration(self, k: int) -> IterationRecord:
        """Model k's record, created (empty) when it has none yet."""
        data = self.data.setdefault("iterations", {}).setdefault(str(k), {"adapter": None, "phases": {}})
        return IterationRecord(k, data)

    def iterations(self) -> list[IterationRecord]:
        """The recorded iterations, in order."""
        raw = self.data.get("iterations") or {}
        return [IterationRecord(int(key), raw[key] or {}) for key in sorted((k for k in raw if str(k).isdigit()), key=int)]


class RunDir:
    """A run directory: its storage and its manifest, the only way either is opened or saved."""

    def __init__(self, storage: Storage, manifest: Manifest) -> None:
        self.storage = storage
        self.manifest = manifest

    # --- opening -------------------------------------------------------------------------
    @classmethod
    def open(cls, uri: str) -> RunDir:
        storage = Storage(uri)
        if not storage.exists(MANIFEST) or storage.is_dir(MANIFEST):
            raise RunDirError(f"{storage.root}: no {MANIFEST} here (not a run directory)")
        try:
            data = storage.read_json(MANIFEST)
        except (ValueError, UnicodeDecodeError) as e:
            raise RunDirError(f"{storage.uri(MANIFEST)}: not valid JSON ({e})") from None
        if not isinstance(data, dict):
            raise RunDirError(f"{storage.uri(MANIFEST)}: expected a JSON object")
        return cls(storage, Manifest(data))

    @classmethod
    def open_or_create(cls, uri: str, cfg: RunConfig, fork: bool = False) -> RunDir:
        """Resume the run at `uri` if its configuration matches `cfg`; refuse one made with a
        different configuration (naming the keys) unless `fork`, which keeps the old one."""
        storage = Storage(uri)
        if storage.exists(MANIFEST):
            run = cls.open(uri)
            differing = diff_identity(run.config, cfg)
            if differing and not fork:
                raise RunDirError(
                    f"{storage.root} was made with another configuration ({'; '.join(differing)}); "
                    "use another --storage, or --fork to start a new run from it")
            if not differing:
                run.manifest.set_config(cfg)  # non-identity knobs (workers...) may change
                run.manifest.add_resume()
                run.save()
                return run
            storage = Storage(_fork_uri(storage))
        run = cls(storage, Manifest.new(cfg))
        storage.makedirs("")
        run.save()
        return run

    # --- state ---------------------------------------------------------------------------
    @property
    def run_id(self) -> str:
        return self.manifest.run_id

    @property
    def config(self) -> RunConfig:
        return config_from_dict(self.manifest.config)

    def save(self) -> None:
        self.storage.write_json_atomic(MANIFEST, self.manifest.to_dict())

    def iteration(self, k: int) -> IterationRecord:
        return self.manifest.iteration(k)

    def phase(self, k: int, name: str) -> PhaseRecord:
        return self.iteration(k).phase(name)

    def is_done(self, k: int, name: str) -> bool:
        return self.phase(k, name).is_done

    def mark(self, k: int, name: str, status: str, **fields: Any) -> None:
        self.iteration(k).mark(name, status, **fields)
        self.save()

    def set_adapter(self, k: int, rel: str | None) -> None:
        self.iteration(k).adapter = rel
        self.save()

    def adapter(self, k: int) -> str | None:
        return self.iteration(k).adapter

    def uri(self, *parts: str) -> str:
        return self.storage.uri(*parts)

    def resolve(self, path: str) -> str:
        """A manifest path: relative to the run directory, or absolute / a URI as given."""
        return resolve(self.storage.root, path)


def _fork_uri(storage: Storage) -> str:
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    return f"{storage.root}-fork-{stamp}"
