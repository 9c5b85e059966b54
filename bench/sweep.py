"""What the sweep costs and what ASHA saves, on the default sweep (params.yaml) and the prepared data.

Prints, all measured in one run on the machine it runs on:

1. **Tune's overhead per trial**: each of the first ``--overhead-trials`` grid points runs as a one-trial
   Tune sweep and as the same Train run outside Tune, the two alternating (which goes first alternates too)
   in one Ray session after an untimed warm-up Train run (a session's first Train run pays one-time costs
   of several seconds), so a drift in the shared machine's speed lands on both sides alike;
   overhead = (Σ trial walls, from Tune starting each trial to Tune seeing it end − Σ Train walls) / trials,
   and as a share of a trial's wall: (Σ trial walls − Σ Train walls) / Σ trial walls;
   also with Tune's experiment start-up (its trial actor included): (Σ sweep walls − Σ Train walls) / trials.
2. **ASHA against the full grid**: the default sweep (ASHA) and the same grid with FIFO, each as the stage
   runs it; the trial-steps each used, the fraction ASHA saved, and whether both picked the same winner.

Needs ``dvc repro reference`` first (data/prepared and data/reference.npz). Outputs go to bench/out/sweep/.

    python bench/sweep.py                 # about 10 minutes on 2 cores
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

import torch

from pipeline import sweep as sweep_stage
from pipeline.params import Params, load_params
from pipeline.ray_runtime import training as ray_training
from pipeline.ray_runtime import tuning
from pipeline.ray_runtime.cluster import clear_run, ray_session
from pipeline.sweep_space import trial_config
from pipeline.sweep_trial import run_trial
from pipeline.worker import train_func_per_worker

OUT = Path("bench/out/sweep")


def with_outputs(params: Params, name: str, **sweep) -> Params:
    """``params`` writing under bench/out/sweep/<name>/ with ``sweep`` overrides."""
    root = OUT / name
    paths = dataclasses.replace(
        params.paths,
        sweep_best=str(root / "best.yaml"),
        sweep_trials=str(root / "trials.csv"),
        sweep_metrics=str(root / "sweep.json"),
        sweep_plots=str(root / "plots"),
    )
    ray_cfg = dataclasses.replace(params.ray, storage_path=str((root / "ray").resolve()))
    return dataclasses.replace(params, paths=paths, ray=ray_cfg, sweep=dataclasses.replace(params.sweep, **sweep))


def tune_overhead(params: Params, trials: int, steps: int | None = None) -> dict[str, float]:
    """Per-trial wall of a one-at-a-time Tune sweep minus the same Train runs outside Tune.

    ``steps`` shortens every run alike (Tune's cost per trial does not grow with the steps), so more trials fit.
    """
    if steps:
        params = dataclasses.replace(params, sweep=dataclasses.replace(params.sweep, steps=steps))
    points = sweep_stage.grid_points(params.sweep, params.gan)[:trials]
    params = with_outputs(params, "overhead", scheduler="fifo", max_concurrent=1)
    ray_cfg = sweep_stage.trial_ray_config(params)
    constants = {
        "base": params.gan,
        "sweep": params.sweep,
        "ray_cfg": ray_cfg,
        "prepared": str(Path(params.paths.prepared).resolve()),
        "reference": str(Path(params.paths.reference).resolve()),
    }

    def plain_run(point: dict, name: str) -> float:
        """Seconds of ``point``'s Train run outside Tune (under a storage of its own)."""
        loop_config = {
            **{k: constants[k] for k in ("prepared", "reference")},
            "live_dir": None,
            "cfg": trial_config(params.gan, params.sweep, point),
        }
        plain_cfg = dataclasses.replace(ray_cfg, storage_path=ray_cfg.storage_path + "-plain")
        clear_run(plain_cfg.storage_path, name)  # Ray would restore an earlier bench's finished run
        started = time.perf_counter()
        ray_training.make_trainer(train_func_per_worker, loop_config, plain_cfg, name=name).fit()
        return time.perf_counter() - started

    def tune_run(point: dict) -> tuple[float, float]:
        """Seconds of ``point`` as a one-trial Tune sweep: the trial (as Tune saw it) and the whole sweep."""
        started = time.perf_counter()
        space = tuning.search_space(dataclasses.replace(params.sweep, search="grid"), [point])
        (outcome,) = tuning.run_sweep(
            run_trial,
            space,
            ray_cfg,
            constants=constants,
            metric=params.sweep.metric,
            mode="min",
            max_concurrent=1,
            scheduler=None,
            num_samples=1,
            seed=0,
            resume=False,
            label=sweep_stage.label,
        )
        return outcome.wall_s, time.perf_counter() - started

    trial_walls, tune_walls, plain_walls = [], [], []
    with ray_session(ray_cfg, dashboard=True):
        print(f"[bench] warm-up Train run (not timed): {plain_run(points[0], 'warm-up'):.1f} s", flush=True)
        for index, point in enumerate(points):
            for side in ("plain", "tune") if index % 2 == 0 else ("tune", "plain"):
                if side == "plain":
                    plain_walls.append(plain_run(point, f"plain-{index}"))
                else:
                    trial_wall, tune_wall = tune_run(point)
                    trial_walls.append(trial_wall)
                    tune_walls.append(tune_wall)
            print(
                f"[bench] {sweep_stage.label(point)}: outside Tune {plain_walls[-1]:.1f} s, as a trial {trial_walls[-1]:.1f} s "
                f"({trial_walls[-1] - plain_walls[-1]:+.1f}), its sweep {tune_walls[-1]:.1f} s",
                flush=True,
            )
    tune_wall = sum(tune_walls)
    return {
        "tune_wall": tune_wall,
        "plain_wall": sum(plain_walls),
        "per_trial": (tune_wall - sum(plain_walls)) / len(points),
        "trial_wall": sum(trial_walls),
        "trial_overhead": (sum(trial_walls) - sum(plain_walls)) / len(points),
        "share": (sum(trial_walls) - sum(plain_walls)) / sum(trial_walls),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--overhead-trials", type=int, default=2, help="grid points timed with and without Tune")
    parser.add_argument(
        "--overhead-steps", type=int, default=None, help="steps of each timed run (default: sweep.steps)"
    )
    parser.add_argument("--overhead-only", action="store_true", help="skip the ASHA and full-grid sweeps")
    args = parser.parse_args()
    params = load_params()
    print(
        f"[bench] device: cpu ({torch.get_num_threads()} threads); sweep: {len(sweep_stage.grid_points(params.sweep, params.gan))} "
        f"trials, {params.sweep.steps} steps each, FID at steps {list(params.sweep.report_steps())}",
        flush=True,
    )

    overhead = tune_overhead(params, args.overhead_trials, args.overhead_steps)
    print(
        f"[bench] Tune: {overhead['tune_wall']:.1f} s in all, trials {overhead['trial_wall']:.1f} s (start to end as Tune saw them); "
        f"outside Tune {overhead['plain_wall']:.1f} s",
        flush=True,
    )
    if args.overhead_only:
        print(
            f"| {args.overhead_trials} trials of {args.overhead_steps or params.sweep.steps} steps: "
            f"**Tune's overhead per trial** (trial start to end) | **{overhead['trial_overhead']:.1f} s, "
            f"{100 * overhead['share']:.1f} % of a trial's wall** |"
        )
        print(
            f"| a one-trial sweep's overhead (experiment start-up and trial actor included) | {overhead['per_trial']:.1f} s |"
        )
        return
    results = {}
    for scheduler in ("asha", "fifo"):
        started = time.perf_counter()
        metrics = sweep_stage.run(with_outputs(params, scheduler, scheduler=scheduler))
        results[scheduler] = {**metrics, "wall": time.perf_counter() - started}

    asha, fifo = results["asha"], results["fifo"]
    print("\n| measure | value |\n|---|---|")
    print(f"| {args.overhead_trials} one-trial Tune sweeps: wall | {overhead['tune_wall']:.1f} s |")
    print(f"| the same Train runs outside Tune | {overhead['plain_wall']:.1f} s |")
    print(f"| the same trials from Tune's start to end of each | {overhead['trial_wall']:.1f} s |")
    print(
        f"| **Tune's overhead per trial** (trial start to end) | **{overhead['trial_overhead']:.1f} s, "
        f"{100 * overhead['share']:.1f} % of a trial's wall** |"
    )
    print(
        f"| a one-trial sweep's overhead (experiment start-up and trial actor included) | {overhead['per_trial']:.1f} s |"
    )
    print(f"| full grid (FIFO): trial-steps, wall | {fifo['trial_steps']}, {fifo['wall']:.0f} s |")
    print(
        f"| ASHA: trial-steps, wall, stopped early | {asha['trial_steps']}, {asha['wall']:.0f} s, {asha['stopped']} of {asha['trials']} |"
    )
    print(f"| **trial-steps ASHA saved** | **{100 * (1 - asha['trial_steps'] / fifo['trial_steps']):.0f} %** |")
    same = asha["best"]["loss"] == fifo["best"]["loss"] and asha["best"]["ttur_ratio"] == fifo["best"]["ttur_ratio"]
    print(
        f"| winner: ASHA / full grid | {asha['best']['loss']} ×{asha['best']['ttur_ratio']:g} (FID {asha['best_fid']:.1f}) / "
        f"{fifo['best']['loss']} ×{fifo['best']['ttur_ratio']:g} (FID {fifo['best_fid']:.1f}): **{'same' if same else 'different'}** |"
    )


if __name__ == "__main__":
    main()
