"""Stage ``train``: the GAN loop on a Ray Train TorchTrainer (local Ray by default, or ``ray.address``).

Trains params.yaml's run with the sweep winner's overrides applied (``paths.sweep_best``, empty when the
sweep is off). Writes the final full-state checkpoint (which also holds the G_ema weights with the best
in-training FID) to ``paths.train/checkpoint.pt``, the resolved config, the sweep trial and the replicas'
fingerprints to ``paths.train/run.json``, and per-step metrics to ``paths.train_live`` (DVCLive).
Ray keeps its own checkpoints under ``ray.storage_path``; with ``train.resume: true`` the run continues
from the latest of them, otherwise it starts fresh.
"""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

from gans import checkpoint
from gans.loop import check_config, stop_message
from pipeline.params import TRAIN_RUN_FILE, Params, load_params, print_config, run_stage, sweep_winner, write_json
from pipeline.ray_runtime import training as ray_training
from pipeline.worker import train_func_per_worker


def run(params: Params) -> Path:
    """Train with Ray; return the path of the final checkpoint in ``paths.train``."""
    live_dir = Path(params.paths.train_live).resolve()
    if not params.gan.train.resume:
        shutil.rmtree(live_dir, ignore_errors=True)
    target = Path(params.paths.train) / checkpoint.FILENAME
    reference = Path(params.paths.reference)
    loop_config = {
        "cfg": params.gan,
        "prepared": str(Path(params.paths.prepared).resolve()),
        "reference": str(reference.resolve()) if params.gan.train.scored and reference.is_file() else None,
        "live_dir": str(live_dir),
    }
    metrics = ray_training.train(
        train_func_per_worker,
        loop_config,
        params.ray,
        resume=params.gan.train.resume,
        checkpoint_file=checkpoint.FILENAME,
        target=target,
    )
    message = stop_message(metrics)
    if message:
        kept = " It keeps the weights of the last good snapshot." if "divergence" in metrics["stopped_by"] else ""
        print(f"[train] {message}{kept}", flush=True)
    replicas = list(metrics.get("replica_fingerprints", []))
    decision = checkpoint.load(target).get("precision")
    write_json(
        Path(params.paths.train) / TRAIN_RUN_FILE,
        {
            "config": params.gan.to_dict(),
            "from_sweep": list(params.from_sweep),
            "sweep_trial": sweep_winner(params),
            "ray": dataclasses.asdict(params.ray),
            "workers": len(replicas),
            "precision": decision,
            "replica_fingerprints": replicas,
        },
    )
    print(f"[train] final checkpoint → {target}", flush=True)
    return target


def main() -> None:
    params = load_params(with_sweep_winner=True)
    check_config(params.gan)  # before Ray starts: a bad model or loss name fails in a second, not after start-up
    print_config("train", params.gan)
    if params.from_sweep:
        swept = {key: _value(params, key) for key in params.from_sweep}
        print(
            f"[train] from the sweep winner ({params.paths.sweep_best}): "
            + ", ".join(f"{key}={value}" for key, value in swept.items()),
            flush=True,
        )
    else:
        print("[train] no sweep winner: params.yaml as it is", flush=True)
    run(params)


def _value(params: Params, dotted: str):
    section, key = dotted.split(".", 1)
    return getattr(getattr(params.gan, section), key)


if __name__ == "__main__":
    run_stage("train", main)
