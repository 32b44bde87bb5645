"""The one training loop that every sampler shares.

Per iteration: conv features of N images are computed once; when the sampler asks for them, a
read-only pass (``torch.no_grad()``, same train/eval mode) gives every RoI's loss; the sampler
picks B/N RoIs per image; only those run forward and backward. hnm's mining passes run between
iterations and are timed apart. Rank 0 writes ``metrics.jsonl``, ``checkpoint.pt``, ``evals.jsonl``,
``eval/`` and ``summary.json`` into the run folder.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Generator
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader

from ohemcli.config import ExperimentConfig, config_to_yaml, input_norm
from ohemcli.data.batching import Batch, ScheduleSampler, TrainImages, collate, iteration_epoch
from ohemcli.data.box_stats import make_box_norm
from ohemcli.data.fingerprint import data_fingerprint
from ohemcli.data.splits import SplitData, load_split, open_splits
from ohemcli.device import (
    loader_workers,
    peak_memory_mb,
    reset_peak_memory,
    resolve_device,
    set_tf32,
    synchronize,
)
from ohemcli.engine.candidates import CandidateSource
from ohemcli.engine.distributed import (
    DistInfo,
    barrier,
    broadcast_object,
    broadcast_parameters,
    gather_objects,
    init_distributed,
    seed_rank,
)
from ohemcli.engine.mining import mine_false_positives
from ohemcli.engine.optimizer import build_optimizer
from ohemcli.engine.preflight import check_setup
from ohemcli.engine.state import TrainState, eval_iterations
from ohemcli.engine.step import (
    DEFAULT_PARTS,
    NonFiniteLoss,
    StepParts,
    StepResult,
    Updater,
    train_step,
)
from ohemcli.engine.tensorboard import EventWriter, open_events
from ohemcli.errors import UserError
from ohemcli.fileio import append_jsonl, atomic_write_json, atomic_write_text, truncate_jsonl
from ohemcli.model.backbones import check_pretrained_available
from ohemcli.model.fast_rcnn import build_model, without_pretrained
from ohemcli.progress import err_console, make_progress, train_columns, train_fields
from ohemcli.runs.checkpointer import Checkpointer
from ohemcli.runs.guard import check_out_dir, check_resume, clear_leftovers, run_lock
from ohemcli.runs.host_runs import HostRuns, device_names
from ohemcli.runs.paths import RunPaths, default_run_dir
from ohemcli.runs.records import log_stability, read_log
from ohemcli.runs.stability import RunStability
from ohemcli.samplers import MiningSampler, build_sampler
from ohemcli.samplers.plugins import PluginSampler
from ohemcli.samplers.regime import apply_regime, budget_note

__all__ = ["Callback", "Trainer", "train"]

# Called in-process with every record written to metrics.jsonl ("kind": "metrics") and
# evals.jsonl ("kind": "eval"), on the rank that writes them.
Callback = Callable[[dict[str, Any]], None]


def _autocast(
    cfg: ExperimentConfig, device: torch.device
) -> tuple[Any, torch.amp.GradScaler | None]:
    if not cfg.train.amp:
        return contextlib.nullcontext, None
    if device.type != "cuda":
        raise UserError("--amp: mixed precision needs --device cuda")
    dtype = torch.bfloat16 if native_bf16() else torch.float16
    scaler = torch.amp.GradScaler("cuda") if dtype == torch.float16 else None
    return (lambda: torch.autocast("cuda", dtype=dtype)), scaler


def native_bf16() -> bool:
    """True when the GPU computes bfloat16 in hardware (Ampere and later). A V100 or T4 only
    emulates it, slower than float16, which AMP then uses with a GradScaler instead."""
    try:
        return torch.cuda.is_bf16_supported(including_emulation=False)
    except TypeError:  # a torch without the argument counts emulation as support
        return torch.cuda.get_device_capability()[0] >= 8


class Trainer:
    """Holds a run's objects so that the loop reads top to bottom.

    ``batches()`` and ``step(batch)`` are the loop's two halves, public for ``engine.bench``.
    """

    def __init__(
        self,
        cfg: ExperimentConfig,
        out_dir: Path,
        resume: bool,
        show_progress: bool,
        callback: Callback | None = None,
    ) -> None:
        self.callback = callback
        self.host: HostRuns | None = None  # rank 0 marks itself as training on this host
        self.events: EventWriter | None = None  # TensorBoard, rank 0, opened by run()
        self.budget_note = budget_note(cfg)  # said when training starts, after every check
        cfg = apply_regime(cfg)  # the sampler's budget and method, recorded in config.yaml
        check_setup(cfg)  # cache, device, model: before the data and the folder
        self.device = resolve_device(cfg.train.device)
        set_tf32(cfg.train.tf32)  # chosen, never cuDNN's default (recorded in config and summary)
        self.dist: DistInfo = init_distributed(self.device.type, cfg.train.dist_timeout_s)
        if self.device.type == "cuda":
            self.device = torch.device("cuda", self.dist.local_rank)
        self.show = show_progress and self.dist.is_main
        self.paths = RunPaths(Path(out_dir))
        checkpoint = check_resume(self.paths, cfg, resume)
        if checkpoint is None:  # a resumed run takes its weights from the checkpoint
            check_pretrained_available(cfg.model)
        # Both splits before any proposal: a test split with nothing to score fails now.
        train_set, self.test_set = open_splits(cfg)
        # Recorded in summary.json: a finished run is reused only over the same data.
        self.data_fingerprint = data_fingerprint(train_set, self.test_set)
        self.train_data = load_split(cfg, cfg.data.train_split, self.show, train_set)
        classes = self.train_data.dataset.classes
        self.cfg = replace(cfg, data=replace(cfg.data, classes=classes))
        self.images = TrainImages(
            self.train_data.dataset,
            self.train_data.proposals,
            cfg.data.scale,
            cfg.data.max_size,
            cfg.data.use_difficult,
            cfg.sampler.fg_thresh,
            input_norm=input_norm(cfg.model),
        )
        self.images.box_norm = make_box_norm(
            cfg.model.box_norm, self.images, cfg.data.flip, self.show
        )
        # A resumed run's weights come from its checkpoint: no pretrained file is read again.
        built = self.cfg if checkpoint is None else without_pretrained(self.cfg)
        self.model = build_model(built, len(classes), self.device)
        self.model.set_box_norm(self.images.box_norm)  # saved with the weights (buffers)
        self.sampler = build_sampler(cfg.sampler)
        self.optimizer, self.scheduler = build_optimizer(self.model, cfg.train)
        self.gen = torch.Generator().manual_seed(cfg.train.seed)
        self.autocast, self.scaler = _autocast(cfg, self.device)
        self.updater = Updater(self.optimizer, self.scheduler, self.scaler, self.dist)
        self.checkpointer = Checkpointer(
            self.paths.checkpoint,
            self.model,
            self.optimizer,
            self.scheduler,
            self.sampler,
            self.gen,
            self.scaler,
            self.device,
        )
        self.rank_rngs: list[dict[str, Any]] | None = None  # every rank's, at the last save
        self.state = TrainState()
        self.saved_at: int | None = None  # iteration of the checkpoint on disk
        self.test_data: SplitData | None = None  # loaded at the first evaluation
        self.step_parts: StepParts = DEFAULT_PARTS  # ohem bench hands timed ones (engine.bench)
        self.measure_health = True  # the classifier's health on logging steps (ohem bench: off)
        # faster-rcnn: how the step scores the RPN's proposals, and hnm's pool joins them
        self.candidates = CandidateSource(
            cfg.sampler.fg_thresh, getattr(self.sampler, "pooled_boxes", None)
        )
        if checkpoint is not None:
            self._restore(checkpoint)
        broadcast_parameters(self.model, self.dist)
        if not self.checkpointer.rng_restored:  # each rank draws its own RoIs and dropout masks
            seed_rank(self.gen, cfg.train.seed, self.dist)

    def _restore(self, ckpt: dict[str, Any]) -> None:
        """Continue from ``ckpt``; the logs lose the lines written after it was saved."""
        self.state = TrainState.from_dict(self.checkpointer.restore(ckpt, self.dist.rank))
        self.saved_at = self.state.iteration
        if self.dist.is_main:
            for log in (self.paths.metrics, self.paths.evals):
                truncate_jsonl(log, self.state.iteration)

    def save(self, gather: bool = True) -> None:
        """Write the checkpoint (rank 0), with every rank's RNG states: with ``gather`` every
        rank must call it (one small gather); without, rank 0 alone reuses the last gathered."""
        if gather:
            self.rank_rngs = gather_objects(self.checkpointer.rank_rng(), self.dist)
        if not self.dist.is_main:
            return
        rngs = self.rank_rngs
        if rngs is not None:
            rngs = [self.checkpointer.rank_rng(), *rngs[1:]]  # rank 0's own is always fresh
        self.checkpointer.save(self.state.to_dict(), self.cfg, rngs)
        self.saved_at = self.state.iteration
        if self.events is not None:  # the event files hold what the checkpoint holds
            self.events.flush()

    def _write(self, path: Path, record: dict[str, Any], kind: str) -> None:
        """Append ``record`` to a JSONL log, the event files and hand it to the callback."""
        append_jsonl(path, record)
        if self.events is not None:
            self.events.write(record, kind)
        if self.host is not None and kind == "metrics":
            self.state.concurrent_runs = max(self.state.concurrent_runs, self.host.sample())
        if self.callback is not None:
            self.callback({**record, "kind": kind})

    def batches(self) -> Generator[Batch, None, None]:
        """The run's remaining mini-batches (from ``state.iteration`` on), moved to the device."""
        for batch in self._loader():
            yield batch.to(self.device)

    def step(self, batch: Batch, data_time: float = 0.0) -> StepResult:
        """One iteration on ``batch``: update the weights and count it in ``state``.

        Raises :class:`NonFiniteLoss` (a :class:`UserError`) before any update or write when the
        loss is not finite; the checkpoint on disk stays the last good one.
        """
        c = self.cfg
        synchronize(self.device)
        start = time.perf_counter()
        try:
            result = train_step(
                self.model,
                self.sampler,
                batch,
                self.updater,
                c.sampler.batch_rois // c.train.images_per_batch,
                self.gen,
                self.state.iteration + 1,
                self.autocast,
                c.sampler.rank_dtype,
                c.sampler.rank_dropout,
                self.measure_health and (self.state.iteration + 1) % c.train.log_every == 0,
                self.step_parts,
                self.candidates,
            )
        except NonFiniteLoss as exc:
            kept = (
                f"; {self.paths.checkpoint} holds iteration {self.saved_at}"
                if self.saved_at is not None
                else "; no checkpoint was written yet"
            )
            raise NonFiniteLoss(
                exc.iteration, exc.term, exc.value, kept, self._lower_lr_advice(), exc.where
            ) from None
        synchronize(self.device)
        result.step_time = time.perf_counter() - start
        self.state.record(result, result.step_time, data_time)
        return result

    def _lower_lr_advice(self) -> str:
        """How to follow "try a lower train.lr": --resume keeps the run's lr (the guard refuses
        another, so that one run never mixes two), so a lower lr is a fresh run."""
        lower = f"{self.cfg.train.lr / 10:g}"
        return (
            f"--resume would keep train.lr = {self.cfg.train.lr:g}; to try a lower one, start "
            f"over: the same command with --lr {lower} and another --out, or after removing "
            f"{self.paths.root}"
        )

    def _loader(self) -> DataLoader:
        c = self.cfg
        schedule = ScheduleSampler(
            len(self.images),
            c.train.images_per_batch,
            c.train.seed,
            self.state.iteration,
            c.train.iters,
            c.data.flip,
            self.dist.rank,
            self.dist.world_size,
        )
        return DataLoader(
            self.images,
            batch_sampler=schedule,
            collate_fn=collate,
            num_workers=loader_workers(c.data.workers),
            pin_memory=self.device.type == "cuda",
            persistent_workers=False,
            # Our own generator keeps DataLoader from drawing on the global RNG (dropout's).
            generator=torch.Generator().manual_seed(c.train.seed),
        )

    def _mining_due(self, it: int) -> bool:
        """After iteration ``it`` (0-based): every ``mine_every`` iterations, or at epoch ends."""
        if not self.sampler.needs_mining:
            return False
        every = self.cfg.sampler.mine_every
        if every > 0:
            return (it + 1) % every == 0
        per_iter = self.cfg.train.images_per_batch * self.dist.world_size
        n = len(self.images)
        return iteration_epoch(it + 1, n, per_iter) > iteration_epoch(it, n, per_iter)

    def _mine(self) -> None:
        # Under DDP every rank mines every image: each rank's next images may come from anywhere,
        # and identical pools keep the ranks' samplers in step.
        synchronize(self.device)
        start = time.perf_counter()
        sampler: MiningSampler = self.sampler  # type: ignore[assignment]  # needs_mining is set
        mined = mine_false_positives(
            self.model,
            self.images,
            sampler.mining_request(),
            self.device,
            loader_workers(self.cfg.data.workers),
            self.show,
            batch_size=self.cfg.train.images_per_batch,
            rank_dtype=self.cfg.sampler.rank_dtype,
        )
        sampler.after_mining(mined)
        synchronize(self.device)
        self.state.mining_seconds += time.perf_counter() - start
        self.state.mining_passes += 1
        self.state.mined_at = self.state.iteration
        self.state.last_pool_size = sampler.pool_size
        self.state.next_log["hnm_pool_size"] = sampler.pool_size  # on the next metrics.jsonl line

    def evaluate(self, final: bool) -> dict[str, Any]:
        """Evaluate on the test split (rank 0); the time goes to ``eval_seconds``."""
        from ohemcli.evaluation.evaluate import evaluate_model

        start = time.perf_counter()
        if self.test_data is None:
            self.test_data = load_split(
                self.cfg, self.cfg.data.test_split, self.show, self.test_set
            )
        out = self.paths.eval_dir if final else None
        result = evaluate_model(
            self.model, self.cfg, self.test_data, self.device, out, None, self.show
        )
        self.state.eval_seconds += time.perf_counter() - start
        point = {
            "iter": self.state.iteration,
            "mAP": result["mAP"],
            "train_seconds": self.state.train_seconds,
            "mining_seconds": self.state.mining_seconds,
            "wall_seconds": self.state.train_seconds + self.state.mining_seconds,
            "proposal_recall": result.get("proposal_recall"),
        }
        if not any(p["iter"] == point["iter"] for p in self.state.eval_history):
            self.state.eval_history.append(point)
            self._write(self.paths.evals, point, "eval")
        return result

    def run(self) -> dict[str, Any]:
        """Train to ``train.iters`` (resuming from a checkpoint), evaluate, write the summary."""
        try:
            return self._run()
        finally:  # a failed run's event files end readable at what it logged
            if self.events is not None:
                self.events.close()

    def _run(self) -> dict[str, Any]:
        c = self.cfg.train
        self._begin()
        eval_points = eval_iterations(c.iters, c.eval_points, c.lr_steps)
        with make_progress(*train_columns(), disable=not self.show) as progress:
            task = progress.add_task(
                f"train {self.cfg.sampler.name}",
                total=c.iters,
                completed=self.state.iteration,
                **train_fields(),
            )
            tick = time.perf_counter()
            for batch in self.batches():
                it = self.state.iteration  # 0-based index of this iteration
                self.step(batch, data_time=time.perf_counter() - tick)
                lr = float(self.scheduler.get_last_lr()[0])
                self._log_if_due(it, lr)
                self._mine_if_due(it)
                evaluated = self._evaluate_if_due(it, eval_points)
                self._checkpoint_if_due(it, evaluated)
                progress.update(
                    task,
                    advance=1,
                    **train_fields(self.state.smoothed_loss, lr, self.state.recent_s_per_iter),
                )
                tick = time.perf_counter()
        self.save()
        barrier(self.dist)
        return self._finish()

    def _begin(self) -> None:
        """Write config.yaml, put the model in training mode, and run a mining pass that is due
        at the iteration the run continues from (a shorter run with the same folder ended there)."""
        if self.budget_note is not None and self.show:
            err_console.print(self.budget_note, highlight=False, soft_wrap=True)
        reset_peak_memory(self.device)
        if self.dist.is_main:
            self.paths.root.mkdir(parents=True, exist_ok=True)
            atomic_write_text(self.paths.config, config_to_yaml(self.cfg))
            if isinstance(self.sampler, PluginSampler):  # which code ran, for the record
                atomic_write_json(self.paths.plugin, self.sampler.info.to_dict())
            self.events = open_events(
                self.cfg.train.tensorboard, self.paths.tensorboard, self.state.iteration
            )
        self.model.train()
        it = self.state.iteration
        if 0 < it < self.cfg.train.iters and self._mining_due(it - 1) and self.state.mined_at != it:
            self._mine()

    def _log_if_due(self, it: int, lr: float) -> None:
        """After iteration ``it``: a metrics.jsonl line every ``log_every`` iterations (rank 0)."""
        if self.dist.is_main and (it + 1) % self.cfg.train.log_every == 0:
            self._write(self.paths.metrics, self.state.log_line(it + 1, lr), "metrics")

    def _mine_if_due(self, it: int) -> None:
        """After iteration ``it``: a mining pass when one is due, except after the last
        iteration (nothing would use the pool)."""
        if self._mining_due(it) and it + 1 < self.cfg.train.iters:
            self._mine()

    def _evaluate_if_due(self, it: int, eval_points: set[int]) -> bool:
        """After iteration ``it``: evaluate at an eval point before the last (rank 0); the last
        is the final evaluation. True on every rank when it evaluated: the other ranks wait at a
        barrier meanwhile (up to ``train.dist_timeout_s``), not inside the next all-reduce."""
        due = it + 1 in eval_points and it + 1 < self.cfg.train.iters
        if due:
            if self.dist.is_main:
                self.evaluate(final=False)
            barrier(self.dist, "rank 0 evaluating")
        return due

    def _checkpoint_if_due(self, it: int, evaluated: bool) -> None:
        """After iteration ``it``: save after an evaluation (its point stays in the checkpoint's
        history) and every ``checkpoint_every`` iterations."""
        if evaluated or (it + 1) % self.cfg.train.checkpoint_every == 0:
            self.save()

    def _stability(self, final_map: float | None) -> RunStability:
        """How settled the run ended: its evaluation log and its logged training loss."""
        evals, metrics = read_log(self.paths.evals), read_log(self.paths.metrics)
        return log_stability(
            evals, metrics, self.state.iteration, final_map, self.cfg.train.lr_steps
        )

    def _finish(self) -> dict[str, Any]:
        """The final evaluation, the last checkpoint and summary.json (rank 0; others get {})."""
        if not self.dist.is_main:
            return {}
        result = self.evaluate(final=True)
        self.save(gather=False)  # the other ranks have left; their RNG states are the last save's
        devices = device_names(self.device, self.dist.world_size)
        peak_mb = peak_memory_mb(self.device)
        summary = self.state.summary(
            self.cfg,
            result,
            self.device,
            peak_mb,
            devices,
            self._stability(result["mAP"]).to_dict(),
        )
        summary["data_fingerprint"] = self.data_fingerprint
        summary["tf32"] = self.cfg.train.tf32  # the precision the run's matmuls and convs had
        atomic_write_json(self.paths.summary, summary)
        return summary


def train(
    cfg: ExperimentConfig,
    out_dir: Path | None = None,
    resume: bool = False,
    show_progress: bool = True,
    callback: Callback | None = None,
) -> dict[str, Any]:
    """Train one run and return its ``summary.json`` content. See the module docstring.

    ``callback``, when given, receives every record written to ``metrics.jsonl`` and
    ``evals.jsonl`` with ``"kind"`` set to ``"metrics"`` or ``"eval"``.
    """
    threads = torch.get_num_threads()
    try:
        return _train(cfg, out_dir, resume, show_progress, callback)
    finally:
        # A plugin sampler may set torch's thread count: the next run in this process (a compare
        # under --jobs 1) must start with the count this one started with.
        torch.set_num_threads(threads)


def _train(
    cfg: ExperimentConfig,
    out_dir: Path | None,
    resume: bool,
    show_progress: bool,
    callback: Callback | None,
) -> dict[str, Any]:
    out = Path(out_dir) if out_dir else default_run_dir(cfg)
    check_out_dir(out)
    # Read before any work, so that a corrupt summary.json is refused before data loading starts.
    done = RunPaths(out).finished_summary(cfg.train.iters)
    trainer = Trainer(cfg, out, resume, show_progress, callback)
    if trainer.state.iteration >= cfg.train.iters and done is not None:
        err_console.print(f"{trainer.paths.root}: already trained to {cfg.train.iters} iterations")
        return done
    with contextlib.ExitStack() as held:
        _take_run_lock(trainer, held)
        return trainer.run()


def _take_run_lock(trainer: Trainer, held: contextlib.ExitStack) -> None:
    """Rank 0 takes the run folder's lock (held until ``held`` closes) and tells every rank
    whether it got it, so that under torchrun all ranks stop together with its one line instead
    of the others waiting for it in the first all-reduce."""
    refused: str | None = None
    if trainer.dist.is_main:
        try:
            held.enter_context(run_lock(trainer.paths))
        except UserError as exc:
            refused = str(exc)
    refused = broadcast_object(refused, trainer.dist)
    if refused is not None:
        raise UserError(refused)
    if not trainer.dist.is_main:
        return
    host = held.enter_context(HostRuns())
    if trainer.state.iteration == 0:  # a fresh run: nothing of an earlier one stays
        clear_leftovers(trainer.paths)
    trainer.host = host
    trainer.state.concurrent_runs = max(trainer.state.concurrent_runs, host.most)
