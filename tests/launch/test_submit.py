"""Launched compares through submitit on this machine: K jobs at once give the same runs as one
process, a failed or killed run is named and stays resumable, a repeat trains only what is left,
Slurm parameters reach sbatch, and the requeue hook continues from the checkpoint."""

from __future__ import annotations

import json
import os
import re
import signal
import stat
import subprocess
import threading
import time
from dataclasses import replace
from pathlib import Path

import pytest
import submitit

from ohemcli.config import ExperimentConfig, load_config
from ohemcli.errors import UserError
from ohemcli.launch.compare import compare
from ohemcli.launch.grid import plan_runs
from ohemcli.launch.jobs import RunsJob, alive_jobs
from ohemcli.launch.options import Launch
from ohemcli.launch.submit import _executor
from ohemcli.runs.paths import ComparePaths
from tests.helpers import torch_threads

pytestmark = pytest.mark.slow
TINY = {
    "data.max_proposals": 150, "data.scale": 160, "data.max_size": 214, "data.workers": 0,
    "model.backbone": "tiny", "model.head_dim": 64, "sampler.batch_rois": 32,
    "train.iters": 6, "train.eval_points": 0, "train.log_every": 2,
    "train.checkpoint_every": 2, "train.lr": 0.01, "train.device": "cpu",
}  # fmt: skip
TWO = ["fixed", "ohem"]


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> ExperimentConfig:
    from ohemcli.data.synthetic.generate import generate_synthetic

    root = generate_synthetic(
        tmp_path_factory.mktemp("launch") / "synth", 8, 4, seed=0, show_progress=False
    )
    return load_config(None, {**TINY, "data.root": str(root)})


@pytest.fixture(scope="module")
def sequential(base: ExperimentConfig, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The reference: both runs trained one after another in this process (--jobs 1), at one
    thread, as each of two jobs on two cores runs: CPU runs match only at equal thread counts
    (a float32 sum split over two threads rounds differently)."""
    out = tmp_path_factory.mktemp("seq") / "cmp"
    with torch_threads(1):
        outcome = compare(base, TWO, [1], out, show_progress=False, launch=Launch(jobs=1))
    assert outcome.failures == [] and len(outcome.finished(6)) == 2
    return out


def summary(run: Path) -> dict:
    return json.loads((run / "summary.json").read_text())


def losses(run: Path) -> list[float]:
    """The logged losses: a tiny run's mAP may be 0, its losses tell runs apart to the last bit."""
    return [json.loads(s)["loss"] for s in (run / "metrics.jsonl").read_text().splitlines()]


def test_two_jobs_give_the_same_runs_as_one_process(
    base: ExperimentConfig, sequential: Path, tmp_path: Path
) -> None:
    out = tmp_path / "cmp"
    outcome = compare(base, TWO, [1], out, show_progress=False, launch=Launch(jobs=2))
    assert outcome.failures == [] and outcome.pending == []
    for name in ("fixed-s1", "ohem-s1"):
        got, want = summary(out / "runs" / name), summary(sequential / "runs" / name)
        assert got["mAP"] == want["mAP"] and got["AP"] == want["AP"]
        assert losses(out / "runs" / name) == losses(sequential / "runs" / name)
        assert got["iters"] == 6
        # each job had half of the cores (2 // 2 jobs) and said so
        assert got["devices"] == ["cpu (1 threads)"] and got["concurrent_runs"] in (1, 2)
    assert want["concurrent_runs"] == 1  # in-process: alone on the (private) registry
    assert len(list(ComparePaths(out).submitit.glob("*_submitted.pkl"))) == 2  # one job per slot


def _break_run(out: Path, name: str) -> None:
    """A run folder whose config.yaml is unreadable: that run fails, with a one-line error."""
    run = out / "runs" / name
    run.mkdir(parents=True)
    (run / "checkpoint.pt").write_bytes(b"not a checkpoint")
    (run / "config.yaml").write_text("train:\n  iters: many\n")


def test_failed_run_is_named_the_others_finish_and_a_repeat_trains_only_it(
    base: ExperimentConfig, sequential: Path, tmp_path: Path
) -> None:
    out = tmp_path / "cmp"
    _break_run(out, "ohem-s1")
    outcome = compare(base, TWO, [1], out, show_progress=False, launch=Launch(jobs=2))
    assert [(f.name, f.state) for f in outcome.failures] == [("ohem-s1", "failed")]
    assert "config.yaml" in outcome.failures[0].last_line
    assert "train.iters" in outcome.failures[0].last_line
    assert [p.name for p in outcome.finished(6)] == ["fixed-s1"]
    fixed_ckpt = (out / "runs" / "fixed-s1" / "checkpoint.pt").stat().st_mtime_ns

    for name in ("checkpoint.pt", "config.yaml"):  # the user repairs the folder
        (out / "runs" / "ohem-s1" / name).unlink()
    again = compare(base, TWO, [1], out, show_progress=False, launch=Launch(jobs=2))
    assert again.failures == [] and len(again.finished(6)) == 2
    assert (out / "runs" / "fixed-s1" / "checkpoint.pt").stat().st_mtime_ns == fixed_ckpt
    jobs = [p for p in ComparePaths(out).submitit.glob("*_submitted.pkl")]
    assert len(jobs) == 3  # two the first time, one (ohem-s1 only) the second
    assert losses(out / "runs" / "ohem-s1") == losses(sequential / "runs" / "ohem-s1")


def _worker_pids(folder: Path, run_name: str) -> list[int]:
    """The task processes of the live local job that trains ``run_name``."""
    for handle in alive_jobs(folder, "local"):
        if run_name in [r.name for r in handle.runs]:
            ctrl = int(handle.job_id)
            children = Path(f"/proc/{ctrl}/task/{ctrl}/children").read_text().split()
            return [int(c) for c in children]
    return []


def test_killed_worker_is_reported_and_its_run_resumes(
    base: ExperimentConfig, tmp_path: Path
) -> None:
    cfg = replace(base, train=replace(base.train, iters=40))
    out = tmp_path / "cmp"
    victim = out / "runs" / "ohem-s1"
    killed: list[int] = []

    def kill_when_checkpointed() -> None:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and not killed:
            if (victim / "checkpoint.pt").is_file():
                for pid in _worker_pids(ComparePaths(out).submitit, "ohem-s1"):
                    os.kill(pid, signal.SIGKILL)
                    killed.append(pid)
            time.sleep(0.05)

    killer = threading.Thread(target=kill_when_checkpointed, daemon=True)
    killer.start()
    outcome = compare(cfg, TWO, [1], out, show_progress=False, launch=Launch(jobs=2))
    killer.join()
    assert killed, "the worker was never seen"
    assert [(f.name, f.state) for f in outcome.failures] == [("ohem-s1", "killed")]
    assert not (victim / "summary.json").exists() and (victim / "checkpoint.pt").is_file()
    logged = len((victim / "metrics.jsonl").read_text().splitlines())
    assert logged < 20  # killed part-way (one line per 2 iterations)

    again = compare(cfg, TWO, [1], out, show_progress=False, launch=Launch(jobs=1))
    assert again.failures == [] and summary(victim)["iters"] == 40
    lines = [json.loads(s) for s in (victim / "metrics.jsonl").read_text().splitlines()]
    assert [r["iter"] for r in lines] == list(range(2, 41, 2))  # resumed, no gap, no repeat


def test_requeue_hook_resumes_from_the_checkpoint(
    base: ExperimentConfig, sequential: Path, tmp_path: Path
) -> None:
    """What submitit does on preemption: call ``checkpoint()`` and run what it returns."""
    from ohemcli.engine.train import train

    with torch_threads(1):  # the reference's thread count (see ``sequential``)
        run = plan_runs(tmp_path, ["ohem"], [1])[0]
        short = replace(base, sampler=replace(base.sampler, name="ohem"))
        train(replace(short, train=replace(short.train, iters=4)), run.path, show_progress=False)
        (run.path / "summary.json").unlink()  # preempted after the checkpoint at iteration 4
        job = RunsJob(base, [run], threads=1)
        delayed = job.checkpoint()
        assert isinstance(delayed, submitit.helpers.DelayedSubmission)
        assert isinstance(delayed.function, RunsJob) and delayed.function.runs == [run]
        assert delayed.result() == ["ohem-s1"]
    got, want = summary(run.path), summary(sequential / "runs" / "ohem-s1")
    assert got["iters"] == 6 and got["mAP"] == want["mAP"] and got["AP"] == want["AP"]
    assert losses(run.path) == losses(sequential / "runs" / "ohem-s1")


@pytest.fixture()
def fake_srun(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An ``srun`` on PATH: submitit's Slurm executor checks for one before anything else."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    srun = bin_dir / "srun"
    srun.write_text("#!/bin/sh\nexit 0\n")
    srun.chmod(srun.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")


def test_slurm_options_reach_the_sbatch_file(fake_srun: None, tmp_path: Path) -> None:
    launch = Launch(
        launcher="slurm", jobs=3, gpus_per_run=2, slurm_partition="gpu", slurm_time=90,
        slurm_account="lab", slurm_constraint="a100", slurm_mem="64G",
    )  # fmt: skip
    executor = _executor(launch, ComparePaths(tmp_path).submitit, cuda=True)
    text = executor._executor._make_submission_file_text("python -m x", "uid")
    for line in (
        "#SBATCH --partition=gpu", "#SBATCH --time=90", "#SBATCH --gpus-per-node=2",
        "#SBATCH --ntasks-per-node=2", "#SBATCH --account=lab", "#SBATCH --constraint=a100",
        "#SBATCH --mem=64G", "#SBATCH --job-name=ohem-compare",
    ):  # fmt: skip
        assert line in text, line
    assert executor._executor.parameters["array_parallelism"] == 3  # --jobs: at most 3 at once


def _fake_slurm(bin_dir: Path, states: str) -> Path:
    """sbatch that records its script and answers like Slurm; sacct that reports ``states``."""
    calls = bin_dir / "sbatch-calls"
    sbatch = bin_dir / "sbatch"
    sbatch.write_text(f'#!/bin/sh\ncat "$1" >> {calls}\necho "Submitted batch job 4242"\n')
    sacct = bin_dir / "sacct"
    sacct.write_text(f"#!/bin/sh\nprintf 'JobID|State|NodeList\\n{states}'\n")
    for tool in (sbatch, sacct):
        tool.chmod(tool.stat().st_mode | stat.S_IEXEC)
    return calls


def test_cli_submits_a_slurm_array_and_a_repeat_leaves_live_jobs_alone(
    fake_srun: None, tmp_path: Path
) -> None:
    from typer.testing import CliRunner

    from ohemcli.cli import app

    calls = _fake_slurm(tmp_path / "bin", "4242_0|RUNNING|node1\\n4242_1|PENDING|\\n")
    out = tmp_path / "cmp"
    args = [
        "compare", "--data", "synth", "--samplers", "fixed,ohem", "--out", str(out),
        "--launcher", "slurm", "--slurm-partition", "gpu", "--slurm-time", "90",
        "--gpus-per-run", "2", "--jobs", "1", "--slurm-mem", "64G", "--no-wait", "--no-progress",
    ]  # fmt: skip
    first = CliRunner().invoke(app, args)
    assert first.exit_code == 0, first.output
    assert "2 run(s) under way (fixed-s1, ohem-s1)" in first.stderr
    script = calls.read_text()
    for line in (
        "#SBATCH --partition=gpu", "#SBATCH --time=90", "#SBATCH --gpus-per-node=2",
        "#SBATCH --ntasks-per-node=2", "#SBATCH --mem=64G", "#SBATCH --array=0-1%1",
    ):  # fmt: skip
        assert line in script, line
    assert sorted(p.name for p in ComparePaths(out).submitit.glob("*_submitted.pkl")) == [
        "4242_0_submitted.pkl", "4242_1_submitted.pkl",
    ]  # fmt: skip

    again = CliRunner().invoke(app, args)  # sacct says both are alive: nothing is submitted
    assert again.exit_code == 0, again.output
    assert "2 run(s) under way" in again.stderr
    assert calls.read_text() == script


def test_slurm_without_srun_is_a_user_error(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(UserError, match="--launcher slurm: srun not found"):
        _executor(Launch(launcher="slurm"), tmp_path, cuda=False)


def _rank_sum() -> tuple[int, int, int, float]:
    """Inside a 2-task local job: join the group as train() does, all-reduce each rank's id."""
    import torch
    import torch.distributed as dist

    from ohemcli.engine.distributed import init_distributed
    from ohemcli.launch.job_env import export_submitit_env

    assert export_submitit_env()
    info = init_distributed("cpu")
    x = torch.tensor([float(info.rank + 1)])
    dist.all_reduce(x)
    dist.destroy_process_group()
    return info.rank, info.world_size, info.local_rank, float(x.item())


def test_submitit_tasks_become_ddp_ranks(tmp_path: Path, monkeypatch) -> None:
    """G tasks of one job join one process group with the ranks submitit gave them."""
    root = Path(__file__).resolve().parents[2]
    monkeypatch.setenv("PYTHONPATH", str(root))
    executor = submitit.AutoExecutor(folder=tmp_path, cluster="local")
    executor.update_parameters(tasks_per_node=2, timeout_min=5)
    job = executor.submit(_rank_sum)
    results = sorted(job.results())
    assert results == [(0, 2, 0, 3.0), (1, 2, 1, 3.0)]  # 1 + 2 on both ranks


def test_local_jobs_find_the_proposals_already_cached(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On a fresh cache the parent computes the data once, before any job starts."""
    from ohemcli.data.proposals import load as proposals
    from ohemcli.data.splits import load_split
    from ohemcli.data.synthetic.generate import generate_synthetic
    from ohemcli.launch import submit as launch_module
    from ohemcli.launch.submit import launch_runs

    root = generate_synthetic(tmp_path / "fresh", 3, 2, seed=5, show_progress=False)
    cfg = load_config(None, {**TINY, "data.root": str(root)})
    submitted: list[str] = []

    def fake_submit(base, todo, out_dir, launch, cuda):
        real = proposals.compute_selective_search
        monkeypatch.setattr(proposals, "compute_selective_search", None)  # must not be needed
        for split, images in {"trainval": 3, "test": 2}.items():
            assert len(load_split(base, split, show_progress=False).proposals) == images
        monkeypatch.setattr(proposals, "compute_selective_search", real)
        submitted.extend(r.name for r in todo)
        return []

    monkeypatch.setattr(launch_module, "submit", fake_submit)
    plan = plan_runs(tmp_path / "cmp", TWO, [1])
    launch_runs(cfg, plan, tmp_path / "cmp", Launch(jobs=2), show_progress=False)
    assert submitted == ["fixed-s1", "ohem-s1"]


def test_sbatch_refusing_the_jobs_is_one_line(fake_srun: None, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from ohemcli.cli import app

    sbatch = tmp_path / "bin" / "sbatch"
    sbatch.write_text(
        "#!/bin/sh\necho 'sbatch: error: invalid partition specified: nope' >&2\n"
        "echo 'sbatch: error: Batch job submission failed: Invalid partition name' >&2\nexit 1\n"
    )
    sbatch.chmod(sbatch.stat().st_mode | stat.S_IEXEC)
    args = [
        "compare", "--data", "synth", "--samplers", "fixed", "--out", str(tmp_path / "cmp"),
        "--launcher", "slurm", "--slurm-partition", "nope", "--no-wait", "--no-progress",
    ]  # fmt: skip
    done = CliRunner().invoke(app, args)
    assert done.exit_code == 2, done.output
    lines = done.stderr.strip().splitlines()
    assert lines == [
        "error: --launcher slurm: sbatch refused the jobs: sbatch: error: invalid partition "
        "specified: nope"
    ]


@pytest.mark.parametrize(
    "change, says",
    [
        ({"slurm_time": 10**9}, "--slurm-time 1000000000"),
        ({"slurm_time": 0}, "--slurm-time 0"),
        ({"slurm_partition": "gpu\n#SBATCH --qos=high"}, "--slurm-partition"),
        ({"slurm_partition": "a b"}, "--slurm-partition 'a b'"),
        ({"slurm_account": ""}, "--slurm-account"),
        ({"slurm_mem": "lots"}, "--slurm-mem 'lots'"),
        ({"slurm_mem": "0G"}, "--slurm-mem"),
        ({"slurm_constraint": "a100;rm"}, "--slurm-constraint"),
        ({"jobs": 0}, "--jobs"),
    ],
)
def test_absurd_launcher_values_are_refused_up_front(change, says, tmp_path: Path) -> None:
    from dataclasses import replace

    from ohemcli.config import ExperimentConfig
    from ohemcli.launch.compare import compare
    from ohemcli.launch.options import check_launch

    launch = replace(Launch(launcher="slurm"), **change)
    with pytest.raises(UserError, match=re.escape(says)) as info:
        check_launch(launch)
    assert "\n" not in str(info.value)
    with pytest.raises(UserError):
        compare(ExperimentConfig(), ["fixed"], [1], tmp_path / "cmp", False, launch)
    assert not (tmp_path / "cmp").exists()  # refused before anything is written


def test_sane_slurm_values_pass() -> None:
    from ohemcli.launch.options import check_launch

    check_launch(
        Launch(
            launcher="slurm", slurm_partition="gpu,gpu-long", slurm_account="lab-1",
            slurm_constraint="a100|h100&ib", slurm_mem="64G", slurm_time=2880,
        )
    )  # fmt: skip


def test_local_jobs_run_in_their_own_session_so_ctrl_c_does_not_reach_them(tmp_path: Path) -> None:
    """Ctrl-C signals the terminal's foreground process group; a job in its own session is not
    in it, so it keeps training, as compare's message says."""
    from ohemcli.launch.submit import detached_jobs

    executor = submitit.AutoExecutor(folder=tmp_path, cluster="local")
    executor.update_parameters(timeout_min=1)
    with detached_jobs():
        job = executor.submit(os.getsid, 0)
    import submitit.local.local as local

    assert local.subprocess.Popen is subprocess.Popen  # unwrapped after the block
    controller = int(job.job_id)
    assert os.getsid(controller) == controller != os.getsid(0)  # a session of its own
    assert os.getpgid(controller) != os.getpgid(0)
    assert job.result() == controller  # the task inherits the controller's session
