"""The training loop: D and G updates, EMA, logging, snapshots, resume.

Reporting and stopping come in as callbacks so Ray, DVCLive, notebooks and tests plug in without the
loop knowing them:

- ``log(metrics, step)`` — main rank, every ``train.log_every`` steps and at every scored step (means over
  the interval and ranks);
- ``report(metrics, step, ckpt_dir)`` — every rank, at each snapshot (``train.snapshot_every``, each of
  ``train.fid_steps``, the last step; metrics include every rank's
  ``replica_fingerprints``, checked equal); ``ckpt_dir`` holds ``checkpoint.pt``
  on the main rank and is None elsewhere;
- ``should_stop()`` — asked at log steps; a True on any rank ends the run after a final snapshot;
- ``score(G_ema)`` — main rank, every ``train.fid_every`` steps and at ``train.fid_steps``: a dict with ``fid`` (and sample
  ``diversity``/``duplicates``; ``gans.metrics.InTrainingFID``), logged and reported; the G_ema weights with
  the lowest ``fid`` are kept in the state (``best``).

Failure modes (``gans.diagnosis``) are checked at every log step: a new one is printed, and each is logged
as a 0/1 ``diagnosis/<name>`` series; the state's ``diagnosis`` lists them. Those named in ``train.stop_on``
end the run (``stopped_by``; the last report carries ``fid: inf`` and ``kid: inf``, so a sweep's scheduler ranks it
last).
Divergence (a non-finite or exploding loss or gradient norm) never snapshots the broken weights: the run
returns, and reports as its final checkpoint, the state of its last good snapshot (step 0 before any) with
the whole history. Without ``divergence`` in ``stop_on`` a non-finite metric raises ``TrainingDiverged``
on every rank after a last report with ``diverged: 1``. Under fp16 loss scaling an update the GradScaler
skips (its gradients overflowed) is not divergence: ``amp_skipped_d``/``amp_skipped_g`` log the fraction of
skipped D and G updates, and the gradient norms and penalties are means over the applied ones
(``gans.step.update_stats``); a row whose every update was skipped has none. ``amp_scale_d``/``amp_scale_g``
log the loss scales at each log step; one below 1 (gradients overflow fp16 even unscaled) is divergence.

G_ema follows G with the decay ``gans.ema.ema_decay_at`` gives at each step (``train.ema_rampup``).

What a run carries from step to step, and the keys of its checkpoint dict, are ``gans.train_state.TrainState``.
"""

from __future__ import annotations

import dataclasses
import math
import os
import shutil
from collections import defaultdict
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np
import torch
from tqdm import tqdm

from gans import checkpoint, dist
from gans import precision as precision_choice
from gans.augment import check_adaptive_loss, check_augment_config
from gans.config import ConfigError, GANConfig
from gans.data import PreparedDataset, batch_indices
from gans.diagnosis import DIAGNOSES, Diagnosis, check_stop_on, diagnose
from gans.ema import copy_buffers, ema_decay_at, update_ema
from gans.errors import UserError
from gans.losses import build_loss, check_loss_config
from gans.models import check_model_config
from gans.step import discriminator_step, generate, generator_step, timing_step
from gans.train_state import TrainState, cpu_state_dict, resume_conflicts  # noqa: F401  (re-exported from here)


class TrainingStopped(UserError):
    """A failure mode in ``train.stop_on`` ended the run (a sweep trial fails with this)."""


class TrainingDiverged(TrainingStopped):
    """A loss or gradient norm became NaN or infinite (and ``divergence`` is not in ``train.stop_on``)."""


def stop_message(metrics: dict[str, Any]) -> Optional[str]:
    """One sentence for a run's last reported metrics if a ``train.stop_on`` failure mode ended it, else None."""
    stopped_by = metrics.get("stopped_by")
    if not stopped_by:
        return None
    return (
        f"Training stopped at step {int(metrics['step'])}: {stopped_by.replace('_', ' ')} "
        f"(train.stop_on; the diagnosis in the checkpoint has the evidence)."
    )


UNRANKABLE = {"fid": math.inf, "kid": math.inf}
"""The scores of a report from a run a failure mode ended: a sweep's scheduler ranks it last on either metric."""

LogFn = Callable[[dict[str, float], int], None]
ReportFn = Callable[[dict[str, float], int, Optional[Path]], None]
ScoreFn = Callable[[torch.nn.Module], dict[str, float]]


@dataclasses.dataclass(frozen=True)
class Callbacks:
    """How a run talks to its caller (the module docstring says when each is called); None: not called."""

    log: Optional[LogFn] = None
    report: Optional[ReportFn] = None
    should_stop: Optional[Callable[[], bool]] = None
    score: Optional[ScoreFn] = None


def check_config(cfg: GANConfig) -> None:
    """What the config alone cannot check: the model and loss exist, the model makes the resolution, and an
    adaptive augmentation has a loss with a decision boundary to steer by."""
    check_model_config(cfg)
    check_loss_config(cfg.loss)
    check_augment_config(cfg.augment)
    check_adaptive_loss(cfg.augment, cfg.loss.name)
    check_stop_on(cfg.train.stop_on)


def step_seed(seed: int, rank: int, world_size: int, step: int) -> int:
    """Seed for one step's randomness on one rank: a pure function, so a resumed run draws the same numbers."""
    return int(np.random.SeedSequence([seed * world_size + rank, step]).generate_state(1)[0])


def seed_step(seed: int, device: torch.device) -> None:
    """Seed the generators a step draws from: the CPU's, and CUDA's when training there.

    Not ``torch.manual_seed``: it also queues a lazy seeding of every accelerator backend that has not
    started, recording a stack trace each time (0.2 ms a call in a shallow stack, more inside a Ray worker).
    """
    torch.default_generator.manual_seed(seed)
    if device.type == "cuda":
        torch.cuda.manual_seed_all(seed)


CUBLAS_WORKSPACE_CONFIG = ":4096:8"
"""cuBLAS workspace setting that makes its kernels deterministic (``CUBLAS_WORKSPACE_CONFIG``, CUDA ≥ 10.2)."""


def make_deterministic() -> None:
    """Deterministic kernels for the rest of this process (``train.deterministic``; torch's flags are process-wide).

    cuDNN picks deterministic algorithms and does not benchmark, every op must have a deterministic
    implementation (one without raises instead of silently differing), and cuBLAS gets a fixed workspace.
    cuBLAS reads ``CUBLAS_WORKSPACE_CONFIG`` when it first starts in the process, so this must run before the
    first CUDA matmul (``fit`` calls it first thing); an existing setting is kept.
    """
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", CUBLAS_WORKSPACE_CONFIG)
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False
    torch.use_deterministic_algorithms(True)


def worker_batch(batch_size: int, world_size: int) -> int:
    """Each worker's share of the global ``train.batch_size``; ``ConfigError`` when it does not split evenly."""
    if batch_size % world_size:
        raise ConfigError(
            f"train.batch_size={batch_size} is the global batch and must split evenly over the "
            f"{world_size} workers; make it a multiple of {world_size}."
        )
    return batch_size // world_size


def print_precision(decision: precision_choice.Decision, amp: precision_choice.Setting, device: torch.device) -> None:
    """The decision's line, and a warning when ``train.amp: true`` forces bf16 where the CPU emulates it."""
    tqdm.write(f"[train] {decision.sentence()}")
    if warning := precision_choice.forced_bf16_warning(amp, device):
        tqdm.write(f"[train] warning: {warning}")


def choose_precision(
    cfg: GANConfig, device: torch.device, batch: int, resume: Optional[dict[str, Any]] = None
) -> precision_choice.Decision:
    """The run's precision and layout (``gans.precision.decide``), timed on ``batch``-image steps of its own models.

    A resumed run on the same machine keeps the decision it started with, so it continues bit-identically.
    """
    saved = (resume or {}).get("precision")
    if (
        saved
        and saved["machine"] == precision_choice.machine(device)
        and not (
            isinstance(cfg.train.amp, bool)
            and cfg.train.amp != saved["amp"]
            or isinstance(cfg.train.channels_last, bool)
            and cfg.train.channels_last != saved["channels_last"]
        )
    ):
        return precision_choice.Decision(**{**saved, "how": "resumed"})
    shapes = {
        "model": dataclasses.asdict(cfg.model),
        "image_shape": cfg.image_shape,
        "batch": batch,
        "loss": cfg.loss.name,
        "n_critic": cfg.n_critic,
        "r1": cfg.loss.r1_weight > 0,
        "augment": list(cfg.augment.policy),
    }

    def steps_of(options: list[precision_choice.Candidate]) -> dict[precision_choice.Candidate, Callable[[], None]]:
        return {
            option: timing_step(cfg, device, batch, option.amp, option.channels_last, option.torch_dtype)
            for option in options
        }

    return precision_choice.decide(cfg.train.amp, cfg.train.channels_last, device, steps_of, shapes)


def check_dataset(cfg: GANConfig, dataset: PreparedDataset) -> None:
    """``ConfigError`` when the prepared images are not the shape the config trains on."""
    if dataset.image_shape != cfg.image_shape:
        raise ConfigError(
            f"The dataset holds images {dataset.image_shape} but the config asks for {cfg.image_shape}; rerun prepare."
        )


def wrap_for_training(state: TrainState, loss: Any, device: torch.device) -> tuple[torch.nn.Module, torch.nn.Module]:
    """G and D as they train: under DDP with several processes (``gans.dist.wrap``), else themselves.

    SyncBatchNorm where the device has it (``train.sync_batchnorm``); not in a D whose penalty differentiates
    twice (SyncBatchNorm has no double backward).
    """
    sync_batchnorm = state.cfg.train.sync_batchnorm
    penalised = loss.gp_weight > 0 or state.cfg.loss.r1_weight > 0
    G_train = dist.wrap(state.G, device, sync_batchnorm=sync_batchnorm)
    D_train = dist.wrap(state.D, device, sync_batchnorm=sync_batchnorm and not penalised)
    return G_train, D_train


def sync_generator_buffers(state: TrainState) -> None:
    """Make G's BatchNorm statistics agree over ranks before saving or scoring, and give them to G_ema."""
    dist.average_buffers(state.G)  # BatchNorm statistics drift apart per rank
    copy_buffers(state.G_ema, state.G)  # the synced BatchNorm statistics; G_ema's averaged weights stay


def interval_metrics(interval: dict[str, list[float]], world: int) -> dict[str, float]:
    """The interval's per-step statistics as means over the steps that have them and over the ranks; empties
    ``interval``. (Every rank skips the same updates: their gradients are all-reduced, so the keys agree.)"""
    metrics = dist.mean_over_ranks({key: float(np.mean(values)) for key, values in interval.items()})
    metrics["global_batch"] = metrics.pop("worker_batch") * world  # real images per D update, all ranks
    interval.clear()
    return metrics


def score_generator(state: TrainState, metrics: dict[str, float], score: Optional[ScoreFn]) -> None:
    """Score G_ema into ``metrics`` (main rank) and keep the best-scored weights; every rank syncs buffers."""
    sync_generator_buffers(state)
    if score is not None and dist.is_main():
        metrics.update(score(state.G_ema))
        state.keep_if_best(metrics["fid"])


def diagnose_history(state: TrainState) -> dict[str, Diagnosis]:
    """The failure modes the history shows now (mode collapse: main rank only); new ones are printed."""
    found = {diagnosis.name: diagnosis for diagnosis in diagnose(state.history)}
    for name in found.keys() - state.diagnosed.keys():
        if dist.is_main():
            tqdm.write(f"[train] diagnosis: {found[name].sentence()}")
    state.diagnosed.update(found)
    return found


def end_interval(
    state: TrainState, interval: dict[str, list[float]], real_images: int, scored: bool, bar: tqdm, calls: Callbacks
) -> bool:
    """Close a logging interval: metrics, ADA, FID, history, diagnosis, log; whether the run stops here.

    ``real_images``: real images D saw over the interval on all ranks. A failure mode in ``train.stop_on``
    becomes ``state.stopped_by``; non-finite metrics without ``divergence`` there raise ``TrainingDiverged``
    after a last report. The answer is the same on every rank (a stop on any rank stops all).
    """
    train = state.cfg.train
    metrics = {**interval_metrics(interval, state.world_size), **state.precision.loss_scales()}
    if state.augment.ops:  # ADA's controller sees the same rank-averaged E[sign(D(real) − b)] on every rank
        if state.augment.adaptive:  # (only with a loss that has a decision boundary b: check_adaptive_loss)
            state.augment.adapt(metrics["d_real_sign"], real_images)
        metrics["augment_p"] = state.augment.p
    broken = sorted(key for key, value in metrics.items() if not math.isfinite(value))
    if not broken and scored:  # (the metrics are equal on every rank: with broken ones, every rank stops below)
        score_generator(state, metrics, calls.score)
    state.history.append({"step": state.step, **metrics})
    found = diagnose_history(state)
    bar.set_postfix({key: f"{metrics[key]:.3f}" for key in ("d_loss", "g_loss", "fid") if key in metrics})
    if calls.log is not None and dist.is_main():
        calls.log({**metrics, **{f"diagnosis/{name}": float(name in found) for name in DIAGNOSES.names()}}, state.step)
    halt = sorted(name for name in found if name in train.stop_on)
    if broken and "divergence" not in halt:  # NaN weights cannot train on
        if calls.report is not None:
            calls.report({**metrics, **UNRANKABLE, "diverged": 1.0}, state.step, None)
        raise TrainingDiverged(
            f"Training diverged at step {state.step} ({', '.join(broken)} not finite); "
            "lower optim.lr_d / optim.lr_g or change loss.name."
        )
    stop = bool(
        dist.mean_over_ranks({"stop": float(bool(halt or (calls.should_stop and calls.should_stop())))})["stop"] > 0
    )
    if halt:
        state.stopped_by = halt
    return stop


def save_snapshot(saved: dict[str, Any], work_dir: Path, step: int) -> Optional[Path]:
    """Write ``saved`` to ``work_dir/snapshot-<step>/`` on the main rank and delete older snapshots; its dir there."""
    if not dist.is_main():
        return None
    ckpt_dir = work_dir / f"snapshot-{step:07d}"
    checkpoint.save(saved, ckpt_dir / checkpoint.FILENAME)
    for old in work_dir.glob("snapshot-*"):
        if old != ckpt_dir:
            shutil.rmtree(old, ignore_errors=True)
    return ckpt_dir


def snapshot(state: TrainState, work_dir: Path, report: Optional[ReportFn]) -> dict[str, Any]:
    """Agree on buffers, check the replicas are equal, save and report; the snapshot's checkpoint dict."""
    sync_generator_buffers(state)
    dist.average_buffers(state.D)
    replicas = dist.gather(dist.fingerprint(state.G.state_dict()))
    if len(set(replicas)) > 1:
        raise RuntimeError(f"Generator replicas diverged across ranks at step {state.step}: {replicas}.")
    saved = state.to_checkpoint()
    ckpt_dir = save_snapshot(saved, work_dir, state.step)
    if report is not None:
        extra = {**UNRANKABLE, "stopped_by": ",".join(state.stopped_by)} if state.stopped_by else {}
        report(
            {**(state.history[-1] if state.history else {}), **extra, "replica_fingerprints": replicas},
            state.step,
            ckpt_dir,
        )
    return saved


def roll_back(
    state: TrainState, last_good: dict[str, Any], work_dir: Path, report: Optional[ReportFn]
) -> dict[str, Any]:
    """After divergence: save and report the last good snapshot's state with the whole history; that state."""
    final = state.rolled_back(last_good)
    ckpt_dir = save_snapshot(final, work_dir, state.step)
    if report is not None:
        report(
            {**state.history[-1], **UNRANKABLE, "diverged": 1.0, "stopped_by": ",".join(state.stopped_by)},
            state.step,
            ckpt_dir,
        )
    return final


def fit(
    cfg: GANConfig,
    dataset: PreparedDataset,
    *,
    work_dir: str | Path,
    device: str | torch.device = "cpu",
    resume: Optional[dict[str, Any]] = None,
    log: Optional[LogFn] = None,
    report: Optional[ReportFn] = None,
    should_stop: Optional[Callable[[], bool]] = None,
    score: Optional[ScoreFn] = None,
    progress: bool = False,
) -> dict[str, Any]:
    """Train the GAN described by ``cfg`` on ``dataset``; return the final full state (a checkpoint dict).

    ``resume`` is a checkpoint dict (``gans.checkpoint.load``) to continue from. Snapshots are written to
    ``work_dir/snapshot-<step>/checkpoint.pt``; only the latest is kept.
    With several processes G and D train under DDP (``gans.dist.wrap``), with SyncBatchNorm on CUDA when
    ``train.sync_batchnorm`` is set; ``train.deterministic`` calls ``make_deterministic`` first.
    """
    check_config(cfg)
    if cfg.train.deterministic:
        make_deterministic()
    device, rank, world, train = torch.device(device), dist.rank(), dist.world_size(), cfg.train
    check_dataset(cfg, dataset)
    batch = worker_batch(train.batch_size, world)
    decision = dist.gather(choose_precision(cfg, device, batch, resume) if dist.is_main() else None)[0]  # rank 0's
    if dist.is_main():
        print_precision(decision, train.amp, device)
    state = TrainState.create(cfg, decision, device, world, resume)
    loss = build_loss(cfg.loss)
    G_train, D_train = wrap_for_training(state, loss, device)
    G, D, precision, augment, work_dir = state.G, state.D, state.precision, state.augment, Path(work_dir)
    last_good = state.to_checkpoint()  # what a run stopped by divergence returns: the latest snapshot's state
    n_images, n_critic, z_dim, r1 = len(dataset), cfg.n_critic, cfg.model.z_dim, cfg.loss.r1_weight
    last_log_step, calls = state.step, Callbacks(log, report, should_stop, score)
    interval: dict[str, list[float]] = defaultdict(list)
    shown = progress and dist.is_main()
    bar = tqdm(total=train.steps, initial=state.step, desc="train", unit="step", disable=not shown)
    while state.step < train.steps:
        seed_step(step_seed(train.seed, rank, world, state.step), device)

        # Update D (n_critic times); the last batch of samples keeps G's graph for G's update.
        for critic_step in range(n_critic):
            indices = batch_indices(state.step * n_critic + critic_step, n_images, batch, train.seed, rank, world)
            real = dataset.batch(indices).to(device, memory_format=state.memory_format)
            last = critic_step == n_critic - 1
            fake = generate(G_train if last else G, torch.randn(batch, z_dim, device=device), precision, grad=last)
            d_stats = discriminator_step(
                D_train, state.opt_d, loss, real, fake, D_plain=D, precision=precision, augment=augment, r1_weight=r1
            )
            for key, value in {**d_stats, "worker_batch": real.shape[0]}.items():
                interval[key].append(value)

        # Update G.
        g_stats = generator_step(G_train, D, state.opt_g, loss, fake, precision=precision, augment=augment)
        update_ema(state.G_ema, G, ema_decay_at(state.step, train.ema_decay, train.ema_rampup))
        state.step += 1
        bar.update(1)
        for key, value in g_stats.items():
            interval[key].append(value)

        # End of a logging interval (and of the run when a stop_on mode or should_stop says so).
        stop, scored = False, train.scores_at(state.step)
        if state.step % train.log_every == 0 or state.step == train.steps or scored:
            real_images = (state.step - last_log_step) * batch * world * n_critic  # D saw, on all ranks
            stop = end_interval(state, interval, real_images, scored, bar, calls)
            last_log_step = state.step

        # Snapshot: never of broken weights; a run stopped by divergence keeps its last good snapshot's.
        if "divergence" in state.stopped_by:
            last_good = roll_back(state, last_good, work_dir, report)
        elif (
            state.step % train.snapshot_every == 0 or state.step in train.fid_steps or state.step == train.steps or stop
        ):
            last_good = snapshot(state, work_dir, report)
        if stop:
            break
    bar.close()
    return last_good if "divergence" in state.stopped_by else state.to_checkpoint()
