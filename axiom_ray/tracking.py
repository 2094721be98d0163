"""Experiment trackers: a run's config, figures and artifacts in MLflow, W&B or TensorBoard.

`tracking.backend` names the trackers (several at once). One tracker run per axiom-ray run, with
the iteration as the step of every per-iteration figure; a training loss is logged per optimizer
step, one curve per iteration (each adapter trains from the base). `RunTracker` is what the loop
calls, at the points where it already records dashboard metrics (metrics.py): a pass's
`evaluation.PassSummary`, a training result, a phase's wall time, an adapter, the report.

Offline by default, into the run directory (`tracking.dir`, default RUN/tracking): MLflow's
local file store (RUN/tracking/mlruns, or any `tracking.uri`), W&B's offline mode (unless
WANDB_MODE says otherwise; `wandb sync` uploads it later), TensorBoard event files
(RUN/tracking/tensorboard). A resumed run continues the same tracker run: the manifest keeps
each tracker's run id (`Manifest.tracker_run`); W&B's id is derived from the axiom-ray run id.

The driver owns the tracker run (one writer; Ray Train's per-worker logger callbacks would start
one per training job, not one per axiom-ray run). Tracker libraries are imported lazily, and a
tracker that fails is warned about once and dropped: tracking never ends a run.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import re
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from axiom_ray.config import TRACKERS, ConfigError, RunConfig, TrackingConfig
from axiom_ray.storage import is_local, is_uri, local_path

if TYPE_CHECKING:
    from axiom_ray.evaluation import PassSummary
    from axiom_ray.rundir import RunDir
    from axiom_ray.training.job import TrainResult

log = logging.getLogger(__name__)

# The x axes of the figures: per-iteration figures, the loss per optimizer step, the
# validation loss per epoch.
ITERATION, TRAIN_STEP, EPOCH = "iteration", "train_step", "epoch"
# The module each tracker's pip package (config.TRACKERS) provides.
MODULES = {"mlflow": "mlflow", "wandb": "wandb", "tensorboard": "tensorboard"}
BATCH = 500  # metrics per MLflow log_batch call (its limit is 1000)


class Tracker(Protocol):
    """One tracker's run. Metric names use "/" to group (`eval/pass_at_1`)."""

    name: str

    def log_params(self, params: Mapping[str, Any]) -> None: ...

    def log_metrics(self, metrics: Mapping[str, float], step: int, axis: str) -> None: ...

    def log_files(self, folder: str, paths: Iterable[str]) -> None: ...

    def log_reference(self, name: str, uri: str) -> None: ...

    def close(self, finished: bool) -> None: ...


def check_backends(cfg: TrackingConfig) -> None:
    """Fail before any cluster work when a configured tracker's library is not installed."""
    for backend in cfg.backend:
        if importlib.util.find_spec(MODULES[backend]) is None:
            raise ConfigError(
                f"tracking.backend: {backend} needs its library: pip install {TRACKERS[backend]} "
                "(or pip install 'axiom-ray[tracking]')"
            )


def tracking_dir(cfg: TrackingConfig, run: RunDir) -> str:
    """Where tracker files go: `tracking.dir`, else RUN/tracking for a local run directory, else
    ./tracking/<run id> here (tracker files are written by this process, not through pyarrow)."""
    if cfg.dir:
        return local_path(cfg.dir)
    root = run.storage.root
    return (
        f"{local_path(root)}/tracking"
        if is_local(root)
        else os.path.abspath(f"tracking/{run.run_id}")
    )


# --- the backends -------------------------------------------------------------------------------


class MlflowTracker:
    """An MLflow run through `MlflowClient` (no global active run: the loop may live in a
    process that tracks other things)."""

    name = "mlflow"

    def __init__(self, uri: str, experiment: str, run: RunDir) -> None:
        if is_local(uri):
            # MLflow 3 refuses its file store unless asked: it is the offline store the issue
            # asks for, read by `mlflow ui --backend-store-uri` and MlflowClient alike.
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
            uri = Path(local_path(uri)).as_uri()
        from mlflow.tracking import MlflowClient

        self.uri = uri
        self.client = MlflowClient(tracking_uri=uri)
        exp = self.client.get_experiment_by_name(experiment)
        exp_id = exp.experiment_id if exp else self.client.create_experiment(experiment)
        self.run_id = self._existing(run, exp_id)
        self.resumed = self.run_id is not None
        if self.run_id is None:
            created = self.client.create_run(
                exp_id,
                run_name=run.run_id,
                tags={"axiom.run_id": run.run_id, "axiom.run_dir": run.storage.root},
            )
            self.run_id = created.info.run_id
        else:
            self.client.update_run(self.run_id, status="RUNNING")
        run.manifest.set_tracker_run(self.name, {"run_id": self.run_id, "uri": uri})

    def _existing(self, run: RunDir, exp_id: str) -> str | None:
        """The tracker run of an earlier start of this axiom-ray run: the manifest's, else the
        one tagged with its run id (a manifest saved before the tracker's id was)."""
        recorded = run.manifest.tracker_run(self.name)
        if recorded.get("uri") == self.uri and recorded.get("run_id"):
            try:
                if self.client.get_run(recorded["run_id"]).info.lifecycle_stage == "active":
                    return str(recorded["run_id"])
            except Exception:  # deleted or another store: start a fresh one below
                pass
        found = self.client.search_runs(
            [exp_id], filter_string=f"tags.`axiom.run_id` = '{run.run_id}'", max_results=1
        )
        return found[0].info.run_id if found else None

    def log_params(self, params: Mapping[str, Any]) -> None:
        from mlflow.entities import Param

        # MLflow params are immutable: a resume logs only keys the run lacks (the manifest and
        # config.json below hold the config in force).
        have = self.client.get_run(self.run_id).data.params
        new = [Param(k, str(v)[:6000]) for k, v in params.items() if k not in have]
        for i in range(0, len(new), 100):
            self.client.log_batch(self.run_id, params=new[i : i + 100])
        self.client.log_dict(self.run_id, dict(params), "config.json")

    def log_metrics(self, metrics: Mapping[str, float], step: int, axis: str) -> None:
        from mlflow.entities import Metric

        stamp = int(time.time() * 1000)
        batch = [Metric(key, float(v), stamp, step) for key, v in metrics.items()]
        for i in range(0, len(batch), BATCH):
            self.client.log_batch(self.run_id, metrics=batch[i : i + BATCH])

    def log_files(self, folder: str, paths: Iterable[str]) -> None:
        for path in paths:
            self.client.log_artifact(self.run_id, local_path(path), folder)

    def log_reference(self, name: str, uri: str) -> None:
        self.client.set_tag(self.run_id, name, uri)

    def close(self, finished: bool) -> None:
        self.client.set_terminated(self.run_id, "FINISHED" if finished else "FAILED")


def wandb_id(run_id: str) -> str:
    """The W&B run id of an axiom-ray run (W&B allows letters, digits, '-' and '_')."""
    return re.sub(r"[^A-Za-z0-9_-]", "-", run_id)[:64]


class WandbTracker:
    """A W&B run, offline unless WANDB_MODE says otherwise. A resume starts another offline
    record of the same run id, which `wandb sync` appends to the same run."""

    name = "wandb"

    def __init__(self, folder: str, project: str, config: Mapping[str, Any], run: RunDir) -> None:
        import wandb

        self.wandb = wandb
        os.makedirs(folder, exist_ok=True)
        self.run = wandb.init(
            project=project,
            id=wandb_id(run.run_id),
            name=run.run_id,
            dir=folder,
            config=dict(config),
            resume="allow",
            mode=os.environ.get("WANDB_MODE") or "offline",
            reinit="create_new",
            settings=wandb.Settings(silent=True, console="off", x_disable_stats=True),
        )
        self.defined: set[str] = set()
        run.manifest.set_tracker_run(
            self.name, {"id": self.run.id, "dir": folder, "project": project}
        )

    def log_params(self, params: Mapping[str, Any]) -> None:
        self.run.config.update(dict(params), allow_val_change=True)

    def _define(self, keys: Iterable[str], axis: str) -> None:
        """Plot each key against its own axis (iteration, optimizer step, epoch), not W&B's
        global step, which counts log calls."""
        if axis not in self.defined:
            self.run.define_metric(axis)
            self.defined.add(axis)
        for key in keys:
            if key not in self.defined:
                self.run.define_metric(key, step_metric=axis)
                self.defined.add(key)

    def log_metrics(self, metrics: Mapping[str, float], step: int, axis: str) -> None:
        self._define(metrics, axis)
        self.run.log({axis: step, **metrics})

    def log_files(self, folder: str, paths: Iterable[str]) -> None:
        paths = [local_path(p) for p in paths]
        images = {
            f"{folder}/{Path(p).stem}": self.wandb.Image(p) for p in paths if p.endswith(".png")
        }
        if images:
            self.run.log(images)
        artifact = self.wandb.Artifact(
            f"{self.run.id}-{folder.replace('/', '-')}", type=folder.split("/")[0]
        )
        for p in paths:
            artifact.add_file(p, name=Path(p).name)
        self.run.log_artifact(artifact)

    def log_reference(self, name: str, uri: str) -> None:
        artifact = self.wandb.Artifact(
            f"{self.run.id}-{name.replace('/', '-')}", type=name.split("/")[0]
        )
        artifact.add_reference(uri if is_uri(uri) else Path(uri).as_uri(), checksum=False)
        self.run.log_artifact(artifact)
        self.run.summary[name] = uri

    def close(self, finished: bool) -> None:
        self.run.finish(exit_code=0 if finished else 1)


class TensorBoardTracker:
    """TensorBoard event files through tensorboard's own writer (no torch, no TensorFlow). A
    resume writes a new event file into the same folder, which TensorBoard shows as one run."""

    name = "tensorboard"

    def __init__(self, logdir: str, run: RunDir) -> None:
        from tensorboard.compat.proto import event_pb2, summary_pb2
        from tensorboard.summary.writer.event_file_writer import EventFileWriter

        self.pb, self.event_pb = summary_pb2, event_pb2
        self.logdir = logdir
        self.writer = EventFileWriter(logdir)
        run.manifest.set_tracker_run(self.name, {"logdir": logdir})

    def _write(self, value: Any, step: int) -> None:
        summary = self.pb.Summary(value=[value])
        self.writer.add_event(
            self.event_pb.Event(wall_time=time.time(), step=step, summary=summary)
        )

    def _text(self, tag: str, text: str, step: int = 0) -> None:
        from tensorboard.compat.proto import tensor_pb2, tensor_shape_pb2

        meta = self.pb.SummaryMetadata(
            plugin_data=self.pb.SummaryMetadata.PluginData(plugin_name="text")
        )
        tensor = tensor_pb2.TensorProto(
            dtype="DT_STRING",
            string_val=[text.encode()],
            tensor_shape=tensor_shape_pb2.TensorShapeProto(
                dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=1)]
            ),
        )
        self._write(self.pb.Summary.Value(tag=tag, metadata=meta, tensor=tensor), step)

    def log_params(self, params: Mapping[str, Any]) -> None:
        rows = "\n".join(f"| {k} | {v} |" for k, v in params.items())
        self._text("config", f"| key | value |\n|---|---|\n{rows}")

    def log_metrics(self, metrics: Mapping[str, float], step: int, axis: str) -> None:
        for key, v in metrics.items():
            self._write(self.pb.Summary.Value(tag=key, simple_value=float(v)), step)
        self.writer.flush()

    def log_files(self, folder: str, paths: Iterable[str]) -> None:
        for path in map(local_path, paths):
            tag = f"{folder}/{Path(path).stem}"
            if path.endswith(".png"):
                self._write(self.pb.Summary.Value(tag=tag, image=_png_image(self.pb, path)), 0)
            elif path.endswith(".md"):  # TensorBoard cannot show the HTML page; its Markdown twin
                self._text(tag, Path(path).read_text())
        self.writer.flush()

    def log_reference(self, name: str, uri: str) -> None:
        self._text(name, uri)
        self.writer.flush()

    def close(self, finished: bool) -> None:
        self.writer.close()


def _png_image(pb: Any, path: str) -> Any:
    """A PNG as TensorBoard's image summary: the encoded bytes as they are, with their size."""
    data = Path(path).read_bytes()
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")  # IHDR
    return pb.Summary.Image(height=height, width=width, colorspace=4, encoded_image_string=data)


# --- what the loop calls ------------------------------------------------------------------------


def flat_config(cfg: RunConfig) -> dict[str, Any]:
    """The config tree as dotted keys (`generation.samples`), lists for tuples."""
    out: dict[str, Any] = {}

    def walk(node: Mapping[str, Any], prefix: str) -> None:
        for key, value in node.items():
            if isinstance(value, Mapping):
                walk(value, f"{prefix}{key}.")
            else:
                out[f"{prefix}{key}"] = list(value) if isinstance(value, tuple) else value

    walk(cfg.to_dict(), "")
    return out


def pass_metrics(kind: str, summary: PassSummary, stats: Mapping[str, Any]) -> dict[str, float]:
    """A pass's figures under `<kind>/`: rates, pass@k with its 95% bootstrap interval (the
    report's seed), throughput, and the paired differences the loop computed."""
    from axiom_ray.report.details import BOOT_SEED  # the report's intervals, to the digit

    p = f"{kind}/"
    out: dict[str, float] = {
        p + "pass_rate": summary.pass_rate,
        p + "solve_rate": summary.solve_rate,
        p + "solved": summary.solved,
        p + "problems": summary.problems,
        p + "samples": summary.samples,
        p + "passed": summary.passed,
        p + "unique_solutions": summary.unique_solutions,
        p + "tokens": summary.tokens,
        p + "tokens_per_s": summary.tokens_per_s,
        p + "seconds": summary.seconds,
    }
    for k, value in sorted(summary.pass_at_k.items()):
        lo, hi = summary.pass_at_k_ci(k, seed=BOOT_SEED)
        out |= {f"{p}pass_at_{k}": value, f"{p}pass_at_{k}_ci_lo": lo, f"{p}pass_at_{k}_ci_hi": hi}
    for label, d in (stats.get("paired") or {}).items():
        if d.get("problems"):
            out |= {
                f"{p}{label}/diff": d["diff"],
                f"{p}{label}/ci_lo": d["ci"][0],
                f"{p}{label}/ci_hi": d["ci"][1],
            }
    return _finite(out)


def training_metrics(result: TrainResult) -> dict[str, float]:
    """A training job's per-iteration figures (its losses per step are logged on their own axis)."""
    keys = (
        "examples",
        "dropped",
        "steps",
        "tokens",
        "final_loss",
        "tokens_per_second",
        "train_seconds",
        "fit_seconds",
        "best_epoch",
    )
    return _finite({f"train/{key}": getattr(result, key) for key in keys})


def _finite(figures: Mapping[str, Any]) -> dict[str, float]:
    """Numbers only, without NaN or inf (no tracker plots them; an empty interval is NaN)."""
    out = {}
    for key, v in figures.items():
        if (
            isinstance(v, int | float)
            and not isinstance(v, bool)
            and v == v
            and abs(v) != float("inf")
        ):
            out[key] = float(v)
    return out


class RunTracker:
    """One axiom-ray run's tracker runs, fanned out. With no backend every call is a no-op; a
    backend that raises is warned about once and dropped for the rest of the run."""

    def __init__(self, trackers: Iterable[Tracker] = ()) -> None:
        self.trackers = list(trackers)

    @property
    def enabled(self) -> bool:
        return bool(self.trackers)

    def _each(self, what: str, call: Callable[[Tracker], None]) -> None:
        for tracker in list(self.trackers):
            try:
                call(tracker)
            except Exception as e:
                log.warning(
                    "tracking: %s failed to %s (%s: %s); nothing more is logged to it in this run",
                    tracker.name,
                    what,
                    type(e).__name__,
                    e,
                )
                self.trackers.remove(tracker)

    def log_config(self, cfg: RunConfig) -> None:
        params = flat_config(cfg)
        self._each("log the config", lambda t: t.log_params(params))

    def log_pass(self, k: int, kind: str, summary: PassSummary, stats: Mapping[str, Any]) -> None:
        figures = pass_metrics(kind, summary, stats)
        self._each("log a pass", lambda t: t.log_metrics(figures, k, ITERATION))

    def log_phase(self, k: int, name: str, seconds: float) -> None:
        self._each(
            "log a phase time",
            lambda t: t.log_metrics({f"phase_seconds/{name}": seconds}, k, ITERATION),
        )

    def log_training(self, k: int, result: TrainResult) -> None:
        """The job's figures at step k, and its losses: per optimizer step (train/loss/iter_k,
        steps from 1) and, with a validation split, per epoch (train/val_loss/iter_k)."""
        figures = training_metrics(result)
        self._each("log training", lambda t: t.log_metrics(figures, k, ITERATION))
        for axis, name, values in (
            (TRAIN_STEP, "loss", result.losses),
            (EPOCH, "val_loss", result.val_losses),
        ):
            # steps and epochs counted from 1; a NaN loss is no point
            series = [(i, v) for i, v in enumerate(values, start=1) if v == v]
            self._each(
                f"log training {name}",
                lambda t, series=series, axis=axis, name=name: [
                    t.log_metrics({f"train/{name}/iter_{k}": v}, i, axis) for i, v in series
                ],
            )

    def log_adapter(self, k: int, uri: str) -> None:
        """Adapter k by reference: its URI, not its weights (they stay in the run directory)."""
        self._each("log an adapter", lambda t: t.log_reference(f"adapter/iter_{k}", uri))

    def log_report(self, paths: Mapping[str, str]) -> None:
        """report.md, report.html and the plots (`report.write_report`'s paths)."""
        pages = [p for key, p in paths.items() if key in ("md", "html")]
        plots = [p for key, p in paths.items() if key not in ("md", "html")]
        self._each(
            "log the report",
            lambda t: (t.log_files("report", pages), t.log_files("report/plots", plots)),
        )

    def close(self, finished: bool) -> None:
        self._each("close", lambda t: t.close(finished))
        self.trackers = []


def open_tracking(cfg: RunConfig, run: RunDir) -> RunTracker:
    """Start (or, on a resume, continue) a tracker run per configured backend and log the
    config; the tracker ids go into the manifest. A backend that cannot start is warned about and
    left out: the run goes on."""
    tcfg = cfg.tracking
    if not tcfg.backend:
        return RunTracker()
    folder = tracking_dir(tcfg, run)
    project = tcfg.project or cfg.experiment
    params = flat_config(cfg)
    starts: dict[str, Callable[[], Tracker]] = {
        "mlflow": lambda: MlflowTracker(tcfg.uri or f"{folder}/mlruns", project, run),
        "wandb": lambda: WandbTracker(f"{folder}", project, params, run),
        "tensorboard": lambda: TensorBoardTracker(f"{folder}/tensorboard", run),
    }
    trackers: list[Tracker] = []
    for backend in tcfg.backend:
        try:
            trackers.append(starts[backend]())
        except Exception as e:
            log.warning(
                "tracking: %s could not start (%s: %s); the run goes on without it",
                backend,
                type(e).__name__,
                e,
            )
    run.save()
    tracker = RunTracker(trackers)
    tracker.log_config(cfg)
    log.info(
        "tracking to %s under %s", ", ".join(t.name for t in tracker.trackers) or "nothing", folder
    )
    return tracker
