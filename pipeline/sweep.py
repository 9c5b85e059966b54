"""Stage ``sweep``: Ray Tune searches TTUR ratios × losses (× models); the winner's settings go to ``train``.

Each trial is a short training run (``sweep.steps``; in the trial's own process, or a Ray Train run of
``sweep.workers_per_trial`` DDP workers when that is above 1) that scores
its EMA generator's FID and KID at ``sweep.report_steps()`` (ASHA's rungs and its last step, or every
``sweep.fid_every`` steps; fast extractor, ``train.fid_samples`` images, each with its bootstrap noise) and
reports them to Tune; ASHA stops the weak trials at rungs in steps on
``sweep.metric``; a trial whose losses turn NaN/inf fails and the sweep goes on. ``sweep.seeds`` repeats
every configuration over seeds. Writes:

- ``paths.sweep_trials`` (CSV): one row per trial, swept and resolved values, the FID at every report,
  steps run, status (completed, stopped, failed), wall time, seed;
- ``paths.sweep_metrics`` (DVC metrics): the winner (by the mean over seeds at the last step all of them
  reached) with its noise and its margin over the runner-up against the noise of that difference, trials by
  status, trial-steps used;
- ``paths.sweep_plots``: FID against step per trial and the ranking figure by ratio × loss (PNG), the curves as CSV;
- ``paths.sweep_best``: the winner's overrides of params.yaml, a params file of the train stage
  (``{}`` with ``sweep.enabled: false``: train then uses params.yaml as it is).

This module checks the sweep and runs it (``search``; the search space's points are ``pipeline.sweep_space``'s,
Tune's space is ``tuning.search_space``, a trial is ``pipeline.sweep_trial``); ``pipeline.sweep_report`` turns
the trials' outcomes into the files above. Ray, Tune and torch-fidelity load only when the sweep runs.
"""

from __future__ import annotations

import dataclasses
import itertools
import time
from pathlib import Path
from typing import Any, Optional

import numpy as np

from gans.config import ConfigError, GANConfig, require_registered
from gans.errors import UserError
from gans.loop import check_config, worker_batch
from gans.losses import LOSSES
from gans.models import MODELS
from pipeline.params import Params, RayConfig, SweepConfig, load_params, print_config, run_stage, write_json
from pipeline.sweep_report import (
    label,
    margin_sentence,
    summarize,
    sweep_metrics,
    winner_overrides,
    write_plots,
    write_table,
    write_winner,
)
from pipeline.sweep_space import LOSS, MODEL, RATIO, SEED, TrialOutcome, trial_config


class SweepError(UserError):
    """The sweep cannot run as configured, or none of its trials produced a score."""


# --- the grid, and what is checked before Ray starts -------------------------------------------------------


def grid_points(sweep: SweepConfig, base: GANConfig) -> list[dict[str, Any]]:
    """Every combination of the grid (× ``sweep.seeds`` when set), in a shuffled order (seed ``train.seed``).

    ASHA never stops the first trials to reach a rung (there is nothing to compare them with yet), so a
    fixed order would always spare the same corner of the grid (in list order, the smallest ratio).
    """
    models = sweep.models or (base.model.name,)
    seeds = sweep.seeds or (base.train.seed,)
    points = [
        {
            LOSS: loss,
            RATIO: float(ratio),
            **({MODEL: model} if sweep.models else {}),
            **({SEED: seed} if sweep.seeds else {}),
        }
        for model, ratio, loss, seed in itertools.product(models, sweep.ttur_ratios, sweep.losses, seeds)
    ]
    order = np.random.default_rng(base.train.seed).permutation(len(points))
    return [points[i] for i in order]


def check_sweep(params: Params) -> None:
    """Everything that can be checked before Ray starts: names in the space, cadence, the reference."""
    from gans.metrics import load_reference  # torch-fidelity: only for a sweep that runs

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
            raise ConfigError(
                f"sweep.ttur_ratios/losses/models: the trial {label(point)} is invalid ({str(error).rstrip('.')})."
            ) from None
    load_reference(params.paths.reference)  # a missing reference fails here, in one sentence


def check_capacity(sweep: SweepConfig, ray_cfg: RayConfig, capacity: dict[str, float]) -> None:
    """Refuse a sweep whose concurrent trials cannot all get their workers (Ray 2.60 then starves and hangs)."""
    resource, per_worker = ("GPU", 1.0) if ray_cfg.use_gpu else ("CPU", ray_cfg.cpus_per_worker)
    have = capacity.get(resource, 0.0)
    per_trial = sweep.workers_per_trial * per_worker
    if per_trial > have:
        raise SweepError(
            f"sweep.workers_per_trial={sweep.workers_per_trial} needs {per_trial:g} {resource}s per trial "
            f"but the cluster has {have:g}; lower it (or ray.cpus_per_worker) or add nodes."
        )
    if sweep.max_concurrent * per_trial > have:
        raise SweepError(
            f"sweep.max_concurrent={sweep.max_concurrent} trials × {per_trial:g} {resource}s need "
            f"{sweep.max_concurrent * per_trial:g} {resource}s but the cluster has {have:g}; "
            f"set sweep.max_concurrent to at most {int(have // per_trial)}."
        )


def trial_ray_config(params: Params) -> RayConfig:
    """The Ray settings of every trial: its own worker count, runs kept under ``ray.storage_path``/sweep.

    The path is made absolute here: trials run in working directories of Tune's own."""
    from pipeline.ray_runtime.cluster import storage_uri

    root = storage_uri(params.ray.storage_path).rstrip("/") + "/sweep"
    return dataclasses.replace(
        params.ray,
        num_workers=params.sweep.workers_per_trial,
        storage_path=root,
        cpus_per_worker=params.sweep.cpus_per_worker or params.ray.cpus_per_worker,
    )


# --- the stage --------------------------------------------------------------------------------------------


def search(params: Params) -> tuple[list[TrialOutcome], float]:
    """Every trial's outcome, from Ray Tune, and the ``time.perf_counter()`` at which Ray started (the sweep's
    ``wall_s`` counts from there).

    Ray, Tune and the trials' training are imported here, not with this module: a disabled sweep needs none
    of them (they take seconds to import)."""
    from pipeline.ray_runtime import tuning
    from pipeline.ray_runtime.cluster import ray_session
    from pipeline.ray_runtime.trial import trains_in_trial
    from pipeline.sweep_trial import run_trial

    paths, sweep = params.paths, params.sweep
    ray_cfg = trial_ray_config(params)
    constants = {
        "base": params.gan,
        "sweep": sweep,
        "ray_cfg": ray_cfg,
        "prepared": str(Path(paths.prepared).resolve()),
        "reference": str(Path(paths.reference).resolve()),
    }
    started = time.perf_counter()
    # A local instance gets this machine's CPUs (or one trial's, if more), and, when trials drive Train runs,
    # the dashboard: stopped trials free their Train workers' CPUs only through it (see cluster.init_ray).
    with ray_session(ray_cfg, dashboard=not trains_in_trial(ray_cfg)):
        check_capacity(sweep, ray_cfg, tuning.cluster_capacity())
        outcomes = tuning.run_sweep(
            run_trial,
            tuning.search_space(sweep, grid_points(sweep, params.gan)),
            ray_cfg,
            constants=constants,
            metric=sweep.metric,
            mode="min",
            max_concurrent=sweep.max_concurrent,
            scheduler=tuning.asha(sweep.steps, sweep.grace_steps, sweep.reduction_factor)
            if sweep.scheduler == "asha"
            else None,
            num_samples=sweep.num_samples if sweep.search == "random" else 1,
            seed=params.gan.train.seed,
            resume=sweep.resume,
            label=label,
        )
    return outcomes, started


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
    outcomes, started = search(params)
    rows = summarize(outcomes, params)
    write_table(rows, paths.sweep_trials)
    write_plots(rows, params, paths.sweep_plots)
    if not rows or rows[0]["score"] is None:
        raise SweepError(
            f"No trial of the sweep produced a finite {sweep.metric.upper()} ({len(rows)} trials, see "
            f"{paths.sweep_trials}); lower sweep.ttur_ratios or sweep.lr_g."
        )
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
        print(
            f"[sweep] {metrics['trials']} trials: {metrics['completed']} completed, {metrics['stopped']} stopped early, "
            f"{metrics['failed']} failed; {100 * metrics['trial_steps_saved']:.0f}% of the grid's trial-steps saved",
            flush=True,
        )
        seeds = f", mean of {best['seeds']} seeds" if best["seeds"] > 1 else ""
        print(
            f"[sweep] winner {best['label']} (trial {best['trial']}): {metrics['metric'].upper()} "
            f"{metrics['best_score']:.4g} ± {metrics['best_noise'] or 0:.2g} at step {best['steps']}{seeds} "
            f"→ {params.paths.sweep_best}",
            flush=True,
        )
        sentence = margin_sentence(metrics)
        if sentence:
            print(f"[sweep] {sentence}", flush=True)


if __name__ == "__main__":
    run_stage("sweep", main)
