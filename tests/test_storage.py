import pytest

from axiom_ray.config import RunConfig, build_config
from axiom_ray.rundir import RunDir, RunDirError
from axiom_ray.storage import Storage


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
    assert RunDir.open(uri).manifest["config"]["generation"]["samples"] == RunConfig().generation.samples  # untouched
