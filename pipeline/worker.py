"""What every training process runs: ``gans.loop.fit``, on a Ray Train worker (the train stage, a sweep trial of
several workers) or in a Tune trial's own process (a sweep trial of one worker).

The loop config (``loop_config`` of ``ray_runtime.training.make_trainer``) holds:
``cfg`` (a ``GANConfig``), ``prepared`` (dataset directory), ``reference`` (Inception statistics for the
in-training FID, or None), ``live_dir`` (DVCLive directory for rank 0, or None) and ``threads``.
"""

from __future__ import annotations

import tempfile
from typing import Any

import torch

from gans import checkpoint
from gans.config import IN_TRAINING_FID_SEED, GANConfig
from gans.data import PreparedDataset
from gans.loop import fit
from pipeline.live import LiveLog
from pipeline.ray_runtime import training as ray_training


def train_func_per_worker(config: dict[str, Any]) -> None:
    """What a Ray Train worker runs: ``fit_with_ray`` as a Train worker sees Ray (Train takes no return value)."""
    ray_training.quiet_report_logs()
    fit_with_ray(config, ray_training.TRAIN_WORKER)


def fit_with_ray(config: dict[str, Any], view: ray_training.WorkerView) -> dict[str, Any]:
    """``gans.loop.fit`` in this process: DVCLive and the in-training FID on rank 0, snapshots reported to Ray.

    ``view`` is how this process sees Ray (a Train worker's, or a Tune trial's); returns ``fit``'s final state."""
    cfg: GANConfig = config["cfg"]
    # Match torch's thread pool to the CPUs Ray reserved: oversubscribed cores slow DDP on CPU several-fold.
    torch.set_num_threads(config["threads"])
    dataset = PreparedDataset(config["prepared"])
    rank = view.rank()
    device = view.device()
    with view.restored_checkpoint() as directory:
        resume_state = None if directory is None else checkpoint.load(directory)
    if resume_state is not None and rank == 0:
        print(f"[train] resuming from step {resume_state['step']}", flush=True)

    score = None
    if rank == 0 and cfg.train.scored and config.get("reference"):
        # Imported here: Inception and torch-fidelity (with torchvision) take about a second to import, which a
        # run that scores nothing (every rank but 0, or no reference) need not pay.
        from gans.metrics import InTrainingFID, load_reference

        score = InTrainingFID(
            load_reference(config["reference"]), cfg.train.fid_samples, seed=IN_TRAINING_FID_SEED, device=device
        )
    log = None
    if rank == 0 and config.get("live_dir"):
        log = LiveLog(config["live_dir"], cfg.train.steps, resume=resume_state is not None)
    try:
        with tempfile.TemporaryDirectory(prefix="gan-snapshots-") as work_dir:
            return fit(
                cfg,
                dataset,
                work_dir=work_dir,
                device=device,
                resume=resume_state,
                log=log,
                report=view.report,
                score=score,
            )
    finally:
        if log is not None:
            log.close()
