"""Run-folder guards: one writer, a resume that matches, a clean fresh start, writable --out."""

import contextlib
import subprocess
import sys
import time

import pytest
import torch

from ohemcli.config import ExperimentConfig, config_to_dict, config_to_yaml
from ohemcli.errors import UserError
from ohemcli.runs.guard import check_out_dir, check_resume, clear_leftovers, lock_holder, run_lock
from ohemcli.runs.paths import RunPaths


def test_a_second_writer_is_told_the_folder_and_the_pid(tmp_path):
    paths = RunPaths(tmp_path / "run")
    assert lock_holder(paths) is None
    with run_lock(paths):
        hold = (
            "import fcntl, os, sys; fd = os.open(sys.argv[1], os.O_RDWR); "
            "fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)"
        )
        child = subprocess.run([sys.executable, "-c", hold, str(paths.lock)], capture_output=True)
        assert child.returncode != 0 and b"Error" in child.stderr
    assert lock_holder(paths) is None  # released on exit
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"{hold.replace(' | fcntl.LOCK_NB', '')}; "
            "os.ftruncate(fd, 0); os.write(fd, str(os.getpid()).encode()); "
            "import time; time.sleep(60)",
            str(paths.lock),
        ]
    )
    try:
        while paths.lock.read_text().strip() != str(holder.pid):
            time.sleep(0.05)
        busy = rf"^{paths.root}: .*pid {holder.pid}, running\)"
        with pytest.raises(UserError, match=busy), run_lock(paths):
            pass
        assert lock_holder(paths) == str(holder.pid)
        with pytest.raises(UserError, match=f"pid {holder.pid}"):
            check_resume(paths, ExperimentConfig(), resume=False)
    finally:
        holder.kill()
        holder.wait()
    assert lock_holder(paths) is None  # the OS released the dead holder's lock


def test_leftovers_of_a_run_without_checkpoint_are_cleared(tmp_path):
    paths = RunPaths(tmp_path)
    for p in (paths.config, paths.metrics, paths.evals, paths.summary):
        p.write_text("old\n")
    paths.eval_dir.mkdir()
    (paths.eval_dir / "metrics.json").write_text("{}")
    (tmp_path / "notes.txt").write_text("the user's")
    clear_leftovers(paths)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


def test_out_must_be_a_writable_folder(tmp_path):
    check_out_dir(tmp_path / "new" / "run")
    (tmp_path / "file").write_text("x")
    with pytest.raises(UserError, match="not a folder"):
        check_out_dir(tmp_path / "file")
    with pytest.raises(UserError, match="is not a folder"):
        check_out_dir(tmp_path / "file" / "run")


def _saved_run(tmp_path, cfg, **ckpt_changes):
    paths = RunPaths(tmp_path)
    paths.config.write_text(config_to_yaml(cfg))
    state = {k: {} for k in ("model", "optimizer", "scheduler", "sampler", "state")}
    state["config"] = config_to_dict(cfg)
    state.update(ckpt_changes)
    state = {k: v for k, v in state.items() if v is not None}
    torch.save(state, paths.checkpoint)
    return paths


def test_resume_refuses_another_sampler_by_name(tmp_path):
    hnm = ExperimentConfig()
    hnm = hnm.__class__(sampler=hnm.sampler.__class__(name="hnm"))
    paths = _saved_run(tmp_path, hnm)
    with pytest.raises(UserError, match="sampler.name = 'hnm', this run has 'fixed'"):
        check_resume(paths, ExperimentConfig(), resume=True)
    with pytest.raises(UserError, match="pass --resume"):
        check_resume(paths, hnm, resume=False)
    assert check_resume(paths, hnm, resume=True)["config"]["sampler"]["name"] == "hnm"


def test_resume_checks_the_checkpoints_own_config(tmp_path):
    cfg = ExperimentConfig()
    other = config_to_dict(cfg)
    other["model"]["backbone"] = "vgg16"
    paths = _saved_run(tmp_path, cfg, config=other)
    with pytest.raises(UserError, match=r"checkpoint.pt: .*model.backbone = 'vgg16'"):
        check_resume(paths, cfg, resume=True)


def test_a_foreign_or_unsafe_checkpoint_is_one_line_without_pytorchs_advice(tmp_path):
    cfg = ExperimentConfig()
    paths = _saved_run(tmp_path, cfg, model=None)
    with pytest.raises(UserError, match="no 'model' key"):
        check_resume(paths, cfg, resume=True)
    torch.save({"x": ExperimentConfig()}, paths.checkpoint)  # a pickled class: refused safely
    with pytest.raises(UserError) as err:
        check_resume(paths, cfg, resume=True)
    assert "weights_only" not in str(err.value) and "\n" not in str(err.value)
    assert str(paths.checkpoint) in str(err.value)


def test_the_lock_dies_with_its_process_not_with_its_forked_children(tmp_path):
    """A forked child (a DataLoader worker) that outlives the killed holder keeps no lock."""
    import os
    import signal

    paths = RunPaths(tmp_path / "run")
    paths.root.mkdir()
    read, write = os.pipe()
    holder = os.fork()
    if holder == 0:  # the holder: takes the lock, forks a worker that outlives it, waits
        try:
            with run_lock(paths):
                worker = os.fork()
                if worker == 0:
                    time.sleep(30)
                    os._exit(0)
                os.write(write, f"{worker}\n".encode())
                time.sleep(30)
        finally:
            os._exit(0)
    worker = int(os.fdopen(read).readline())
    try:
        assert lock_holder(paths) == str(holder)
        os.kill(holder, signal.SIGKILL)
        os.waitpid(holder, 0)
        os.kill(worker, 0)  # the worker still lives ...
        assert lock_holder(paths) is None  # ... and the lock is free at once
        with run_lock(paths):
            assert paths.lock.read_text().strip() == str(os.getpid())
            assert lock_holder(paths) == str(os.getpid())  # asking does not drop our own lock
            with pytest.raises(UserError, match=f"pid {os.getpid()}, running"), run_lock(paths):
                pass
            assert lock_holder(paths) == str(os.getpid())
        assert lock_holder(paths) is None
    finally:
        for pid in (holder, worker):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def test_the_message_says_whether_the_named_pid_lives():
    import os

    from ohemcli.runs.guard import pid_state

    assert pid_state(str(os.getpid())) == f"pid {os.getpid()}, running"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    assert pid_state(str(dead.pid)) == f"pid {dead.pid}, no longer running"
