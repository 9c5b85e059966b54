"""Stage ``sweep``: Ray Tune searches TTUR ratios × losses (× models); the winner's settings go to ``train``.

Each trial is a short Ray Train run (``sweep.steps``, ``sweep.workers_per_trial`` DDP workers) that scores
its EMA generator's FID every ``sweep.fid_every`` steps (fast extractor, ``train.fid_samples`` images) and
reports it to Tune; ASHA stops the weak trials at rungs in steps; a trial whose losses turn NaN/inf fails
and the sweep goes on. Writes:

- ``paths.sweep_trials`` (CSV): one row per trial, swept and resolved values, the FID at every report,
  steps run, status (completed, stopped, failed), wall time, seed;
- ``paths.sweep_metrics`` (DVC metrics): best FID and params, trials by status, trial-steps used;
- ``paths.sweep_plots``: FID against step per trial and the best FID by ratio × loss (PNG), the curves as CSV;
- ``paths.sweep_best``: the winner's overrides of params.yaml, a params file of the train stage
  (``{}`` with ``sweep.enabled: false``: train then uses params.yaml as it is).
"""

from __future__ import annotations

import csv
import dataclasses
import itertools
import math
import time
from pathlib import Path
from typing import Any, Optional

import numpy as np
import yaml

from gans.atomic import atomic_file
from gans.config import ConfigError, GANConfig, require_registered
from gans.errors import UserError
from gans.loop import check_config, worker_batch
from gans.losses import LOSSES
from gans.metrics import load_reference
from gans.models import MODELS
from gans.plots import save_heatmap, save_lines
from pipeline.params import Params, RayConfig, SweepConfig, load_params, print_config, run_stage, write_json
from pipeline.ray_runtime import training as ray_training
from pipeline.ray_runtime.cluster import ray_session, storage_uri
from pipeline.sweep_trial import LOSS, MODEL, RATIO, run_trial, trial_config

METRIC = "fid"
CURVES_PNG, HEATMAP_PNG, CURVES_CSV = "fid_curves.png", "fid_heatmap.png", "fid_curves.csv"
STATUSES = ("completed", "stopped", "failed")


class SweepError(UserError):
    """The sweep cannot run as configured, or none of its trials produced a score."""


# --- the search space and each trial's config -------------------------------------------------------------


def grid_points(sweep: SweepConfig, base: GANConfig) -> list[dict[str, Any]]:
    """Every combination of the grid, in a shuffled order (seed ``train.seed``).

    ASHA never stops the first trials to reach a rung (there is nothing to compare them with yet), so a
    fixed order would always spare the same corner of the grid (in list order, the smallest ratio).
    """
    models = sweep.models or (base.model.name,)
    points = [{LOSS: loss, RATIO: float(ratio), **({MODEL: model} if sweep.models else {})}
              for model, ratio, loss in itertools.product(models, sweep.ttur_ratios, sweep.losses)]
    order = np.random.default_rng(base.train.seed).permutation(len(points))
    return [points[i] for i in order]


def search_space(params: Params) -> dict[str, Any]:
    """Tune's param space: the shuffled grid, or random draws (losses, models; ratios log-uniform)."""
    sweep = params.sweep
    if sweep.search == "grid":
        return ray_training.search_space(points=grid_points(sweep, params.gan))
    choices: dict[str, list] = {LOSS: list(sweep.losses), **({MODEL: list(sweep.models)} if sweep.models else {})}
    return ray_training.search_space(choices=choices, log_ranges={RATIO: (min(sweep.ttur_ratios), max(sweep.ttur_ratios))})


def check_sweep(params: Params) -> None:
    """Everything that can be checked before Ray starts: names in the space, cadence, the reference."""
    sweep, base = params.sweep, params.gan
    worker_batch(base.train.batch_size, sweep.workers_per_trial)  # trials split the same global batch
    for loss in sweep.losses:
        require_registered(LOSSES, loss, "sweep.losses")
    for model in sweep.models or ():
        require_registered(MODELS, model, "sweep.models")
    extremes = dataclasses.replace(sweep, ttur_ratios=(min(sweep.ttur_ratios), max(sweep.ttur_ratios)))
    for point in grid_points(extremes, base):  # every loss × model at the smallest and largest ratio
        try:
            check_config(trial_config(base, sweep, point))
        except ConfigError as error:
            raise ConfigError(f"sweep.ttur_ratios/losses/models: the trial {label(point)} is invalid ({str(error).rstrip('.')}).") from None
    load_reference(params.paths.reference)  # a missing reference fails here, in one sentence


def check_capacity(sweep: SweepConfig, ray_cfg: RayConfig, capacity: dict[str, float]) -> None:
    """Refuse a sweep whose concurrent trials cannot all get their workers (Ray 2.60 then starves and hangs)."""
    resource, per_worker = ("GPU", 1.0) if ray_cfg.use_gpu else ("CPU", ray_cfg.cpus_per_worker)
    have = capacity.get(resource, 0.0)
    per_trial = sweep.workers_per_trial * per_worker
    if per_trial > have:
        raise SweepError(f"sweep.workers_per_trial={sweep.workers_per_trial} needs {per_trial:g} {resource}s per trial "
                         f"but the cluster has {have:g}; lower it (or ray.cpus_per_worker) or add nodes.")
    if sweep.max_concurrent * per_trial > have:
        raise SweepError(f"sweep.max_concurrent={sweep.max_concurrent} trials × {per_trial:g} {resource}s need "
                         f"{sweep.max_concurrent * per_trial:g} {resource}s but the cluster has {have:g}; "
                         f"set sweep.max_concurrent to at most {int(have // per_trial)}.")


def trial_ray_config(params: Params) -> RayConfig:
    """The Ray settings of every trial: its own worker count, runs kept under ``ray.storage_path``/sweep.

    The path is made absolute here: trials run in working directories of Tune's own."""
    root = storage_uri(params.ray.storage_path).rstrip("/") + "/sweep"
    return dataclasses.replace(params.ray, num_workers=params.sweep.workers_per_trial, storage_path=root,
                               cpus_per_worker=params.sweep.cpus_per_worker or params.ray.cpus_per_worker)


def label(point: dict[str, Any]) -> str:
    """A trial's short name: "hinge ×4" (with the model when models are searched)."""
    text = f"{point[LOSS]} ×{float(point[RATIO]):g}"
    return f"{point[MODEL]} {text}" if MODEL in point else text


# --- outcomes → table, metrics, plots, winner ---------------------------------------------------------------


def summarize(outcomes: list[ray_training.TrialOutcome], params: Params) -> list[dict[str, Any]]:
    """One row per trial, best first: swept and resolved values, status, the FID at every report."""
    rows = []
    for outcome in outcomes:
        cfg = trial_config(params.gan, params.sweep, outcome.point)
        scored = [(int(r["step"]), float(r[METRIC])) for r in outcome.reports if METRIC in r and r.get("step") is not None]
        finite = [fid for _, fid in scored if math.isfinite(fid)]
        steps_run = max((step for step, _ in scored), default=0)
        status = "failed" if outcome.error else "completed" if steps_run >= params.sweep.steps else "stopped"
        last = outcome.reports[-1] if outcome.reports else {}
        row = {
            "trial": outcome.trial_id,
            "number": _trial_number(outcome.trial_id),
            "status": status,
            "model": cfg.model.name,
            "loss": cfg.loss.name,
            "ttur_ratio": float(outcome.point[RATIO]),
            "lr_g": cfg.optim.lr_g,
            "lr_d": cfg.optim.lr_d,
            "betas_g": list(cfg.optim.betas_g),
            "betas_d": list(cfg.optim.betas_d),
            "n_critic": cfg.n_critic,
            "seed": cfg.train.seed,
            "steps_run": steps_run,
            "best_fid": min(finite) if finite else None,
            "final_fid": finite[-1] if finite and status != "failed" else None,
            "wall_s": round(float(last.get("time_total_s", 0.0)), 1),
            "error": outcome.error or "",
            "fids": {step: fid for step, fid in scored if math.isfinite(fid)},
        }
        rows.append(row)
    rows.sort(key=lambda row: (row["best_fid"] is None, row["best_fid"] or 0.0, row["trial"]))
    return rows


def _trial_number(trial_id: str) -> Optional[int]:
    """Tune's trial ids end in the trial's number (its place in the generated order): stable across reruns."""
    tail = trial_id.rsplit("_", 1)[-1]
    return int(tail) if tail.isdigit() else None


def write_table(rows: list[dict[str, Any]], path: str | Path) -> Path:
    """``trials.csv``: the rows with one ``fid@<step>`` column per report step."""
    report_steps = sorted({step for row in rows for step in row["fids"]})
    columns = [key for key in rows[0] if key != "fids"] + [f"fid@{step}" for step in report_steps] if rows else ["trial"]
    with atomic_file(path) as tmp, open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        for row in rows:
            flat = {key: _cell(value) for key, value in row.items() if key != "fids"}
            flat.update({f"fid@{step}": _cell(row["fids"].get(step)) for step in report_steps})
            writer.writerow(flat)
    return Path(path)


def _cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, list):
        return " ".join(f"{v:g}" for v in value)
    return value


def sweep_metrics(rows: list[dict[str, Any]], params: Params) -> dict[str, Any]:
    """The DVC metrics of a sweep: the winner, the trials by status and the trial-steps ASHA spent."""
    sweep = params.sweep
    winner = rows[0]
    used, full = sum(row["steps_run"] for row in rows), len(rows) * sweep.steps
    return {
        "best_fid": winner["best_fid"],
        "best": {key: winner[key] for key in ("trial", "number", "model", "loss", "ttur_ratio", "lr_g", "lr_d", "betas_g", "betas_d", "n_critic")},
        "trials": len(rows),
        **{status: sum(row["status"] == status for row in rows) for status in STATUSES},
        "trial_steps": used,
        "trial_steps_full": full,
        "trial_steps_saved": round(1 - used / full, 4) if full else 0.0,
        "meta": {"search": sweep.search, "scheduler": sweep.scheduler, "steps": sweep.steps, "fid_every": sweep.fid_every,
                 "fid_samples": params.gan.train.fid_samples, "fid_extractor_mode": "fast"},
    }


def winner_overrides(winner: dict[str, Any], params: Params) -> dict[str, Any]:
    """``best.yaml``: the winner's values for the searched and resolved keys, and where they came from."""
    overrides: dict[str, Any] = {
        "loss": {"name": winner["loss"]},
        "optim": {"lr_g": winner["lr_g"], "lr_d": winner["lr_d"], "betas_g": winner["betas_g"], "betas_d": winner["betas_d"]},
        "train": {"n_critic": winner["n_critic"]},
    }
    if params.sweep.models is not None:
        overrides = {"model": {"name": winner["model"]}, **overrides}
    # Only what a rerun of the same sweep reproduces (Tune's trial ids are random; the number is not), so an
    # unchanged winner leaves this params file, and so train, unchanged. metrics/sweep.json has the Tune id.
    overrides["trial"] = {"number": winner["number"], "label": label(_point(winner, params)), "ttur_ratio": winner["ttur_ratio"],
                          "fid": round(winner["best_fid"], 2), "steps": winner["steps_run"]}
    return overrides


def write_winner(overrides: dict[str, Any], path: str | Path) -> Path:
    header = ("# Written by the sweep stage (pipeline/sweep.py): the winning trial's values. The train stage applies\n"
              "# them over params.yaml; `dvc params diff` and `dvc exp show` list them. Empty: no sweep.\n")
    with atomic_file(path) as tmp:
        tmp.write_text(header + (yaml.safe_dump(overrides, sort_keys=False) if overrides else "{}\n"))
    return Path(path)


def write_plots(rows: list[dict[str, Any]], params: Params, directory: str | Path) -> None:
    """FID curves (stopped trials end in a cross), the best-FID heat map, and the curves as CSV for dvc plots."""
    directory = Path(directory)
    series = [{"label": f"{label(_point(row, params))} ({row['status']})", "x": list(row["fids"]), "y": list(row["fids"].values()),
               "ended_early": row["status"] != "completed"} for row in sorted(rows, key=lambda row: row["trial"])]
    if not rows:
        save_lines([], directory / CURVES_PNG, xlabel="step", ylabel="FID", title="sweep disabled")
        save_heatmap([[None]], ["–"], ["–"], directory / HEATMAP_PNG, xlabel="", ylabel="", title="sweep disabled")
    else:
        save_lines(series, directory / CURVES_PNG, xlabel="step", ylabel="FID (in-training, fast)",
                   title=f"sweep: {len(rows)} trials, {params.sweep.scheduler}")
        _save_best_fid_map(rows, directory / HEATMAP_PNG)
    with atomic_file(directory / CURVES_CSV) as tmp, open(tmp, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["trial", "status", "step", "fid"])
        for row in rows:
            for step, fid in row["fids"].items():
                writer.writerow([label(_point(row, params)), row["status"], step, f"{fid:.6g}"])


def _save_best_fid_map(rows: list[dict[str, Any]], path: Path) -> None:
    """The best FID of each (loss, ratio) cell and how its trial ended; several per cell (models, draws): the best."""
    losses = sorted({row["loss"] for row in rows})
    ratios = sorted({row["ttur_ratio"] for row in rows})
    best: dict[tuple[str, float], dict[str, Any]] = {}
    for row in rows:
        key, current = (row["loss"], row["ttur_ratio"]), best.get((row["loss"], row["ttur_ratio"]))
        if current is None or (row["best_fid"] is not None and (current["best_fid"] is None or row["best_fid"] < current["best_fid"])):
            best[key] = row

    def note(row: Optional[dict[str, Any]]) -> str:
        if row is None:
            return ""
        return row["status"] if row["status"] != "stopped" else f"stopped @{row['steps_run']}"

    save_heatmap([[(best.get((loss, ratio)) or {}).get("best_fid") for ratio in ratios] for loss in losses],
                 losses, [f"{r:g}" for r in ratios], path, xlabel="TTUR ratio lr_d / lr_g", ylabel="loss",
                 title="best in-training FID per cell", notes=[[note(best.get((loss, ratio))) for ratio in ratios] for loss in losses])


def _point(row: dict[str, Any], params: Params) -> dict[str, Any]:
    return {LOSS: row["loss"], RATIO: row["ttur_ratio"], **({MODEL: row["model"]} if params.sweep.models else {})}


# --- the stage --------------------------------------------------------------------------------------------


def run(params: Params) -> Optional[dict[str, Any]]:
    """Run the sweep (or, disabled, write an empty winner); return the sweep metrics (None when disabled)."""
    paths, sweep = params.paths, params.sweep
    if not sweep.enabled:
        write_winner({}, paths.sweep_best)
        write_table([], paths.sweep_trials)
        write_json(paths.sweep_metrics, {"enabled": False, "trials": 0})
        write_plots([], params, paths.sweep_plots)
        print(f"[sweep] disabled: empty {paths.sweep_best}, train uses params.yaml as it is", flush=True)
        return None
    check_sweep(params)
    ray_cfg = trial_ray_config(params)
    constants = {"base": params.gan, "sweep": sweep, "ray_cfg": ray_cfg,
                 "prepared": str(Path(paths.prepared).resolve()), "reference": str(Path(paths.reference).resolve())}
    started = time.perf_counter()
    # A local instance gets this machine's CPUs (or one trial's, if more), and the dashboard: stopped trials
    # free their workers' CPUs only through it (see cluster.init_ray).
    with ray_session(ray_cfg, dashboard=True):
        check_capacity(sweep, ray_cfg, ray_training.cluster_capacity())
        outcomes = ray_training.run_sweep(
            run_trial, search_space(params), ray_cfg,
            constants=constants, metric=METRIC, mode="min", max_concurrent=sweep.max_concurrent,
            scheduler=ray_training.asha(sweep.steps, sweep.grace_steps, sweep.reduction_factor) if sweep.scheduler == "asha" else None,
            num_samples=sweep.num_samples if sweep.search == "random" else 1, seed=params.gan.train.seed,
            resume=sweep.resume, label=label,
        )
    rows = summarize(outcomes, params)
    write_table(rows, paths.sweep_trials)
    write_plots(rows, params, paths.sweep_plots)
    if not rows or rows[0]["best_fid"] is None:
        raise SweepError(f"No trial of the sweep produced a finite FID ({len(rows)} trials, see {paths.sweep_trials}); "
                         "lower sweep.ttur_ratios or sweep.lr_g.")
    metrics = {**sweep_metrics(rows, params), "wall_s": round(time.perf_counter() - started, 1)}
    write_json(paths.sweep_metrics, metrics)
    write_winner(winner_overrides(rows[0], params), paths.sweep_best)
    return metrics


def main() -> None:
    params = load_params()
    print_config("sweep", params.sweep)
    metrics = run(params)
    if metrics is not None:
        best = metrics["best"]
        print(f"[sweep] {metrics['trials']} trials: {metrics['completed']} completed, {metrics['stopped']} stopped early, "
              f"{metrics['failed']} failed; {100 * metrics['trial_steps_saved']:.0f}% of the grid's trial-steps saved", flush=True)
        print(f"[sweep] winner {best['loss']} ×{best['ttur_ratio']:g} (trial {best['trial']}): FID {metrics['best_fid']:.2f} "
              f"→ {params.paths.sweep_best}", flush=True)


if __name__ == "__main__":
    run_stage("sweep", main)
