"""Ray Train and Ray Tune: the TorchTrainer that runs a training function, a worker's view of Ray, sweeps.

- ``train`` runs a per-worker training function on ``ray.num_workers`` DDP workers and copies the final
  checkpoint out; inside that function ``worker_rank``, ``worker_device``, ``restored_checkpoint`` and
  ``report`` are its view of Ray;
- ``run_sweep`` sweeps with Ray Tune (``make_tuner``), each trial a Train run of its own (``fit_trial``,
  inside the trial function), stopped early by ASHA (``time_attr="step"``: rungs are in steps), and hands
  back plain ``TrialOutcome`` records, so the stage never touches Ray's result types.
"""

from __future__ import annotations

import contextlib
import logging
import math
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

import ray
import ray.train
import ray.tune
import ray.tune.search
import torch
from ray.train import Checkpoint, CheckpointConfig, FailureConfig, LoggingConfig, RunConfig, ScalingConfig
from ray.train.torch import TorchConfig, TorchTrainer
from ray.tune.integration.ray_train import TuneReportCallback

from gans.atomic import atomic_file
from gans.errors import UserError
from pipeline.params import RayConfig
from pipeline.ray_runtime.cluster import RUN_NAME, clear_run, concrete_workers, ray_session, storage_uri

TUNE_RUN = "tune"
"""Name of the Tune experiment under a sweep's storage (its trials' Train runs sit beside it, ``trial-<id>``)."""


def worker_rank() -> int:
    """This Ray Train worker's rank in the DDP group."""
    return ray.train.get_context().get_world_rank()


def worker_device() -> torch.device:
    """The device Ray Train assigned to this worker (its GPU, or the CPU)."""
    return ray.train.torch.get_device()


@contextlib.contextmanager
def restored_checkpoint() -> Iterator[Optional[Path]]:
    """The directory of the checkpoint this worker resumes from, or None for a fresh start.

    Ray hands one over when it restores a run kept at the same (storage, name), or restarts a failed
    worker group (``ray.max_failures``); remote checkpoints are downloaded for the duration of the block.
    """
    restored = ray.train.get_checkpoint()
    if restored is None:
        yield None
        return
    with restored.as_directory() as directory:
        yield Path(directory)


def report(metrics: dict[str, float], step: int, ckpt_dir: Optional[Path]) -> None:
    """``gans.loop.fit``'s ``report`` callback: metrics, and the snapshot directory as a Ray checkpoint.

    Each report names the node it came from (``node_id``), so a sweep's results show where its trials ran."""
    payload = {**metrics, "step": step, "node_id": ray.get_runtime_context().get_node_id()}
    if ckpt_dir is None:
        ray.train.report(payload)
    else:
        ray.train.report(payload, checkpoint=Checkpoint.from_directory(str(ckpt_dir)))


def torch_backend(ray_cfg: RayConfig) -> str:
    """The torch.distributed backend of the workers: NCCL between GPUs, gloo between CPU processes."""
    return "nccl" if ray_cfg.use_gpu else "gloo"


def make_trainer(
    train_fn: Callable[[dict[str, Any]], None],
    loop_config: dict[str, Any],
    ray_cfg: RayConfig,
    *,
    name: str = RUN_NAME,
    report_to_tune: bool = False,
) -> TorchTrainer:
    """A TorchTrainer running ``train_fn(loop_config)`` on ``ray.num_workers`` DDP workers.

    ``loop_config`` gains ``threads``: the CPUs each worker reserved, for ``torch.set_num_threads``.
    Inside a Tune trial (``report_to_tune``) rank 0's reports become the trial's results. The backend is
    set explicitly (``torch_backend``), not left to Ray's default.
    """
    ray_cfg = concrete_workers(ray_cfg) if ray.is_initialized() else ray_cfg
    return TorchTrainer(
        train_fn,
        train_loop_config={**loop_config, "threads": max(1, int(ray_cfg.cpus_per_worker))},
        torch_config=TorchConfig(backend=torch_backend(ray_cfg)),
        scaling_config=ScalingConfig(
            num_workers=ray_cfg.num_workers,
            use_gpu=ray_cfg.use_gpu,
            resources_per_worker={"CPU": ray_cfg.cpus_per_worker, **({"GPU": 1} if ray_cfg.use_gpu else {})},
            placement_strategy=ray_cfg.placement_strategy,
        ),
        run_config=RunConfig(
            name=name,
            storage_path=storage_uri(ray_cfg.storage_path),
            checkpoint_config=CheckpointConfig(num_to_keep=2),
            # Fail fast (instead of retrying forever) when the cluster cannot host the workers.
            failure_config=FailureConfig(max_failures=ray_cfg.max_failures, controller_failure_limit=0),
            logging_config=LoggingConfig(log_level="WARNING"),
            callbacks=[TuneReportCallback()] if report_to_tune else None,
        ),
    )


def trial_name() -> str:
    """A stable name for the Train run of the current Tune trial (restoring a sweep needs it unchanged)."""
    return f"trial-{ray.tune.get_context().get_trial_id()}"


def fit_trial(train_fn: Callable[[dict[str, Any]], None], loop_config: dict[str, Any], ray_cfg: RayConfig) -> dict[str, Any]:
    """Inside a Tune trial: run this trial's Train run (rank 0's reports become the trial's results).

    The run is named after the trial, so a restored sweep's unfinished trial resumes its own checkpoints
    and a worker failure retries from the latest one (``ray.max_failures``). Returns the last metrics.
    """
    try:
        result = make_trainer(train_fn, loop_config, ray_cfg, name=trial_name(), report_to_tune=True).fit()
    except ray.train.WorkerGroupError as error:
        raise user_error_of(error) or error
    return dict(result.metrics or {})


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
    """A Tuner whose trials are ``trial_fn(config, **constants)`` drivers, each building its own TorchTrainer.

    This is Ray 2.60's pattern for Tune over Train V2 (``Tuner(TorchTrainer)`` is rejected): the trial
    function is the Train driver and needs almost no CPU itself, its workers reserve theirs.
    """
    return ray.tune.Tuner(
        trainable(trial_fn, constants),
        param_space=param_space,
        tune_config=ray.tune.TuneConfig(
            metric=metric, mode=mode, scheduler=scheduler, num_samples=num_samples,
            # No reuse_actors: when ASHA stops a trial, its function is still inside TorchTrainer.fit(), which
            # cannot be interrupted; only ending the trial's actor stops its Train run and frees its workers' CPUs.
            reuse_actors=False,
            # Tune ignores max_concurrent_trials when given a generator: the generator limits instead.
            search_alg=ray.tune.search.BasicVariantGenerator(random_state=seed, max_concurrent=max_concurrent),
        ),
        run_config=ray.tune.RunConfig(name=name, storage_path=storage_uri(ray_cfg.storage_path), verbose=0,
                                      callbacks=callbacks),
    )


def trainable(trial_fn: Callable[..., None], constants: Optional[dict[str, Any]] = None):
    """``trial_fn`` as a Tune trainable with its constant arguments in the object store.

    The trial function only drives its Train run, so it reserves no CPU: with even a token CPU, two
    trials of one 1-CPU worker each would not fit 2 CPUs and the second would starve. (Tune refuses an
    empty request, hence a few MiB of memory, which every node has.)
    """
    wrapped = ray.tune.with_parameters(trial_fn, **constants) if constants else trial_fn
    return ray.tune.with_resources(wrapped, ray.tune.PlacementGroupFactory([{"CPU": 0, "memory": 16 * 2**20}]))


def search_space(points: Optional[list[dict[str, Any]]] = None, choices: Optional[dict[str, list]] = None,
                 log_ranges: Optional[dict[str, tuple[float, float]]] = None) -> dict[str, Any]:
    """Tune's param space, one trial's values under ``point``: the given ``points`` in this order (a grid),
    or random draws of ``choices`` and of log-uniform ``log_ranges``."""
    if points is not None:
        return {"point": ray.tune.grid_search(list(points))}
    return {"point": {**{key: ray.tune.choice(list(values)) for key, values in (choices or {}).items()},
                      **{key: ray.tune.loguniform(low, high) for key, (low, high) in (log_ranges or {}).items()}}}


def asha(max_steps: int, grace_steps: int, reduction_factor: int) -> ray.tune.schedulers.ASHAScheduler:
    """ASHA on the reported ``step``: rungs at grace_steps × reduction_factor^k steps, up to max_steps."""
    return ray.tune.schedulers.ASHAScheduler(time_attr="step", max_t=max_steps, grace_period=grace_steps,
                                             reduction_factor=reduction_factor)


@dataclass
class TrialOutcome:
    """What a sweep needs to know of one finished trial, in plain Python."""

    trial_id: str
    point: dict[str, Any]
    """The trial's values of the searched keys (its config's ``point``)."""
    reports: list[dict[str, float]] = field(default_factory=list)
    """Every result it reported, in order (``step``, the metric, ``time_total_s``, ``timestamp``, …)."""
    error: Optional[str] = None
    """The first line of the exception that ended it, None when it ended normally (completed or stopped)."""
    wall_s: Optional[float] = None
    """Seconds from Tune starting the trial to Tune seeing it end (None for a trial ended before a resume)."""


class _Progress(ray.tune.Callback):
    """One line per trial event: each report, and how the trial ended."""

    def __init__(self, label: Callable[[dict[str, Any]], str], metric: str) -> None:
        self.label, self.metric = label, metric
        self.started: dict[str, float] = {}
        self.walls: dict[str, float] = {}

    def on_trial_start(self, iteration, trials, trial, **info) -> None:
        self.started[trial.trial_id] = time.perf_counter()

    def _ended(self, trial) -> None:
        if trial.trial_id in self.started:
            self.walls[trial.trial_id] = time.perf_counter() - self.started[trial.trial_id]

    def _name(self, trial) -> str:
        return f"{self.label(trial.config['point'])} ({trial.trial_id})"

    def on_trial_result(self, iteration, trials, trial, result, **info) -> None:
        print(f"[sweep] {self._name(trial)}: step {result.get('step')} {self.metric} {result.get(self.metric, math.nan):.2f}",
              flush=True)

    def on_trial_complete(self, iteration, trials, trial, **info) -> None:
        self._ended(trial)
        print(f"[sweep] {self._name(trial)} ended at step {trial.last_result.get('step')}", flush=True)

    def on_trial_error(self, iteration, trials, trial, **info) -> None:
        self._ended(trial)
        print(f"[sweep] {self._name(trial)} failed: {_first_line(trial.get_pickled_error() or trial.get_error())}", flush=True)


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
        tuner = ray.tune.Tuner.restore(experiment, trainable(trial_fn, constants), resume_unfinished=True,
                                       resume_errored=False, restart_errored=False)
    else:
        if resume:
            print(f"[sweep] nothing to resume at {experiment}: starting fresh", flush=True)
        for old in _run_names(ray_cfg.storage_path):
            clear_run(ray_cfg.storage_path, old)
        tuner = make_tuner(trial_fn, param_space, ray_cfg, metric=metric, mode=mode, max_concurrent=max_concurrent,
                           scheduler=scheduler, constants=constants, num_samples=num_samples, seed=seed,
                           callbacks=callbacks, name=TUNE_RUN)
    grid = tuner.fit()
    expected = num_samples * math.prod(len(v["grid_search"]) for v in param_space.values() if isinstance(v, dict) and "grid_search" in v)
    if grid.num_terminated + grid.num_errors < expected:  # Ctrl-C: some trials never started or never ended
        raise SweepInterrupted(f"The sweep stopped before all {expected} trials ended; set sweep.resume: true "
                               "to continue it (ended trials are not rerun).")
    outcomes = []
    for result in grid:
        frame = result.metrics_dataframe
        reports = [] if frame is None else frame.to_dict("records")
        trial_id = (result.metrics or {}).get("trial_id") or Path(result.path).name
        outcomes.append(TrialOutcome(trial_id, dict(result.config["point"]), reports,
                                     None if result.error is None else _first_line(result.error),
                                     progress.walls.get(trial_id)))
    return outcomes


def _run_names(storage_path: str) -> list[str]:
    """The runs a sweep keeps under its storage: the Tune experiment and every trial's Train run."""
    import pyarrow.fs

    filesystem, root = pyarrow.fs.FileSystem.from_uri(storage_uri(storage_path))
    infos = filesystem.get_file_info(pyarrow.fs.FileSelector(root, allow_not_found=True))
    return [Path(info.path).name for info in infos
            if info.type == pyarrow.fs.FileType.Directory and (Path(info.path).name == TUNE_RUN or Path(info.path).name.startswith("trial-"))]


def cluster_capacity() -> dict[str, float]:
    """The CPUs and GPUs of the Ray cluster this process is connected to."""
    resources = ray.cluster_resources()
    return {"CPU": float(resources.get("CPU", 0)), "GPU": float(resources.get("GPU", 0))}


def copy_result_file(result: ray.train.Result, filename: str, target: Path) -> Path:
    """Copy ``filename`` of a finished run's last checkpoint to ``target`` (downloaded first when remote)."""
    if result.checkpoint is None:
        raise RuntimeError("Training finished without reporting a checkpoint.")
    with tempfile.TemporaryDirectory(prefix="gan-result-") as download:
        source = Path(result.checkpoint.to_directory(download)) / filename
        with atomic_file(target) as tmp:
            shutil.copyfile(source, tmp)
    return target


def train(
    train_fn: Callable[[dict[str, Any]], None],
    loop_config: dict[str, Any],
    ray_cfg: RayConfig,
    *,
    resume: bool,
    checkpoint_file: str,
    target: Path,
) -> dict[str, Any]:
    """Run ``train_fn`` with Ray Train, copy ``checkpoint_file`` of the last checkpoint to ``target``.

    With ``resume`` the run Ray keeps under ``ray.storage_path`` continues; otherwise it is deleted
    first, wherever it is stored, so a fresh run never inherits an old one. Returns the last metrics.
    """
    with ray_session(ray_cfg):
        if not resume:
            clear_run(ray_cfg.storage_path)
        ray_cfg = concrete_workers(ray_cfg)
        print(f"[train] {ray_cfg.num_workers} worker{'s' if ray_cfg.num_workers > 1 else ''} × "
              f"{'1 GPU' if ray_cfg.use_gpu else f'{ray_cfg.cpus_per_worker:g} CPUs'}", flush=True)
        try:
            result = make_trainer(train_fn, loop_config, ray_cfg).fit()
        except ray.train.WorkerGroupError as error:
            raise user_error_of(error) or error
        copy_result_file(result, checkpoint_file, target)
    return dict(result.metrics or {})


def user_error_of(error: ray.train.WorkerGroupError) -> Optional[UserError]:
    """The ``UserError`` a worker raised (bad input, e.g. a refused resume), so the stage prints one sentence."""
    for failure in error.worker_failures.values():
        cause = getattr(failure, "cause", failure)  # Ray wraps a worker's exception in a RayTaskError
        if isinstance(cause, UserError):
            return cause.with_traceback(None)
    return None


