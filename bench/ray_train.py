"""Ray Train's cost: the train stage's Ray path against ``fit`` in a plain process, at the same global batch.

Trains the default config (params.yaml's model, loss and global batch, 32 px LFW faces) three ways in one
run: ``fit`` in this process on 2 threads; through the train stage's Ray path (``ray_runtime.training``, the
same worker function shape) on 1 worker holding every CPU (``ray.num_workers: auto`` on a local Ray); and on
2 DDP workers of 1 CPU each, each taking half of the global batch. Each Ray run starts a fresh Ray instance.

The three alternate, ``--rounds`` times, so a noisy neighbour on the shared machine slows all alike; each
run has the machine to itself. Prints each one's steady training speed (steps/s from the first log step after
``--warmup`` steps to the last, median over rounds), the ratios to the plain process with each round's, and
the time from the stage's start to the training loop running on the workers (Ray start-up, worker group,
precision choice, model build).

``--ceiling`` also runs, each round, the ceiling of any 2-process split: two independent 1-thread processes
side by side, half the batch each, with no process group. DDP moves in lock step, so its steps/s cannot beat
the slower of the two.

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
        fit(
            config["cfg"],
            PreparedDataset(config["prepared"]),
            work_dir=work_dir,
            device=ray_training.worker_device(),
            log=clock,
            report=ray_training.report,
        )
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


def ray_speed(cfg: GANConfig, prepared: Path, work_dir: Path, warmup: int, ray_cfg: RayConfig) -> tuple[float, float]:
    """Steps/s of the same loop on Ray workers (``ray_cfg``), and seconds from the stage's start to their loop."""
    ray_cfg = dataclasses.replace(ray_cfg, storage_path=str(work_dir / "ray"))
    out = work_dir / "clock.json"
    stage_started = time.time()
    ray_training.train(
        worker,
        {"cfg": cfg, "prepared": str(prepared), "out": str(out)},
        ray_cfg,
        resume=False,
        checkpoint_file="checkpoint.pt",
        target=work_dir / "final.pt",
    )
    record = json.loads(out.read_text())
    clock = StepClock()
    clock.times = [tuple(row) for row in record["times"]]
    return clock.steps_per_second(warmup), record["loop_started"] - stage_started


RAY_LAYOUTS = {
    "1 Ray worker × all CPUs": RayConfig(num_workers="auto"),
    "2 Ray workers × 1 CPU (DDP)": RayConfig(num_workers=2, cpus_per_worker=1),
}


def _rounds(values: list[float]) -> str:
    return " ".join(f"{value:.2f}" for value in values)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--rounds", type=int, default=3, help="local and Ray runs, alternating")
    parser.add_argument("--warmup", type=int, default=100, help="steps not timed at the start of each run")
    parser.add_argument("--batch-size", type=int, default=None, help="global batch (default: params.yaml's)")
    parser.add_argument("--ceiling", action="store_true", help="also time two independent 1-thread processes")
    args = parser.parse_args()

    base = GANConfig()
    batch = args.batch_size or base.train.batch_size
    if args.steps < args.warmup + 4 * base.train.log_every:
        parser.error(f"--steps must exceed --warmup by at least 4 log steps ({4 * base.train.log_every}).")
    train = dataclasses.replace(base.train, steps=args.steps, snapshot_every=args.steps, fid_every=0, batch_size=batch)
    cfg = dataclasses.replace(base, train=train)
    images, _, _ = prepare_images(base.data, progress=False)
    work = Path(tempfile.mkdtemp(prefix="bench-ray-"))
    prepared = write_prepared(work / "data", images, {})

    local: list[float] = []
    on_ray: dict[str, list[float]] = {name: [] for name in RAY_LAYOUTS}
    start_up: dict[str, list[float]] = {name: [] for name in RAY_LAYOUTS}
    pairs: list[list[float]] = []
    half = dataclasses.replace(cfg, train=dataclasses.replace(train, batch_size=batch // 2))
    for round_index in range(args.rounds):
        local.append(local_speed(cfg, prepared, work / f"local-{round_index}", args.warmup))
        line = f"[bench] round {round_index + 1}: one process {local[-1]:.2f} steps/s"
        for index, (name, ray_cfg) in enumerate(RAY_LAYOUTS.items()):
            speed, seconds = ray_speed(cfg, prepared, work / f"ray{index}-{round_index}", args.warmup, ray_cfg)
            on_ray[name].append(speed)
            start_up[name].append(seconds)
            line += f"; {name} {speed:.2f} (×{speed / local[-1]:.2f})"
        if args.ceiling:
            pairs.append(sorted(side_by_side_speeds(half, prepared, work / f"pair-{round_index}", args.warmup)))
            line += f"; two independent processes {pairs[-1][0]:.2f} and {pairs[-1][1]:.2f}"
        print(line, flush=True)

    print(
        f"device cpu, {torch.get_num_threads()} threads in this process; model {base.model.name} "
        f"{base.data.resolution} px width {base.model.g_width}; {args.steps} steps (first {args.warmup} untimed), "
        f"global batch {batch}, {args.rounds} rounds; medians"
    )
    print(f"{'layout':<30} {'steps/s':>8} {'× process':>10} {'start-up s':>11}  rounds (× process)")
    print(f"{'1 process × 2 threads':<30} {statistics.median(local):8.2f} {1:10.2f} {'-':>11}")
    for name in RAY_LAYOUTS:
        ratios = [ray_speed / base for ray_speed, base in zip(on_ray[name], local)]
        print(
            f"{name:<30} {statistics.median(on_ray[name]):8.2f} {statistics.median(ratios):10.2f} "
            f"{statistics.median(start_up[name]):11.1f}  {_rounds(ratios)}"
        )
    if args.ceiling:
        ceilings = [slower / base for (slower, _), base in zip(pairs, local)]
        print(
            f"ceiling of lock-step DDP (slower of two independent 1-thread processes / one process): "
            f"{statistics.median(ceilings):.2f} (rounds: {_rounds(ceilings)})"
        )


if __name__ == "__main__":
    main()
