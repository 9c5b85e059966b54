"""Ray Train's cost: 2 DDP workers × 1 thread against 1 process × 2 threads, at the same global batch.

Trains the default config (params.yaml's model and loss, 32 px LFW faces) twice in one run: with ``fit``
in this process on 2 threads and batch 2B, and through the train stage's Ray path (``ray_runtime.training``,
the same worker function shape) on 2 workers of 1 CPU with batch B each. Prints each one's steady
training speed (steps/s between the first and the last log step), their ratio, and the time from the
stage's start to the training loop running on the workers (Ray start-up, worker group, model build).

    python bench/ray_train.py --steps 400
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from gans.config import GANConfig
from gans.data import PreparedDataset, write_prepared
from gans.loop import fit
from gans.prepare.stream import prepare_images
from pipeline.params import RayConfig
from pipeline.ray_runtime import training as ray_training


class StepClock:
    """A ``log`` callback that records when each log step was reached."""

    def __init__(self) -> None:
        self.times: list[tuple[int, float]] = []

    def __call__(self, metrics: dict[str, float], step: int) -> None:
        self.times.append((step, time.time()))

    def steps_per_second(self) -> float:
        (first_step, first), (last_step, last) = self.times[0], self.times[-1]
        return (last_step - first_step) / (last - first)


def worker(config: dict[str, Any]) -> None:
    """Ray worker: the train stage's loop without DVCLive; rank 0 writes its clock to ``config['out']``."""
    torch.set_num_threads(config["threads"])
    started = time.time()
    clock = StepClock()
    with tempfile.TemporaryDirectory() as work_dir:
        fit(config["cfg"], PreparedDataset(config["prepared"]), work_dir=work_dir, device=ray_training.worker_device(),
            log=clock, report=ray_training.report)
    if ray_training.worker_rank() == 0:
        Path(config["out"]).write_text(json.dumps({"loop_started": started, "times": clock.times}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--batch-size", type=int, default=None, help="per Ray worker (default: params.yaml's)")
    args = parser.parse_args()

    base = GANConfig()
    batch = args.batch_size or base.train.batch_size
    train = dataclasses.replace(base.train, steps=args.steps, snapshot_every=args.steps, log_every=25)
    images, _, _ = prepare_images(base.data, progress=False)
    work = Path(tempfile.mkdtemp(prefix="bench-ray-"))
    prepared = write_prepared(work / "data", images, {})

    # 1 process × 2 threads, global batch 2B.
    torch.set_num_threads(2)
    local_clock = StepClock()
    cfg_local = dataclasses.replace(base, train=dataclasses.replace(train, batch_size=2 * batch))
    fit(cfg_local, PreparedDataset(prepared), work_dir=work / "local", log=local_clock)
    local = local_clock.steps_per_second()

    # 2 Ray workers × 1 thread, batch B each.
    cfg_ray = dataclasses.replace(base, train=dataclasses.replace(train, batch_size=batch))
    ray_cfg = RayConfig(num_workers=2, cpus_per_worker=1, storage_path=str(work / "ray"))
    out = work / "clock.json"
    stage_started = time.time()
    ray_training.train(worker, {"cfg": cfg_ray, "prepared": str(prepared), "out": str(out)}, ray_cfg,
                       resume=False, checkpoint_file="checkpoint.pt", target=work / "final.pt")
    record = json.loads(out.read_text())
    clock = StepClock()
    clock.times = [tuple(row) for row in record["times"]]
    on_ray = clock.steps_per_second()

    print(f"device cpu, {torch.get_num_threads()} threads in this process; model {base.model.name} "
          f"{base.data.resolution} px width {base.model.g_width}; {args.steps} steps, global batch {2 * batch}")
    print(f"1 process × 2 threads, batch {2 * batch}:   {local:6.2f} steps/s")
    print(f"2 Ray workers × 1 thread, batch {batch}: {on_ray:6.2f} steps/s")
    print(f"ratio (Ray / one process): {on_ray / local:.2f}")
    print(f"stage start → training loop running on the workers: {record['loop_started'] - stage_started:.1f} s")


if __name__ == "__main__":
    main()
