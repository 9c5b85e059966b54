"""What the sweep costs and what ASHA saves, on the default sweep (params.yaml) and the prepared data.

Prints, all measured in one run on the machine it runs on:

1. **Tune's overhead per trial**: the first ``--overhead-trials`` grid points (default: all) run as one Tune
   sweep, one trial at a time as the stage runs them, and as the same runs outside Tune, the two blocks
   alternating over ``--overhead-rounds`` rounds (which goes first alternates too) in one Ray session after
   an untimed warm-up run outside Tune (it pays the one-time costs of this process), so a drift in the shared
   machine's speed lands on both sides alike. Outside Tune, a trial of one worker (which trains in its
   trial's own process, reused by the next trial) is ``fit_with_ray`` in this process, reporting nowhere; a
   trial of several workers is the same Train run. The first trial's new process, its Inception load and
   every checkpoint handed to Tune therefore count as Tune's;
   overhead = (Σ trial walls, from Tune starting each trial to Tune seeing it end − Σ walls outside Tune) /
   trials, and as a share of a trial's wall: (Σ trial walls − Σ walls outside Tune) / Σ trial walls;
   also with Tune's experiment start-up (its trial actor included): (Σ sweep walls − Σ walls outside Tune) / trials.
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
from pipeline.params import Params, RayConfig, load_params
from pipeline.ray_runtime import training as ray_training
from pipeline.ray_runtime import trial, tuning
from pipeline.ray_runtime.cluster import clear_run, ray_session
from pipeline.sweep_space import trial_config
from pipeline.sweep_trial import run_trial
from pipeline.worker import fit_with_ray, train_func_per_worker

OUT = Path("bench/out/sweep")


def outside_tune(ray_cfg: RayConfig) -> ray_training.WorkerView:
    """A one-worker trial's run as this process sees it outside Tune: rank 0 on the trial's device, a fresh
    start, its reports kept nowhere."""
    device = torch.device("cuda" if ray_cfg.use_gpu else "cpu")
    return ray_training.WorkerView(
        rank=lambda: 0,
        device=lambda: device,
        restored_checkpoint=lambda: ray_training.checkpoint_directory(None),
        report=lambda metrics, step, ckpt_dir: None,
    )


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


def tune_overhead(params: Params, trials: int | None, steps: int | None = None, rounds: int = 2) -> dict[str, float]:
    """Per-trial wall of a one-at-a-time Tune sweep of the first ``trials`` grid points (None: all) minus the same
    runs outside Tune, over ``rounds`` rounds.

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
        """Seconds of ``point``'s run outside Tune: in this process (a one-worker trial trains in its own
        process), or the same Train run (a trial of several workers; under a storage of its own)."""
        loop_config = {
            **{k: constants[k] for k in ("prepared", "reference")},
            "live_dir": None,
            "cfg": trial_config(params.gan, params.sweep, point),
        }
        started = time.perf_counter()
        if trial.trains_in_trial(ray_cfg):
            fit_with_ray({**loop_config, "threads": ray_training.worker_threads(ray_cfg)}, outside_tune(ray_cfg))
        else:
            plain_cfg = dataclasses.replace(ray_cfg, storage_path=ray_cfg.storage_path + "-plain")
            clear_run(plain_cfg.storage_path, name)  # Ray would restore an earlier bench's finished run
            ray_training.make_trainer(train_func_per_worker, loop_config, plain_cfg, name=name).fit()
        return time.perf_counter() - started

    def tune_sweep(name: str) -> tuple[list[float], float]:
        """Seconds of the points as one Tune sweep, one trial at a time: each trial (as Tune saw it, in the order
        of ``points``) and the whole sweep."""
        started = time.perf_counter()
        space = tuning.search_space(dataclasses.replace(params.sweep, search="grid"), points)
        outcomes = tuning.run_sweep(
            run_trial,
            space,
            dataclasses.replace(ray_cfg, storage_path=f"{ray_cfg.storage_path}/{name}"),
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
        walls = {sweep_stage.label(outcome.point): outcome.wall_s for outcome in outcomes}
        return [walls[sweep_stage.label(point)] for point in points], time.perf_counter() - started

    trial_walls, tune_walls, plain_walls = [], [], []
    with ray_session(ray_cfg, dashboard=True):
        print(f"[bench] warm-up run outside Tune (not timed): {plain_run(points[0], 'warm-up'):.1f} s", flush=True)
        for round_ in range(rounds):
            for side in ("plain", "tune") if round_ % 2 == 0 else ("tune", "plain"):
                if side == "plain":
                    plain = [plain_run(point, f"plain-{round_}-{index}") for index, point in enumerate(points)]
                    plain_walls += plain
                else:
                    trials_s, sweep_s = tune_sweep(f"round-{round_}")
                    trial_walls += trials_s
                    tune_walls.append(sweep_s)
            for point, outside, inside in zip(points, plain, trials_s):
                print(
                    f"[bench] round {round_ + 1}, {sweep_stage.label(point)}: outside Tune {outside:.1f} s, "
                    f"as a trial {inside:.1f} s ({inside - outside:+.1f})",
                    flush=True,
                )
            print(f"[bench] round {round_ + 1}: the sweep {sweep_s:.1f} s, the runs outside Tune {sum(plain):.1f} s")
    runs = rounds * len(points)
    return {
        "trials": len(points),
        "rounds": rounds,
        "tune_wall": sum(tune_walls),
        "plain_wall": sum(plain_walls),
        "per_trial": (sum(tune_walls) - sum(plain_walls)) / runs,
        "trial_wall": sum(trial_walls),
        "trial_overhead": (sum(trial_walls) - sum(plain_walls)) / runs,
        "share": (sum(trial_walls) - sum(plain_walls)) / sum(trial_walls),
    }


def overhead_rows(overhead: dict[str, float], steps: int) -> str:
    """``tune_overhead``'s figures as rows of a Markdown table."""
    return "\n".join(
        [
            f"| {overhead['rounds']} × a Tune sweep of {overhead['trials']} trials of {steps} steps, one at a time: "
            f"wall | {overhead['tune_wall']:.1f} s |",
            f"| the same runs outside Tune | {overhead['plain_wall']:.1f} s |",
            f"| the same trials from Tune's start to end of each | {overhead['trial_wall']:.1f} s |",
            f"| **Tune's overhead per trial** (trial start to end) | **{overhead['trial_overhead']:.1f} s, "
            f"{100 * overhead['share']:.1f} % of a trial's wall** |",
            f"| the same with the sweep's start-up (Ray Tune's, the trial process's) | {overhead['per_trial']:.1f} s |",
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--overhead-trials", type=int, default=None, help="grid points timed with and without Tune (default: all)"
    )
    parser.add_argument("--overhead-rounds", type=int, default=2, help="rounds of the Tune sweep and the runs outside")
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

    overhead = tune_overhead(params, args.overhead_trials, args.overhead_steps, args.overhead_rounds)
    print(
        f"[bench] Tune: {overhead['tune_wall']:.1f} s in all, trials {overhead['trial_wall']:.1f} s (start to end as Tune saw them); "
        f"outside Tune {overhead['plain_wall']:.1f} s",
        flush=True,
    )
    rows = overhead_rows(overhead, args.overhead_steps or params.sweep.steps)
    if args.overhead_only:
        print(f"\n| measure | value |\n|---|---|\n{rows}")
        return
    results = {}
    for scheduler in ("asha", "fifo"):
        started = time.perf_counter()
        metrics = sweep_stage.run(with_outputs(params, scheduler, scheduler=scheduler))
        results[scheduler] = {**metrics, "wall": time.perf_counter() - started}

    asha, fifo = results["asha"], results["fifo"]
    print(f"\n| measure | value |\n|---|---|\n{rows}")
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
