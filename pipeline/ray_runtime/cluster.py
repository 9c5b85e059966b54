"""Ray clusters for the stages: start or join one, where Ray keeps a run, and the Pool for data preparation.

Ray persists each run under ``ray.storage_path/<name>/`` (its ``checkpoint_*`` directories and the
checkpoint manager's state, from which it restores a run of the same name); only this package knows that.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import os
from pathlib import Path
from typing import Any, Iterator, Optional

import pyarrow.fs
import ray

from pipeline.params import AUTO_WORKERS, RayConfig

RUN_NAME = "train"

# Ray Train V2 polls workers every 2 s by default, so each ray.train.report would block up to 2 s; polling
# every 0.2 s cost a 1-worker run about a tenth of its steps/s on 2 CPUs (docs/benchmarks.md), so 1 s.
# Print patching shows every worker line twice; the preemption watcher only matters on spot clusters.
_RAY_ENV = {
    "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": "1",
    "RAY_TRAIN_ENABLE_PRINT_PATCH": "0",
    "RAY_TRAIN_ENABLE_PREEMPTION_WATCHER": "0",
    "RAY_USAGE_STATS_ENABLED": "0",
}
# Ray's own loggers at ERROR in the driver and every worker: without the dashboard Ray Train's placement-group
# cleaner warns every few seconds that the State API is missing (training.quiet_report_logs quiets one more).
# A LoggingConfig travels with the job: a runtime_env hook would start every worker through Ray's
# setup_worker.py, about 0.5 s more each.
_LOGGING = ray.LoggingConfig(log_level="ERROR")


def init_ray(address: Optional[str], num_cpus: Optional[int] = None, dashboard: bool = False) -> None:
    """Join ``address`` or start a quiet, private local Ray instance (no-op when Ray is already up).

    ``dashboard``: a local instance runs Ray's dashboard, whose State API Ray Train's placement-group
    cleaner needs: without it, the workers of a Train run whose driver was killed (a trial Tune stopped
    early) keep their CPUs until Ray shuts down, and the next trials starve.
    """
    if ray.is_initialized():
        return
    for key, value in _RAY_ENV.items():
        os.environ.setdefault(key, value)
    if address:
        ray.init(address=address, logging_config=_LOGGING)
        return
    # A private local instance needs no auth token (and must not create ~/.ray/auth_token).
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    # "local" starts a new instance even when another Ray cluster runs on this machine.
    ray.init(
        address="local",
        num_cpus=num_cpus,
        include_dashboard=dashboard,
        dashboard_host="127.0.0.1",
        logging_level=logging.WARNING,
        logging_config=_LOGGING,
    )


@contextlib.contextmanager
def ray_session(ray_cfg: RayConfig, dashboard: bool = False) -> Iterator[None]:
    """Ray for one stage: the cluster (``RayConfig.cluster_address``), or a local instance big enough for the workers.

    Ray started here is shut down at the end; a Ray this process already runs (a notebook's, or one shared by
    several runs) is used as it is and left running.
    """
    if ray.is_initialized():
        yield
        return
    wanted = 0 if ray_cfg.num_workers == AUTO_WORKERS else math.ceil(ray_cfg.num_workers * ray_cfg.cpus_per_worker)
    num_cpus = max(os.cpu_count() or 1, wanted)
    init_ray(ray_cfg.cluster_address, num_cpus, dashboard)  # num_cpus sizes a local instance; a cluster has its own
    try:
        yield
    finally:
        ray.shutdown()


def concrete_workers(ray_cfg: RayConfig) -> RayConfig:
    """``ray_cfg`` with ``num_workers: auto`` resolved on the Ray this process is connected to.

    A local Ray: one worker holding every CPU (or one per GPU with ``use_gpu``). A cluster: one worker per
    GPU (``use_gpu``), else one per ``cpus_per_worker`` CPUs.
    """
    if ray_cfg.num_workers != AUTO_WORKERS:
        return ray_cfg
    resources = ray.cluster_resources()
    cpus, gpus = float(resources.get("CPU", os.cpu_count() or 1)), int(resources.get("GPU", 0))
    if ray_cfg.use_gpu:
        return dataclasses.replace(ray_cfg, num_workers=max(1, gpus))
    if ray_cfg.cluster_address is None:
        return dataclasses.replace(ray_cfg, num_workers=1, cpus_per_worker=max(1.0, cpus))
    return dataclasses.replace(ray_cfg, num_workers=max(1, int(cpus // ray_cfg.cpus_per_worker)))


def storage_uri(storage_path: str) -> str:
    """``ray.storage_path`` as Ray needs it: a URI unchanged, a local path made absolute."""
    return storage_path if "://" in storage_path else str(Path(storage_path).resolve())


def clear_run(storage_path: str, name: str = RUN_NAME) -> None:
    """Delete the run ``name`` under ``storage_path`` (any pyarrow file system), so the next run starts fresh.

    Ray Train restores a run it finds at the same (storage, name); a fresh run must not inherit one.
    """
    filesystem, root = pyarrow.fs.FileSystem.from_uri(storage_uri(storage_path))
    run_dir = f"{root.rstrip('/')}/{name}"
    if filesystem.get_file_info(run_dir).type != pyarrow.fs.FileType.NotFound:
        filesystem.delete_dir(run_dir)


@contextlib.contextmanager
def cluster_pool(address: str) -> Iterator[Any]:
    """Ray's multiprocessing Pool over the cluster at ``address``, one process per CPU."""
    from ray.util.multiprocessing import Pool

    init_ray(address)
    pool = Pool(processes=max(1, int(ray.cluster_resources().get("CPU", 1))))
    try:
        yield pool
    finally:
        pool.terminate()
        ray.shutdown()
