"""The run directory's manifest (DESIGN.md contract 5): config, per-iteration phase status,
adapter paths and metrics. Only the driver writes it; every write is atomic."""

from __future__ import annotations

import datetime as dt
import sys
import uuid
from typing import Any

from axiom_ray.config import RunConfig, config_from_dict, diff_identity
from axiom_ray.storage import Storage

MANIFEST = "manifest.json"
DONE, RUNNING, FAILED = "done", "running", "failed"


class RunDirError(ValueError):
    """The run directory cannot be used as asked (another configuration, unreadable manifest)."""


def now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def iter_dir(iteration: int) -> str:
    return f"iter_{iteration}"


class RunDir:
    def __init__(self, storage: Storage, manifest: dict[str, Any]) -> None:
        self.storage = storage
        self.manifest = manifest

    # --- opening -------------------------------------------------------------------------
    @classmethod
    def open(cls, uri: str) -> RunDir:
        storage = Storage(uri)
        if not storage.exists(MANIFEST):
            raise RunDirError(f"{storage.root}: no {MANIFEST} here (not a run directory)")
        try:
            manifest = storage.read_json(MANIFEST)
        except ValueError as e:
            raise RunDirError(f"{storage.uri(MANIFEST)}: unreadable ({e})") from None
        return cls(storage, manifest)

    @classmethod
    def open_or_create(cls, uri: str, cfg: RunConfig, fork: bool = False) -> RunDir:
        """Resume the run at `uri` if its configuration matches `cfg`; refuse one made with a
        different configuration (naming the keys) unless `fork`, which keeps the old one."""
        storage = Storage(uri)
        if storage.exists(MANIFEST):
            run = cls.open(uri)
            differing = diff_identity(config_from_dict(run.manifest["config"]), cfg)
            if differing and not fork:
                raise RunDirError(
                    f"{storage.root} was made with another configuration ({'; '.join(differing)}); "
                    "use another --storage, or --fork to start a new run from it")
            if not differing:
                run.manifest["config"] = cfg.to_dict()  # non-identity knobs (workers...) may change
                run.manifest.setdefault("resumed_at", []).append(now())
                run.save()
                return run
            storage = Storage(_fork_uri(storage))
        manifest = {
            "run_id": f"{cfg.experiment}-{uuid.uuid4().hex[:8]}",
            "experiment": cfg.experiment,
            "created_at": now(),
            "argv": sys.argv,
            "model": cfg.model,
            "config": cfg.to_dict(),
            "problems": {},
            "iterations": {},
        }
        run = cls(storage, manifest)
        storage.makedirs("")
        run.save()
        return run

    # --- state ---------------------------------------------------------------------------
    @property
    def run_id(self) -> str:
        return self.manifest["run_id"]

    @property
    def config(self) -> RunConfig:
        return config_from_dict(self.manifest["config"])

    def save(self) -> None:
        self.storage.write_json_atomic(MANIFEST, self.manifest)

    def iteration(self, k: int) -> dict[str, Any]:
        return self.manifest["iterations"].setdefault(str(k), {"adapter": None, "phases": {}})

    def phase(self, k: int, name: str) -> dict[str, Any]:
        return self.iteration(k)["phases"].get(name, {})

    def is_done(self, k: int, name: str) -> bool:
        return self.phase(k, name).get("status") == DONE

    def mark(self, k: int, name: str, status: str, **fields: Any) -> None:
        entry = self.iteration(k)["phases"].setdefault(name, {})
        entry.update(status=status, **fields)
        self.save()

    def set_adapter(self, k: int, rel: str | None) -> None:
        self.iteration(k)["adapter"] = rel
        self.save()

    def adapter(self, k: int) -> str | None:
        return self.iteration(k).get("adapter")

    def uri(self, *parts: str) -> str:
        return self.storage.uri(*parts)

    def resolve(self, path: str) -> str:
        """A manifest path: relative to the run directory, or absolute / a URI as given."""
        return path if "://" in path or path.startswith("/") else self.uri(path)


def _fork_uri(storage: Storage) -> str:
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    return f"{storage.root}-fork-{stamp}"
