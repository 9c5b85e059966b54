"""Ray Tune: sweeps, their trials, and the search space they draw from.

``run_sweep`` sweeps with Ray Tune (``make_tuner``, over ``search_space``), stopped early by ASHA (``asha``;
``time_attr="step"``: rungs are in steps), and hands back plain ``sweep_space.TrialOutcome`` records, so the
stage never touches Ray's result types. The points it searches are ``pipeline.sweep_space``'s. What runs
inside a trial is ``trial``'s (its own training, or a Train run it drives). Only the sweep imports this
module; the Train side is ``training``.
"""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import ray
import ray.tune
import ray.tune.search

from gans.errors import UserError
from pipeline.params import RayConfig, SweepConfig
from pipeline.ray_runtime.cluster import clear_run, storage_uri
from pipeline.ray_runtime.trial import trains_in_trial
from pipeline.sweep_space import LOSS, MODEL, RATIO, TrialOutcome

TUNE_RUN = "tune"
"""Name of the Tune experiment under a sweep's storage (its trials' Train runs sit beside it, ``trial-<id>``)."""


def make_tuner(
    trial_fn: Callable[..., None],
    param_space: dict[str, Any],
    ray_cfg: RayConfig,
    *,
    metric: str,
    mode: str,
    max_concurrent: int,
    scheduler: Optional[Any] = None,
    constants: Optional[dict[str, Any]] = None,
    num_samples: int = 1,
    seed: Optional[int] = None,
    callbacks: Optional[list] = None,
    name: str = "sweep",
) -> ray.tune.Tuner:
    """A Tuner whose trials are ``trial_fn(config, **constants)``.

    A trial of one worker (``trial.trains_in_trial``) trains in its own process and reserves a worker's resources;
    otherwise each is the driver of its own TorchTrainer (Ray 2.60's pattern for Tune over Train V2:
    ``Tuner(TorchTrainer)`` is rejected), needs almost no CPU itself, and its workers reserve theirs.
    """
    in_trial = trains_in_trial(ray_cfg)
    return ray.tune.Tuner(
        trainable(trial_fn, ray_cfg, constants),
        param_space=param_space,
        tune_config=ray.tune.TuneConfig(
            metric=metric,
            mode=mode,
            scheduler=scheduler,
            num_samples=num_samples,
            # A trial that trains in its own process waits inside its report while the scheduler decides,
            # so a stopped one ends there and the next trial reuses its process (imports and Inception
            # loaded). A trial that drives a Train run is inside TorchTrainer.fit() when ASHA stops it and
            # cannot be interrupted: only ending its actor frees its workers' CPUs.
            reuse_actors=in_trial,
            # Tune ignores max_concurrent_trials when given a generator: the generator limits instead.
            search_alg=ray.tune.search.BasicVariantGenerator(random_state=seed, max_concurrent=max_concurrent),
        ),
        run_config=ray.tune.RunConfig(
            name=name,
            storage_path=storage_uri(ray_cfg.storage_path),
            verbose=0,
            callbacks=callbacks,
            # A trial that trains itself restarts from its latest Tune checkpoint; a Train run retries on its own.
            failure_config=ray.tune.FailureConfig(max_failures=ray_cfg.max_failures if in_trial else 0),
            checkpoint_config=ray.tune.CheckpointConfig(num_to_keep=2),
        ),
    )


def trainable(trial_fn: Callable[..., None], ray_cfg: RayConfig, constants: Optional[dict[str, Any]] = None):
    """``trial_fn`` as a Tune trainable with its constant arguments in the object store.

    A trial that trains itself reserves one worker's CPUs (or a GPU). A trial that only drives its Train run
    reserves no CPU: with even a token CPU, two trials of one 1-CPU worker each would not fit 2 CPUs and the
    second would starve. (Tune refuses an empty request, hence a few MiB of memory, which every node has.)
    """
    wrapped = ray.tune.with_parameters(trial_fn, **constants) if constants else trial_fn
    if trains_in_trial(ray_cfg):
        bundle = {"CPU": ray_cfg.cpus_per_worker, **({"GPU": 1} if ray_cfg.use_gpu else {})}
    else:
        bundle = {"CPU": 0, "memory": 16 * 2**20}
    return ray.tune.with_resources(wrapped, ray.tune.PlacementGroupFactory([bundle]))


def search_space(sweep: SweepConfig, grid: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Tune's param space, one trial's values under ``point``. With ``sweep.search: grid``, the ``grid`` points
    in this order (the sweep passes its shuffled grid; a bench may pass any points); with ``random``, draws of
    ``sweep.losses`` (and of ``sweep.models`` when set) and of the TTUR ratio, log-uniform between the smallest
    and the largest of ``sweep.ttur_ratios`` (``grid`` is then unused)."""
    if sweep.search == "grid":
        return {"point": ray.tune.grid_search(list(grid))}
    point = {LOSS: ray.tune.choice(list(sweep.losses))}
    if sweep.models:
        point[MODEL] = ray.tune.choice(list(sweep.models))
    point[RATIO] = ray.tune.loguniform(min(sweep.ttur_ratios), max(sweep.ttur_ratios))
    return {"point": point}


def asha(max_steps: int, grace_steps: int, reduction_factor: int) -> ray.tune.schedulers.ASHAScheduler:
    """ASHA on the reported ``step``: rungs at grace_steps × reduction_factor^k steps, up to max_steps."""
    return ray.tune.schedulers.ASHAScheduler(
        time_attr="step", max_t=max_steps, grace_period=grace_steps, reduction_factor=reduction_factor
    )


class _Progress(ray.tune.Callback):
    """One line per trial event: each report, and how the trial ended."""

    def __init__(self, label: Callable[[dict[str, Any]], str], metric: str) -> None:
        self.label, self.metric = label, metric
        self.started: dict[str, float] = {}
        self.walls: dict[str, float] = {}
        self.results: dict[str, list[dict[str, Any]]] = {}
        """Every result of every trial seen in this run, in order (its plain values)."""

    def on_trial_start(self, iteration, trials, trial, **info) -> None:
        self.started[trial.trial_id] = time.perf_counter()

    def _ended(self, trial) -> None:
        if trial.trial_id in self.started:
            self.walls[trial.trial_id] = time.perf_counter() - self.started[trial.trial_id]

    def _name(self, trial) -> str:
        return f"{self.label(trial.config['point'])} ({trial.trial_id})"

    def on_trial_result(self, iteration, trials, trial, result, **info) -> None:
        plain = {key: value for key, value in result.items() if isinstance(value, (int, float, str))}
        self.results.setdefault(trial.trial_id, []).append(plain)
        print(
            f"[sweep] {self._name(trial)}: step {result.get('step')} {self.metric} {result.get(self.metric, math.nan):.2f}",
            flush=True,
        )

    def on_trial_complete(self, iteration, trials, trial, **info) -> None:
        self._ended(trial)
        print(f"[sweep] {self._name(trial)} ended at step {trial.last_result.get('step')}", flush=True)

    def on_trial_error(self, iteration, trials, trial, **info) -> None:
        self._ended(trial)
        print(
            f"[sweep] {self._name(trial)} failed: {_first_line(trial.get_pickled_error() or trial.get_error())}",
            flush=True,
        )


def _first_line(error: Any) -> str:
    """The message of an exception as Ray hands it over (a traceback text): its last line, less the type."""
    lines = [line.strip() for line in str(error or "").splitlines() if line.strip()]
    if not lines:
        return "unknown error"
    kind, _, message = lines[-1].partition(": ")
    return message if message and " " not in kind else lines[-1]


class SweepInterrupted(UserError):
    """Tune returned before every trial ended (Ctrl-C, or the driver was stopped)."""


def run_sweep(
    trial_fn: Callable[..., None],
    param_space: dict[str, Any],
    ray_cfg: RayConfig,
    *,
    constants: dict[str, Any],
    metric: str,
    mode: str,
    max_concurrent: int,
    scheduler: Optional[Any],
    num_samples: int,
    seed: int,
    resume: bool,
    label: Callable[[dict[str, Any]], str],
) -> list[TrialOutcome]:
    """Run (or, with ``resume``, continue) the Tune experiment under ``ray_cfg.storage_path``; every trial's outcome.

    A fresh sweep deletes whatever an earlier one left under the storage; a resumed one reruns no trial
    that had ended. Needs a Ray session (``cluster.ray_session``).
    """
    for noisy in ("ray.tune.logger.tensorboardx", "tensorboardX.x2num"):  # "invalid value" for lists and inf FIDs
        logging.getLogger(noisy).setLevel(logging.ERROR)
    experiment = f"{storage_uri(ray_cfg.storage_path).rstrip('/')}/{TUNE_RUN}"
    progress = _Progress(label, metric)
    callbacks = [progress]
    if resume and ray.tune.Tuner.can_restore(experiment):
        print(f"[sweep] resuming the sweep at {experiment}", flush=True)
        tuner = ray.tune.Tuner.restore(
            experiment,
            trainable(trial_fn, ray_cfg, constants),
            resume_unfinished=True,
            resume_errored=False,
            restart_errored=False,
        )
    else:
        if resume:
            print(f"[sweep] nothing to resume at {experiment}: starting fresh", flush=True)
        for old in _run_names(ray_cfg.storage_path):
            clear_run(ray_cfg.storage_path, old)
        tuner = make_tuner(
            trial_fn,
            param_space,
            ray_cfg,
            metric=metric,
            mode=mode,
            max_concurrent=max_concurrent,
            scheduler=scheduler,
            constants=constants,
            num_samples=num_samples,
            seed=seed,
            callbacks=callbacks,
            name=TUNE_RUN,
        )
    grid = tuner.fit()
    expected = num_samples * math.prod(
        len(v["grid_search"]) for v in param_space.values() if isinstance(v, dict) and "grid_search" in v
    )
    if grid.num_terminated + grid.num_errors < expected:  # Ctrl-C: some trials never started or never ended
        raise SweepInterrupted(
            f"The sweep stopped before all {expected} trials ended; set sweep.resume: true "
            "to continue it (ended trials are not rerun)."
        )
    outcomes = []
    for result in grid:
        frame = result.metrics_dataframe
        trial_id = (result.metrics or {}).get("trial_id") or Path(result.path).name
        reports = _merged_reports([] if frame is None else frame.to_dict("records"), progress.results.get(trial_id, []))
        outcomes.append(
            TrialOutcome(
                trial_id,
                dict(result.config["point"]),
                reports,
                None if result.error is None else _first_line(result.error),
                progress.walls.get(trial_id),
            )
        )
    return outcomes


def _merged_reports(logged: list[dict[str, Any]], seen: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A trial's reports in step order: those Tune logged (all of a trial that ended before a resumed sweep)
    and those seen in this run (Tune's log of a trial it restarted after a failure can lack the first ones)."""
    by_step = {report.get("step"): report for report in [*logged, *seen]}
    return [by_step[step] for step in sorted(by_step, key=lambda step: (step is None, step or 0))]


def _run_names(storage_path: str) -> list[str]:
    """The runs a sweep keeps under its storage: the Tune experiment and every trial's Train run."""
    import pyarrow.fs

    filesystem, root = pyarrow.fs.FileSystem.from_uri(storage_uri(storage_path))
    infos = filesystem.get_file_info(pyarrow.fs.FileSelector(root, allow_not_found=True))
    return [
        Path(info.path).name
        for info in infos
        if info.type == pyarrow.fs.FileType.Directory
        and (Path(info.path).name == TUNE_RUN or Path(info.path).name.startswith("trial-"))
    ]


def cluster_capacity() -> dict[str, float]:
    """The CPUs and GPUs of the Ray cluster this process is connected to."""
    resources = ray.cluster_resources()
    return {"CPU": float(resources.get("CPU", 0)), "GPU": float(resources.get("GPU", 0))}
