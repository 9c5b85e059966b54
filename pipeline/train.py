"""Stage ``train``: the GAN loop on a Ray Train TorchTrainer (local Ray by default, or ``ray.address``).

Writes the final full-state checkpoint to ``paths.train/checkpoint.pt``, the resolved config and the
replicas' fingerprints to ``paths.train/run.json``, and per-step metrics to ``paths.train_live`` (DVCLive).
Ray keeps its own checkpoints under ``ray.storage_path``; with ``train.resume: true`` the run continues
from the latest of them, otherwise it starts fresh.
"""

from __future__ import annotations

import dataclasses
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch

from gans import checkpoint
from gans.config import GANConfig
from gans.data import PreparedDataset
from gans.loop import check_config, fit
from pipeline.ray_runtime import training as ray_training
from pipeline.live import LiveLog
from pipeline.params import Params, load_params, print_config, run_stage, write_json


def train_func_per_worker(config: dict[str, Any]) -> None:
    """Runs on every Ray Train worker: ``gans.loop.fit`` with DVCLive on rank 0 and snapshots reported to Ray."""
    cfg: GANConfig = config["cfg"]
    # Match torch's thread pool to the CPUs Ray reserved: oversubscribed cores slow DDP on CPU several-fold.
    torch.set_num_threads(config["threads"])
    dataset = PreparedDataset(config["prepared"])
    rank = ray_training.worker_rank()
    with ray_training.restored_checkpoint() as directory:
        resume_state = None if directory is None else checkpoint.load(directory)
    if resume_state is not None and rank == 0:
        print(f"[train] resuming from step {resume_state['step']}", flush=True)

    log = LiveLog(config["live_dir"], cfg.train.steps, resume=resume_state is not None) if rank == 0 else None
    try:
        with tempfile.TemporaryDirectory(prefix="gan-snapshots-") as work_dir:
            fit(cfg, dataset, work_dir=work_dir, device=ray_training.worker_device(), resume=resume_state,
                log=log, report=ray_training.report)
    finally:
        if log is not None:
            log.close()


def run(params: Params) -> Path:
    """Train with Ray; return the path of the final checkpoint in ``paths.train``."""
    live_dir = Path(params.paths.train_live).resolve()
    if not params.gan.train.resume:
        shutil.rmtree(live_dir, ignore_errors=True)
    target = Path(params.paths.train) / checkpoint.FILENAME
    loop_config = {"cfg": params.gan, "prepared": str(Path(params.paths.prepared).resolve()), "live_dir": str(live_dir)}
    metrics = ray_training.train(train_func_per_worker, loop_config, params.ray, resume=params.gan.train.resume,
                                checkpoint_file=checkpoint.FILENAME, target=target)
    replicas = list(metrics.get("replica_fingerprints", []))
    write_json(Path(params.paths.train) / "run.json", {
        "config": params.gan.to_dict(),
        "ray": dataclasses.asdict(params.ray),
        "workers": len(replicas),
        "replica_fingerprints": replicas,
    })
    print(f"[train] final checkpoint → {target}", flush=True)
    return target


def main() -> None:
    params = load_params()
    check_config(params.gan)  # before Ray starts: a bad model or loss name fails in a second, not after start-up
    print_config("train", params.gan)
    run(params)


if __name__ == "__main__":
    run_stage("train", main)
