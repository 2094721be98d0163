"""Experiment tracking (axiom_ray/tracking.py) against the real libraries, offline: an MLflow
file store read back with MlflowClient, TensorBoard event files read with TensorBoard's
EventAccumulator, W&B offline run files read record by record; then a resume, and the loop.
"""

from __future__ import annotations

import glob
import json
import logging
import struct
from pathlib import Path

import pytest

from axiom_ray.config import ConfigError, build_config
from axiom_ray.evaluation import paired_difference, summarize
from axiom_ray.rundir import RunDir
from axiom_ray.tracking import RunTracker, check_backends, open_tracking, wandb_id
from axiom_ray.training.job import TrainResult

pytest.importorskip("mlflow")
pytest.importorskip("tensorboard")
pytest.importorskip("wandb")

ALL = "tracking.backend=[mlflow,tensorboard,wandb]"


@pytest.fixture(autouse=True)
def offline_wandb(monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")


def rows(spec: dict[str, tuple[int, int]]) -> list[dict]:
    """Sample rows (the columns summarize reads): `c` of `n` attempt-0 samples pass per problem."""
    out = []
    for pid, (c, n) in spec.items():
        for i in range(n):
            out.append({"problem_id": pid, "passed": i < c, "status": "passed" if i < c else "failed",
                        "attempt": 0, "code_hash": f"{pid}-{i}" if i < c else None, "code": "pass",
                        "sample_id": f"{pid}-{i}", "num_tokens": 30, "code_tokens": 20})
    return out


BASE = summarize(rows({"add": (1, 4), "max_of_three": (0, 4), "count_vowels": (2, 4)})).timed(2.0)
MODEL_1 = summarize(rows({"add": (4, 4), "max_of_three": (1, 4), "count_vowels": (3, 4)})).timed(2.5)
TRAINED = TrainResult(adapter_dir="x", examples=6, dropped=0, steps=4, tokens=800, train_seconds=2.0,
                      fit_seconds=9.0, final_loss=0.7, losses=[2.5, 1.6, 1.1, 0.7], tokens_per_second=400.0,
                      val_losses=[1.9, 1.2], best_epoch=2)


def start(tmp_path: Path, *extra: str) -> tuple[RunDir, RunTracker]:
    cfg = build_config(overrides=[f"storage={tmp_path / 'run'}", "generation.samples=4", *extra])
    run = RunDir.open_or_create(str(tmp_path / "run"), cfg)
    return run, open_tracking(cfg, run)


def log_two_iterations(run: RunDir, tracker: RunTracker, report: dict[str, str]) -> None:
    tracker.log_pass(0, "eval", BASE, {})
    tracker.log_phase(0, "eval", 3.25)
    tracker.log_training(1, TRAINED)
    run.storage.write_text_atomic("iter_1/adapter/adapter_config.json", "{}")  # as training publishes it
    tracker.log_adapter(1, run.uri("iter_1/adapter"))
    paired = {"vs_base": paired_difference(BASE, MODEL_1).to_dict()}
    tracker.log_pass(1, "eval", MODEL_1, {"paired": paired})
    tracker.log_report(report)


def fake_report(folder: Path) -> dict[str, str]:
    """A report as write_report returns it: Markdown, HTML and one real PNG."""
    from matplotlib.figure import Figure

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "report.md").write_text("# report\n")
    (folder / "report.html").write_text("<h1>report</h1>\n")
    fig = Figure(figsize=(2, 1))
    fig.subplots().plot([0, 1], [0, 1])
    fig.savefig(folder / "pass_rates.png", dpi=50)
    return {"md": str(folder / "report.md"), "html": str(folder / "report.html"),
            "pass_rates": str(folder / "pass_rates.png")}


def mlflow_run(run: RunDir):
    from mlflow.tracking import MlflowClient

    info = run.manifest.tracker_run("mlflow")
    client = MlflowClient(tracking_uri=info["uri"])
    return client, client.get_run(info["run_id"])


def history(client, run_id: str, key: str) -> list[tuple[int, float]]:
    return sorted((m.step, m.value) for m in client.get_metric_history(run_id, key))


def tensorboard_scalars(logdir: str):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(logdir, size_guidance={"scalars": 0, "images": 0, "tensors": 0})
    acc.Reload()
    return acc


def wandb_records(path: str):
    """The records of a W&B offline run file (`run-ID.wandb`): a 7-byte W&B header, then the
    LevelDB log format (32 KiB blocks of chunks: crc32c, length, type), each record a protobuf."""
    from wandb.proto import wandb_internal_pb2

    data, block = Path(path).read_bytes(), 32768
    assert data[:4] == b":W&B"
    pos, buf = 7, b""
    while pos + 7 <= len(data):
        left = block - pos % block
        _crc, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        if left < 7 or (kind == 0 and length == 0):  # block trailer padding
            pos += left
            continue
        chunk, pos = data[pos + 7:pos + 7 + length], pos + 7 + length
        buf = chunk if kind in (1, 2) else buf + chunk  # FULL, FIRST start; MIDDLE, LAST extend
        if kind in (1, 4):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(buf)
            yield record


def wandb_history(folder: str) -> list[tuple[str, dict[str, float]]]:
    """(run id, one logged row) for every history row of every offline run under `folder`."""
    out = []
    for path in sorted(glob.glob(f"{folder}/wandb/offline-run-*/run-*.wandb")):
        run_id = None
        for r in wandb_records(path):
            kind = r.WhichOneof("record_type")
            if kind == "run":
                run_id = r.run.run_id
            elif kind == "history":
                values = {(i.key or "/".join(i.nested_key)): json.loads(i.value_json) for i in r.history.item}
                out.append((run_id, {k: float(v) for k, v in values.items() if isinstance(v, int | float)}))
    return out


def test_a_run_logged_to_mlflow_tensorboard_and_wandb_reads_back(tmp_path):
    run, tracker = start(tmp_path, ALL)
    assert [t.name for t in tracker.trackers] == ["mlflow", "tensorboard", "wandb"]
    log_two_iterations(run, tracker, fake_report(tmp_path / "out"))
    tracker.close(finished=True)
    run = RunDir.open(str(tmp_path / "run"))  # the tracker ids were saved in the manifest
    lo0, hi0 = BASE.pass_at_k_ci(1, seed=0)

    client, mr = mlflow_run(run)
    rid = mr.info.run_id
    assert mr.info.status == "FINISHED" and mr.data.tags["axiom.run_id"] == run.run_id
    assert mr.data.params["generation.samples"] == "4"
    assert mr.data.params["tracking.backend"] == "['mlflow', 'tensorboard', 'wandb']"
    assert history(client, rid, "eval/pass_at_1") == [(0, BASE.pass_at_k[1]), (1, MODEL_1.pass_at_k[1])]
    assert history(client, rid, "eval/pass_at_1_ci_lo")[0] == (0, pytest.approx(lo0))
    assert history(client, rid, "eval/pass_at_1_ci_hi")[0] == (0, pytest.approx(hi0))
    assert history(client, rid, "eval/pass_rate") == [(0, BASE.pass_rate), (1, pytest.approx(MODEL_1.pass_rate))]
    assert history(client, rid, "eval/tokens_per_s") == [(0, BASE.tokens_per_s), (1, MODEL_1.tokens_per_s)]
    diff = paired_difference(BASE, MODEL_1)
    assert history(client, rid, "eval/vs_base/diff") == [(1, pytest.approx(diff.diff, abs=1e-4))]
    assert history(client, rid, "phase_seconds/eval") == [(0, 3.25)]
    assert history(client, rid, "train/loss/iter_1") == list(enumerate(TRAINED.losses, start=1))
    assert history(client, rid, "train/val_loss/iter_1") == [(1, 1.9), (2, 1.2)]
    assert history(client, rid, "train/tokens_per_second") == [(1, 400.0)]
    assert mr.data.tags["adapter/iter_1"] == run.uri("iter_1/adapter")
    assert {a.path for a in client.list_artifacts(rid, "report")} >= {"report/report.md", "report/report.html"}
    assert [a.path for a in client.list_artifacts(rid, "report/plots")] == ["report/plots/pass_rates.png"]
    assert "config.json" in {a.path for a in client.list_artifacts(rid)}

    acc = tensorboard_scalars(run.manifest.tracker_run("tensorboard")["logdir"])
    assert [(e.step, e.value) for e in acc.Scalars("eval/pass_at_1")] == \
        [(0, pytest.approx(BASE.pass_at_k[1])), (1, pytest.approx(MODEL_1.pass_at_k[1]))]
    assert [(e.step, round(e.value, 4)) for e in acc.Scalars("train/loss/iter_1")] == \
        list(enumerate(TRAINED.losses, start=1))
    image = acc.Images("report/plots/pass_rates")[0]
    assert image.encoded_image_string == (tmp_path / "out/pass_rates.png").read_bytes()
    assert image.width == 100 and image.height == 50
    assert "config" in acc.Tags()["tensors"] and "adapter/iter_1" in acc.Tags()["tensors"]

    wb = run.manifest.tracker_run("wandb")
    rows_ = wandb_history(wb["dir"])
    assert {rid for rid, _ in rows_} == {wandb_id(run.run_id)}
    evals = [(row["iteration"], row["eval/pass_at_1"]) for _, row in rows_ if "eval/pass_at_1" in row]
    assert evals == [(0, BASE.pass_at_k[1]), (1, pytest.approx(MODEL_1.pass_at_k[1]))]
    losses = [(row["train_step"], row["train/loss/iter_1"]) for _, row in rows_ if "train/loss/iter_1" in row]
    assert losses == [(float(i), v) for i, v in enumerate(TRAINED.losses, start=1)]


def test_a_resumed_run_continues_the_same_tracker_runs(tmp_path):
    run, tracker = start(tmp_path, ALL)
    tracker.log_pass(0, "eval", BASE, {})
    tracker.close(finished=False)  # the first start was cut off
    first = RunDir.open(str(tmp_path / "run")).manifest

    run, tracker = start(tmp_path, ALL)  # the same command again: a resume
    tracker.log_pass(1, "eval", MODEL_1, {})
    tracker.close(finished=True)

    for backend in ("mlflow", "wandb", "tensorboard"):
        assert run.manifest.tracker_run(backend) == first.tracker_run(backend), backend
    client, mr = mlflow_run(run)
    assert mr.info.status == "FINISHED"
    assert history(client, mr.info.run_id, "eval/pass_at_1") == [(0, BASE.pass_at_k[1]),
                                                                 (1, MODEL_1.pass_at_k[1])]
    assert len(client.search_runs([mr.info.experiment_id])) == 1
    # TensorBoard: a second event file in the same folder, read as one run
    logdir = run.manifest.tracker_run("tensorboard")["logdir"]
    assert len(glob.glob(f"{logdir}/events.out.tfevents.*")) == 2
    assert [e.step for e in tensorboard_scalars(logdir).Scalars("eval/pass_at_1")] == [0, 1]
    # W&B: two offline records of one run id (`wandb sync` appends both to that run)
    rows_ = wandb_history(run.manifest.tracker_run("wandb")["dir"])
    # sorted: W&B names the offline records by start second and run id, so the order of their paths
    # is not always the order they were written in (CI saw it reversed when both started in one second)
    assert sorted((rid, row["iteration"]) for rid, row in rows_ if "eval/pass_at_1" in row) == \
        [(wandb_id(run.run_id), 0.0), (wandb_id(run.run_id), 1.0)]


class Broken:
    """A tracker whose every call fails (as a full disk or a dead server would)."""

    name = "broken"

    def __init__(self) -> None:
        self.calls = 0

    def __getattr__(self, _name):
        def fail(*_args, **_kwargs):
            self.calls += 1
            raise OSError("No space left on device")

        return fail


def test_a_failing_tracker_is_warned_about_once_and_the_others_go_on(tmp_path, caplog):
    run, tracker = start(tmp_path, "tracking.backend=tensorboard")
    broken = Broken()
    tracker.trackers.insert(0, broken)
    with caplog.at_level(logging.WARNING, logger="axiom_ray.tracking"):
        tracker.log_pass(0, "eval", BASE, {})
        tracker.log_training(1, TRAINED)
        tracker.close(finished=True)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "broken failed to log a pass" in warnings[0]
    assert broken.calls == 1
    acc = tensorboard_scalars(run.manifest.tracker_run("tensorboard")["logdir"])
    assert [e.step for e in acc.Scalars("train/loss/iter_1")] == [1, 2, 3, 4]


def test_tracking_config_errors_name_the_key(monkeypatch):
    with pytest.raises(ConfigError, match=r"^tracking.backend: unknown tracker 'comet' \(known: mlflow"):
        build_config(overrides=["tracking.backend=[mlflow,comet]"])
    cfg = build_config(overrides=["tracking.backend=MLflow,tensorboard,mlflow"])
    assert cfg.tracking.backend == ("mlflow", "tensorboard")
    assert build_config(overrides=["tracking.backend="]).tracking.backend == ()
    check_backends(cfg.tracking)  # installed: no error
    import axiom_ray.tracking as tracking

    monkeypatch.setitem(tracking.MODULES, "mlflow", "mlflow_is_not_installed_here")
    with pytest.raises(ConfigError, match=r"tracking.backend: mlflow needs its library: pip install mlflow-skinny"):
        check_backends(cfg.tracking)


def test_an_unknown_tracker_exits_2_with_one_line(capsys):
    from axiom_ray.cli import main

    assert main(["iterate", "--set", "tracking.backend=comet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "tracking.backend" in err[0] and "comet" in err[0]

