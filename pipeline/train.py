"""Stage ``train``: the GAN loop on a Ray Train TorchTrainer (local Ray by default, or ``ray.address``).

Writes the final full-state checkpoint to ``paths.train/checkpoint.pt`` and per-step metrics to
``paths.train_live`` (DVCLive). Ray keeps its own checkpoints under ``ray.storage_path/train``; with
``train.resume: true`` the run continues from the latest of them.
"""

from __future__ import annotations

import math
import os
import shutil
from pathlib import Path
from typing import Optional

import ray

from gans.atomic import atomic_file
from pipeline.params import Params, load_params, print_config, run_stage, write_json
from pipeline.ray_train import RUN_NAME, init_ray, latest_checkpoint_file, make_trainer


def _absolute(path: str) -> str:
    return path if "://" in path else str(Path(path).resolve())


def latest_ray_checkpoint(run_dir: Path) -> Optional[str]:
    """The newest ``checkpoint_*/checkpoint.pt`` of a local Ray Train run, if any."""
    found = sorted(run_dir.glob("checkpoint_*/checkpoint.pt"))
    return str(found[-1]) if found else None


def run(params: Params) -> Path:
    """Train with Ray; return the path of the final checkpoint copied into ``paths.train``."""
    storage = _absolute(params.ray.storage_path)
    resume_from = None
    if "://" not in storage:
        run_dir = Path(storage) / RUN_NAME
        if params.gan.train.resume:
            resume_from = latest_ray_checkpoint(run_dir)
            print(f"[train] resuming from {resume_from}" if resume_from else "[train] nothing to resume; starting fresh")
        else:
            shutil.rmtree(run_dir, ignore_errors=True)  # a DVC run starts from scratch
    live_dir = _absolute(params.paths.train_live)
    if resume_from is None:
        shutil.rmtree(live_dir, ignore_errors=True)

    workers = params.ray.num_workers
    init_ray(params.ray.address, num_cpus=max(os.cpu_count() or 1, math.ceil(workers * params.ray.cpus_per_worker)))
    try:
        trainer = make_trainer(
            params.raw,
            prepared=_absolute(params.paths.prepared),
            live_dir=live_dir,
            storage_path=storage,
            num_workers=workers,
            use_gpu=params.ray.use_gpu,
            cpus_per_worker=params.ray.cpus_per_worker,
            placement_strategy=params.ray.placement_strategy,
            max_failures=params.ray.max_failures,
            resume_from=resume_from,
        )
        result = trainer.fit()
        source = latest_checkpoint_file(result)
        replicas = result.metrics.get("replica_fingerprints", [])
    finally:
        ray.shutdown()

    out_dir = Path(params.paths.train)
    target = out_dir / "checkpoint.pt"
    with atomic_file(target) as tmp:
        shutil.copyfile(source, tmp)
    shutil.rmtree(source.parent, ignore_errors=True)  # the temporary copy made by latest_checkpoint_file
    write_json(out_dir / "run.json", {"params": params.raw, "workers": len(replicas), "replica_fingerprints": replicas})
    print(f"[train] final checkpoint → {target}", flush=True)
    return target


def main() -> None:
    params = load_params()
    print_config("train", params.gan)
    run(params)


if __name__ == "__main__":
    run_stage("train", main)
