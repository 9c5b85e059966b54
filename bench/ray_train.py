"""Ray Train's cost: 2 DDP workers × 1 thread against 1 process × 2 threads, at the same global batch.

Trains the default config (params.yaml's model and loss, 32 px LFW faces) twice in one run: with ``fit``
in this process on 2 threads and batch 2B, and through the train stage's Ray path (``ray_runtime.training``,
the same worker function shape) on 2 workers of 1 CPU with batch B each, a fresh Ray instance each time.

The two alternate, ``--rounds`` times, so a noisy neighbour on the shared machine slows both alike; each
run has the machine to itself (no Ray processes beside the local run). Prints each one's steady training
speed (steps/s from the first log step after ``--warmup`` steps to the last, median over rounds), the
ratio of each round and their median, and the time from the stage's start to the training loop running
on the workers (Ray start-up, worker group, model build).

Each round also runs the ceiling of any 2-process split: two independent 1-thread processes side by side,
batch B each, with no process group (nothing synchronises them). DDP moves in lock step, so its steps/s
cannot beat the slower of the two; where they differ (CPUs of unequal speed, as on a shared VM), that bounds
the ratio whatever Ray or DDP do.

    python bench/ray_train.py --steps 400 --rounds 3
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import multiprocessing
import statistics
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

    def steps_per_second(self, warmup: int = 0) -> float:
        steady = [(step, at) for step, at in self.times if step >= warmup]
        (first_step, first), (last_step, last) = steady[0], steady[-1]
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


def local_speed(cfg: GANConfig, prepared: Path, work_dir: Path, warmup: int, threads: int = 2) -> float:
    """Steps/s of ``fit`` in this process on ``threads`` threads, with no process group."""
    torch.set_num_threads(threads)
    clock = StepClock()
    fit(cfg, PreparedDataset(prepared), work_dir=work_dir, log=clock)
    return clock.steps_per_second(warmup)


def side_by_side_speeds(cfg: GANConfig, prepared: Path, work_dir: Path, warmup: int) -> list[float]:
    """Steps/s of two independent 1-thread ``fit`` runs started together, each in its own process."""
    with multiprocessing.get_context("spawn").Pool(2) as pool:
        return pool.starmap(local_speed, [(cfg, prepared, work_dir / str(index), warmup, 1) for index in range(2)])


def ray_speed(cfg: GANConfig, prepared: Path, work_dir: Path, warmup: int) -> tuple[float, float]:
    """Steps/s of the same loop on 2 Ray workers of 1 CPU, and seconds from the stage's start to their loop."""
    ray_cfg = RayConfig(num_workers=2, cpus_per_worker=1, storage_path=str(work_dir / "ray"))
    out = work_dir / "clock.json"
    stage_started = time.time()
    ray_training.train(worker, {"cfg": cfg, "prepared": str(prepared), "out": str(out)}, ray_cfg,
                       resume=False, checkpoint_file="checkpoint.pt", target=work_dir / "final.pt")
    record = json.loads(out.read_text())
    clock = StepClock()
    clock.times = [tuple(row) for row in record["times"]]
    return clock.steps_per_second(warmup), record["loop_started"] - stage_started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--rounds", type=int, default=3, help="local and Ray runs, alternating")
    parser.add_argument("--warmup", type=int, default=100, help="steps not timed at the start of each run")
    parser.add_argument("--batch-size", type=int, default=None, help="per Ray worker (default: params.yaml's)")
    args = parser.parse_args()

    base = GANConfig()
    batch = args.batch_size or base.train.batch_size
    if args.steps < args.warmup + 4 * base.train.log_every:
        parser.error(f"--steps must exceed --warmup by at least 4 log steps ({4 * base.train.log_every}).")
    train = dataclasses.replace(base.train, steps=args.steps, snapshot_every=args.steps, fid_every=0)
    images, _, _ = prepare_images(base.data, progress=False)
    work = Path(tempfile.mkdtemp(prefix="bench-ray-"))
    prepared = write_prepared(work / "data", images, {})
    cfg_local = dataclasses.replace(base, train=dataclasses.replace(train, batch_size=2 * batch))
    cfg_ray = dataclasses.replace(base, train=dataclasses.replace(train, batch_size=batch))

    local, on_ray, start_up, pairs = [], [], [], []
    for round_index in range(args.rounds):
        local.append(local_speed(cfg_local, prepared, work / f"local-{round_index}", args.warmup))
        speed, seconds = ray_speed(cfg_ray, prepared, work / f"ray-{round_index}", args.warmup)
        on_ray.append(speed)
        start_up.append(seconds)
        pairs.append(sorted(side_by_side_speeds(cfg_ray, prepared, work / f"pair-{round_index}", args.warmup)))
        print(f"[bench] round {round_index + 1}: one process {local[-1]:.2f} steps/s, Ray {speed:.2f} steps/s, "
              f"ratio {speed / local[-1]:.2f}; two independent processes {pairs[-1][0]:.2f} and {pairs[-1][1]:.2f} "
              f"steps/s (slower / one process {pairs[-1][0] / local[-1]:.2f})", flush=True)
    ratios = [r / l for r, l in zip(on_ray, local)]
    ceilings = [slower / l for (slower, _), l in zip(pairs, local)]

    print(f"device cpu, {torch.get_num_threads()} threads in this process; model {base.model.name} "
          f"{base.data.resolution} px width {base.model.g_width}; {args.steps} steps (first {args.warmup} untimed), "
          f"global batch {2 * batch}, {args.rounds} rounds")
    print(f"1 process × 2 threads, batch {2 * batch}:   {statistics.median(local):6.2f} steps/s (median)")
    print(f"2 Ray workers × 1 thread, batch {batch}: {statistics.median(on_ray):6.2f} steps/s (median)")
    print(f"ratio (Ray / one process): {statistics.median(ratios):.2f} (median; rounds: {' '.join(f'{r:.2f}' for r in ratios)})")
    print(f"stage start → training loop running on the workers: {statistics.median(start_up):.1f} s (median)")
    print(f"2 independent processes × 1 thread, batch {batch}, no syncs: slower {statistics.median(p[0] for p in pairs):6.2f}, "
          f"faster {statistics.median(p[1] for p in pairs):6.2f} steps/s (medians)")
    print(f"ceiling of lock-step DDP (slower independent process / one process): {statistics.median(ceilings):.2f} "
          f"(median; rounds: {' '.join(f'{c:.2f}' for c in ceilings)})")


if __name__ == "__main__":
    main()
