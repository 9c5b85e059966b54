"""The training loop: D and G updates, EMA, logging, snapshots, resume.

Reporting and stopping come in as callbacks so Ray, DVCLive, notebooks and tests plug in without the
loop knowing them:

- ``log(metrics, step)`` — main rank, every ``train.log_every`` and ``train.fid_every`` steps (means over
  the interval and ranks);
- ``report(metrics, step, ckpt_dir)`` — every rank, at each snapshot (metrics include every rank's
  ``replica_fingerprints``, checked equal); ``ckpt_dir`` holds ``checkpoint.pt``
  on the main rank and is None elsewhere;
- ``should_stop()`` — asked at log steps; a True on any rank ends the run after a final snapshot;
- ``score(G_ema)`` — main rank, every ``train.fid_every`` steps: a dict with ``fid`` (and sample
  ``diversity``/``duplicates``; ``gans.metrics.InTrainingFID``), logged and reported; the G_ema weights with
  the lowest ``fid`` are kept in the state (``best``).

Failure modes (``gans.diagnosis``) are checked at every log step: a new one is printed, and each is logged
as a 0/1 ``diagnosis/<name>`` series; the state's ``diagnosis`` lists them. Those named in ``train.stop_on``
end the run (``stopped_by``; the last report carries ``fid: inf``, so a sweep's scheduler ranks it last).
Divergence (a non-finite or exploding loss or gradient norm) never snapshots the broken weights: the run
returns, and reports as its final checkpoint, the state of its last good snapshot (step 0 before any) with
the whole history. Without ``divergence`` in ``stop_on`` a non-finite metric raises ``TrainingDiverged``
on every rank after a last report with ``diverged: 1``.
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
from gans.augment import Augment, check_augment_config
from gans.diagnosis import DIAGNOSES, check_stop_on, diagnose
from gans.config import ConfigError, GANConfig
from gans.data import PreparedDataset, batch_indices
from gans.errors import UserError
from gans.ema import copy_buffers, make_ema, update_ema
from gans.losses import build_loss, check_loss_config
from gans.models import build_models, check_model_config
from gans.step import Precision, discriminator_step, generate, generator_step, make_optimizers, timing_step

class TrainingStopped(UserError):
    """A failure mode in ``train.stop_on`` ended the run (a sweep trial fails with this)."""


class TrainingDiverged(TrainingStopped):
    """A loss or gradient norm became NaN or infinite (and ``divergence`` is not in ``train.stop_on``)."""


def stop_message(metrics: dict[str, Any]) -> Optional[str]:
    """One sentence for a run's last reported metrics if a ``train.stop_on`` failure mode ended it, else None."""
    stopped_by = metrics.get("stopped_by")
    if not stopped_by:
        return None
    return (f"Training stopped at step {int(metrics['step'])}: {stopped_by.replace('_', ' ')} "
            f"(train.stop_on; the diagnosis in the checkpoint has the evidence).")


LogFn = Callable[[dict[str, float], int], None]
ReportFn = Callable[[dict[str, float], int, Optional[Path]], None]
ScoreFn = Callable[[torch.nn.Module], dict[str, float]]


def resume_conflicts(saved: GANConfig, saved_world_size: int, cfg: GANConfig, world_size: int) -> list[str]:
    """What differs between a checkpoint's run and the run that would continue it, as "key: old → new".

    A run is defined by its data, model, loss and optimizer, and also by everything that decides its data
    order and noise streams: the seed, the batch size, the D updates per G update and the world size.
    ``train.steps`` may grow; logging and snapshot cadence may change.
    """
    conflicts = [f"{section} section" for section in ("data", "model", "loss", "optim", "augment")
                 if getattr(saved, section) != getattr(cfg, section)]
    for key, old, new in (
        ("train.seed", saved.train.seed, cfg.train.seed),
        ("train.batch_size", saved.train.batch_size, cfg.train.batch_size),
        ("train.n_critic", saved.n_critic, cfg.n_critic),
        ("world size (workers)", saved_world_size, world_size),
    ):
        if old != new:
            conflicts.append(f"{key} {old} → {new}")
    return conflicts


def check_config(cfg: GANConfig) -> None:
    """What the config alone cannot check: the model and loss exist, and the model makes the resolution."""
    check_model_config(cfg)
    check_loss_config(cfg.loss)
    check_augment_config(cfg.augment)
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
        raise ConfigError(f"train.batch_size={batch_size} is the global batch and must split evenly over the "
                          f"{world_size} workers; make it a multiple of {world_size}.")
    return batch_size // world_size


def choose_precision(cfg: GANConfig, device: torch.device, batch: int, resume: Optional[dict[str, Any]] = None
                     ) -> precision_choice.Decision:
    """The run's precision and layout (``gans.precision.decide``), timed on ``batch``-image steps of its own models.

    A resumed run on the same machine keeps the decision it started with, so it continues bit-identically.
    """
    saved = (resume or {}).get("precision")
    if saved and saved["machine"] == precision_choice.machine(device) and not (
            isinstance(cfg.train.amp, bool) and cfg.train.amp != saved["amp"]
            or isinstance(cfg.train.channels_last, bool) and cfg.train.channels_last != saved["channels_last"]):
        return precision_choice.Decision(**{**saved, "how": "resumed"})
    shapes = {"model": dataclasses.asdict(cfg.model), "image_shape": cfg.image_shape, "batch": batch,
              "loss": cfg.loss.name, "n_critic": cfg.n_critic, "r1": cfg.loss.r1_weight > 0,
              "augment": list(cfg.augment.policy)}

    def steps_of(options: list[precision_choice.Candidate]) -> dict[precision_choice.Candidate, Callable[[], None]]:
        return {option: timing_step(cfg, device, batch, option.amp, option.channels_last) for option in options}

    return precision_choice.decide(cfg.train.amp, cfg.train.channels_last, device, steps_of, shapes)


def cpu_state_dict(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {key: value.detach().cpu().clone() for key, value in module.state_dict().items()}


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
    device = torch.device(device)
    rank, world = dist.rank(), dist.world_size()
    train = cfg.train
    if dataset.image_shape != cfg.image_shape:
        raise ConfigError(f"The dataset holds images {dataset.image_shape} but the config asks for {cfg.image_shape}; rerun prepare.")

    batch = worker_batch(train.batch_size, world)
    decision = dist.gather(choose_precision(cfg, device, batch, resume) if dist.is_main() else None)[0]  # rank 0's
    if dist.is_main():
        tqdm.write(f"[train] {decision.sentence()}")

    torch.manual_seed(train.seed)  # identical initial weights on every rank
    G, D = build_models(cfg)
    memory_format = torch.channels_last if decision.channels_last else torch.contiguous_format
    G, D = G.to(device, memory_format=memory_format), D.to(device, memory_format=memory_format)
    precision = Precision.of(device, decision)
    G_ema = make_ema(G)
    G_init = cpu_state_dict(G)
    opt_g, opt_d = make_optimizers(cfg, G, D)
    loss = build_loss(cfg.loss)
    augment = Augment.create(cfg.augment)
    fixed_z = torch.randn(train.n_fixed, cfg.model.z_dim, generator=torch.Generator().manual_seed(train.seed))
    step, history = 0, []
    best: Optional[dict[str, Any]] = None  # {"step", "fid", "G_ema"}: the best-scored averaged generator so far
    diagnosed: dict[str, Any] = {}  # failure modes found so far (name → latest gans.diagnosis.Diagnosis)
    stopped_by: list[str] = []  # the train.stop_on modes that ended the run

    if resume is not None:
        conflicts = resume_conflicts(resume["config"], int(resume["world_size"]), cfg, world)
        if conflicts:
            raise ConfigError(f"Cannot resume: the checkpoint's run differs ({'; '.join(conflicts)}); "
                              "set train.resume: false to start fresh.")
        G.load_state_dict(resume["G"])
        D.load_state_dict(resume["D"])
        G_ema.load_state_dict(resume["G_ema"])
        opt_g.load_state_dict(resume["opt_g"])
        opt_d.load_state_dict(resume["opt_d"])
        G_init, fixed_z = resume["G_init"], resume["fixed_z"]
        step = int(resume["step"])
        history = [row for row in resume["history"] if row["step"] <= step]  # a rolled-back state logged past its step
        best = resume.get("best")
        augment.p = float(resume.get("augment_p", augment.p))
        torch.set_rng_state(resume["rng"]["torch"])
        for scaler, saved_scaler in ((precision.scaler_d, resume["scalers"]["d"]), (precision.scaler_g, resume["scalers"]["g"])):
            if saved_scaler:  # empty when the saved run trained without AMP
                scaler.load_state_dict(saved_scaler)

    # SyncBatchNorm where the device has it (train.sync_batchnorm); not in a D whose penalty differentiates twice.
    penalised = loss.gp_weight > 0 or cfg.loss.r1_weight > 0
    G_train = dist.wrap(G, device, sync_batchnorm=train.sync_batchnorm)
    D_train = dist.wrap(D, device, sync_batchnorm=train.sync_batchnorm and not penalised)
    work_dir = Path(work_dir)

    def full_state() -> dict[str, Any]:
        return {
            "config": cfg,
            "step": step,
            "world_size": world,
            "G": cpu_state_dict(G),
            "D": cpu_state_dict(D),
            "G_ema": cpu_state_dict(G_ema),
            "G_init": G_init,
            "opt_g": opt_g.state_dict(),
            "opt_d": opt_d.state_dict(),
            "scalers": {"d": precision.scaler_d.state_dict(), "g": precision.scaler_g.state_dict()},
            "rng": {"torch": torch.get_rng_state()},
            "fixed_z": fixed_z,
            "history": history,
            "best": best,
            "augment_p": augment.p,
            "diagnosis": [diagnosis.to_dict() for _, diagnosis in sorted(diagnosed.items())],
            "stopped_by": list(stopped_by),
            "precision": decision.to_dict(),
        }

    last_good = full_state()  # what a run stopped by divergence returns: the latest snapshot's state

    def sync_generator_buffers() -> None:
        dist.average_buffers(G)  # BatchNorm statistics drift apart per rank; agree before saving or scoring
        copy_buffers(G_ema, G)  # the synced BatchNorm statistics; G_ema's averaged weights stay

    def snapshot() -> tuple[Optional[Path], list[str]]:
        sync_generator_buffers()
        dist.average_buffers(D)
        replicas = dist.gather(dist.fingerprint(G.state_dict()))
        if len(set(replicas)) > 1:
            raise RuntimeError(f"Generator replicas diverged across ranks at step {step}: {replicas}.")
        nonlocal last_good
        last_good = full_state()
        return save(last_good), replicas

    def save(state: dict[str, Any]) -> Optional[Path]:
        if not dist.is_main():
            return None
        ckpt_dir = work_dir / f"snapshot-{step:07d}"
        checkpoint.save(state, ckpt_dir / checkpoint.FILENAME)
        for old in work_dir.glob("snapshot-*"):
            if old != ckpt_dir:
                shutil.rmtree(old, ignore_errors=True)
        return ckpt_dir

    n_images, n_critic = len(dataset), cfg.n_critic
    interval: dict[str, list[float]] = defaultdict(list)
    last_log_step = step
    bar = tqdm(total=train.steps, initial=step, desc="train", unit="step", disable=not (progress and dist.is_main()))
    while step < train.steps:
        seed_step(step_seed(train.seed, rank, world, step), device)

        # Update D (n_critic times); the last batch of samples keeps G's graph for G's update.
        for critic_step in range(n_critic):
            indices = batch_indices(step * n_critic + critic_step, n_images, batch, train.seed, rank, world)
            real = dataset.batch(indices).to(device, memory_format=memory_format)
            last = critic_step == n_critic - 1
            fake = generate(G_train if last else G, torch.randn(batch, cfg.model.z_dim, device=device), precision, grad=last)
            d_stats = discriminator_step(D_train, opt_d, loss, real, fake, D_plain=D, precision=precision,
                                         augment=augment, r1_weight=cfg.loss.r1_weight)
            for key, value in d_stats.items():
                interval[key].append(value)
            interval["worker_batch"].append(real.shape[0])

        # Update G.
        g_stats = generator_step(G_train, D, opt_g, loss, fake, precision=precision, augment=augment)
        update_ema(G_ema, G, train.ema_decay)
        step += 1
        bar.update(1)
        for key, value in g_stats.items():
            interval[key].append(value)

        # Log (and score, and diagnose).
        stop = False
        scored = bool(train.fid_every) and step % train.fid_every == 0
        if step % train.log_every == 0 or step == train.steps or scored:
            metrics = dist.mean_over_ranks({key: float(np.mean(values)) for key, values in interval.items()})
            metrics["global_batch"] = metrics.pop("worker_batch") * world  # real images per D update, all ranks
            interval.clear()
            if augment.ops:  # ADA's controller sees the same rank-averaged E[sign(D(real))] on every rank
                augment.adapt(metrics["d_real_sign"], (step - last_log_step) * batch * world * n_critic)
                metrics["augment_p"] = augment.p
            last_log_step = step
            broken = sorted(key for key, value in metrics.items() if not math.isfinite(value))
            if not broken and scored:  # (the metrics are equal on every rank: with broken ones, every rank stops below)
                sync_generator_buffers()
                if score is not None and dist.is_main():
                    metrics.update(score(G_ema))
                    if best is None or metrics["fid"] < best["fid"]:
                        best = {"step": step, "fid": metrics["fid"], "G_ema": cpu_state_dict(G_ema)}
            history.append({"step": step, **metrics})
            found = {diagnosis.name: diagnosis for diagnosis in diagnose(history)}  # (mode collapse: main rank only)
            for name in found.keys() - diagnosed.keys():
                if dist.is_main():
                    tqdm.write(f"[train] diagnosis: {found[name].sentence()}")
            diagnosed.update(found)
            bar.set_postfix({key: f"{metrics[key]:.3f}" for key in ("d_loss", "g_loss", "fid") if key in metrics})
            if log is not None and dist.is_main():
                log({**metrics, **{f"diagnosis/{name}": float(name in found) for name in DIAGNOSES.names()}}, step)
            halt = sorted(name for name in found if name in train.stop_on)
            if broken and "divergence" not in halt:  # NaN weights cannot train on
                if report is not None:
                    report({**metrics, "fid": math.inf, "diverged": 1.0}, step, None)
                raise TrainingDiverged(f"Training diverged at step {step} ({', '.join(broken)} not finite); "
                                       "lower optim.lr_d / optim.lr_g or change loss.name.")
            stop = bool(dist.mean_over_ranks({"stop": float(bool(halt or (should_stop and should_stop())))})["stop"] > 0)
            if halt:
                stopped_by = halt

        # Snapshot.
        if stopped_by and "divergence" in stopped_by:  # the weights are broken: keep the last good ones
            now = full_state()
            final = {**last_good, **{key: now[key] for key in ("history", "diagnosis", "stopped_by")}}
            ckpt_dir = save(final)
            if report is not None:
                report({**history[-1], "fid": math.inf, "diverged": 1.0, "stopped_by": ",".join(stopped_by)}, step, ckpt_dir)
            bar.close()
            return final
        if step % train.snapshot_every == 0 or step == train.steps or stop:
            ckpt_dir, replicas = snapshot()
            if report is not None:
                extra = {"fid": math.inf, "stopped_by": ",".join(stopped_by)} if stopped_by else {}
                report({**(history[-1] if history else {}), **extra, "replica_fingerprints": replicas}, step, ckpt_dir)
        if stop:
            break
    bar.close()
    return full_state()
