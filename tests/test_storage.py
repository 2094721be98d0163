import json

import pytest

from axiom_ray.config import RunConfig, build_config
from axiom_ray.rundir import MANIFEST, PHASES, RunDir, RunDirError, phases_of
from axiom_ray.storage import (
    Storage,
    filesystem,
    is_local,
    is_uri,
    local_folder,
    local_path,
    normalize_uri,
    resolve,
)


def test_publish_replaces_atomically_and_cleans_temps(tmp_path):
    st = Storage(str(tmp_path / "run"))
    st.makedirs("iter_0")
    tmp = st.temp_name("iter_0/samples")
    st.makedirs(tmp)
    st.write_text_atomic(f"{tmp}/a.txt", "x")
    st.publish(tmp, "iter_0/samples")
    assert (tmp_path / "run/iter_0/samples/a.txt").read_text() == "x"
    leftover = st.temp_name("iter_0/eval")
    st.makedirs(leftover)
    st.clean_temps("iter_0")
    assert st.list_dir("iter_0") == ["samples"]


def test_local_path_or_uri_is_decided_in_one_place(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert not is_uri("runs/x") and is_uri("s3://b/x") and is_uri("file:///tmp/x")
    assert is_local("runs/x") and is_local("/abs") and is_local("file:///tmp/x") and is_local("FILE:///tmp/x")
    assert not is_local("s3://b/x") and not is_local("gs://b/x")
    assert local_path("file://" + str(tmp_path / "a")) == str(tmp_path.resolve() / "a") == local_path("a")
    assert normalize_uri("s3://b/run/") == "s3://b/run" and normalize_uri("runs/x") == str(tmp_path / "runs/x")
    # manifest paths: relative to the run directory, or absolute / a URI as given
    assert resolve("s3://b/run", "iter_1/adapter") == "s3://b/run/iter_1/adapter"
    assert resolve("/runs/r", "/elsewhere/adapter") == "/elsewhere/adapter"
    assert resolve("/runs/r", "gs://x/adapter") == "gs://x/adapter"
    fs, path = filesystem("rel/dir")
    assert fs.type_name == "local" and path == str(tmp_path / "rel/dir")
    assert filesystem(f"file://{tmp_path}/x")[1] == f"{tmp_path}/x"


def test_local_folder_is_the_folder_or_a_download(tmp_path):
    src = tmp_path / "adapter"
    src.mkdir()
    (src / "adapter_config.json").write_text("{}")
    assert local_folder(str(src), str(tmp_path)) == str(src)
    copy = local_folder(src.as_uri(), str(tmp_path))  # any URI is copied, file:// included
    assert copy != str(src) and (tmp_path / copy / "adapter_config.json").read_text() == "{}"
    for missing in (str(tmp_path / "nope"), (tmp_path / "nope").as_uri()):
        with pytest.raises(FileNotFoundError, match="no such folder"):
            local_folder(missing, str(tmp_path))


def test_relative_storage_becomes_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert Storage("runs/x").root == str(tmp_path / "runs/x")


def test_run_dir_resume_and_refusal(tmp_path):
    uri = str(tmp_path / "run")
    cfg = build_config()
    run = RunDir.open_or_create(uri, cfg)
    run.mark(0, "samples", "done", seconds=1.0)
    again = RunDir.open_or_create(uri, cfg)
    assert again.run_id == run.run_id and again.is_done(0, "samples")
    other = build_config(overrides=["generation.samples=3", "seed=7"])
    with pytest.raises(RunDirError, match=r"generation\.samples.*seed|seed.*generation\.samples"):
        RunDir.open_or_create(uri, other)
    forked = RunDir.open_or_create(uri, other, fork=True)
    assert forked.storage.root != run.storage.root and forked.run_id != run.run_id
    assert RunDir.open(uri).config.generation.samples == RunConfig().generation.samples  # untouched


def test_manifest_views_write_the_same_json_as_before(tmp_path):
    """The typed views read and write the manifest's JSON; its content keeps its keys."""
    uri = str(tmp_path / "run")
    run = RunDir.open_or_create(uri, build_config())
    run.manifest.set_problems(["a", "b"], ["c"])
    run.mark(1, "train", "done", seconds=2.0, metrics={"examples": 3})
    run.set_adapter(1, "iter_1/adapter")
    run.iteration(1).curriculum = {"ids": ["a"]}
    run.save()
    raw = json.loads((tmp_path / "run" / MANIFEST).read_text())
    assert list(raw) == ["run_id", "experiment", "created_at", "argv", "model", "config", "problems", "iterations"]
    assert raw["problems"] == {"train": ["a", "b"], "eval": ["c"]}
    assert raw["iterations"] == {"1": {"adapter": "iter_1/adapter", "phases": {
        "train": {"status": "done", "seconds": 2.0, "metrics": {"examples": 3}}}, "curriculum": {"ids": ["a"]}}}
    again = RunDir.open(uri)
    [it] = again.manifest.iterations()
    assert (it.k, it.adapter, it.curriculum, again.manifest.problems("eval")) == (1, "iter_1/adapter", {"ids": ["a"]}, ["c"])
    train = it.phase("train")
    assert (train.is_done, train.seconds, train.metrics, train.paired()) == (True, 2.0, {"examples": 3}, {})
    assert it.phase("eval").status is None and "eval" not in raw["iterations"]["1"]["phases"]
    assert again.manifest.setting("generation.samples") == RunConfig().generation.samples
    assert again.manifest.setting("no.such.key") is None


def test_phases_are_listed_once_in_run_order():
    assert PHASES == ("train", "redeploy", "samples", "eval")
    assert phases_of(0) == ("samples", "eval") and phases_of(2, with_eval=False) == ("train", "redeploy", "samples")


def test_open_refuses_a_missing_or_unreadable_manifest(tmp_path):
    with pytest.raises(RunDirError, match="no manifest.json"):
        RunDir.open(str(tmp_path))
    (tmp_path / MANIFEST).write_text("[1, 2]")
    with pytest.raises(RunDirError, match="expected a JSON object"):
        RunDir.open(str(tmp_path))
