"""Helpers shared by the tests and the benches (``bench/serve_load.py``): tiny configs and generators, a model
server in a child process, and the environment and command runner of the tests that drive git, dvc and Ray.

Imports only what every test has (torch, gans.config) at module level; the rest is imported where it is used.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Iterator, Optional

import numpy as np
import torch
import yaml

from gans.config import GANConfig

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
"""The virtual environment's executables (dvc, ray): first on the PATH of ``tool_env``."""


# Tiny models -------------------------------------------------------------------------------------------------


FIXED_PRECISION = {"amp": False, "channels_last": False}
"""float32 and the contiguous layout, on every machine and without a calibration: the precision of the tests whose
subject is not the precision (``auto`` is tested in tests/test_precision.py, in the sweeps and in the DAG)."""


def tiny_config(**sections) -> GANConfig:
    """A small DCGAN config (32 px, narrow, ``FIXED_PRECISION``) with section overrides:
    tiny_config(train={"steps": 4})."""
    base = {
        "data": {"resolution": 32, "channels": 1},
        "model": {"name": "dcgan", "z_dim": 8, "g_width": 8, "d_width": 8},
        "train": {
            "steps": 4,
            "batch_size": 4,
            "log_every": 2,
            "snapshot_every": 2,
            "n_fixed": 4,
            "ema_decay": 0.9,
            **FIXED_PRECISION,
        },
    }
    for name, values in sections.items():
        base[name] = {**base.get(name, {}), **values}
    return GANConfig.from_dict(base)


def write_tiny_dataset(root: Path, count: int = 24):
    """``count`` random grayscale 32×32 uint8 images, prepared under ``root``/prepared (the same every call)."""
    from gans.data import PreparedDataset, write_prepared

    images = np.random.default_rng(0).integers(0, 256, size=(count, 1, 32, 32), dtype=np.uint8)
    return PreparedDataset(write_prepared(root / "prepared", images, {"count": count}))


def tiny_generators(work: Path, steps: int, seeds=(0, 1)) -> tuple[list[torch.nn.Module], GANConfig]:
    """Tiny generators trained ``steps`` steps from each of ``seeds`` (different weights) on 16 random 32×32
    images, and their config; ``work`` holds the data and the runs."""
    from gans import checkpoint
    from gans.loop import fit

    dataset = write_tiny_dataset(work, count=16)
    states = [
        fit(tiny_config(train={"steps": steps, "seed": seed}), dataset, work_dir=work / f"run{seed}") for seed in seeds
    ]
    return [checkpoint.load_generator(s) for s in states], states[0]["config"]


# The model server in a child process ---------------------------------------------------------------------------


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextlib.contextmanager
def server_process(
    model_base_path: str | os.PathLike, *flags: str, port: Optional[int] = None, timeout_s: float = 180
) -> Iterator[str]:
    """Run ``python -m pipeline.serving.serve`` in a child process until the block ends; yields its base URL.

    Ready means ``GET /v1/models/generator`` lists an AVAILABLE version. The child (and its private Ray)
    is stopped with SIGINT, then killed if it has not ended within 30 s.
    """
    from pipeline.serving.config import MODEL_NAME

    port = port or free_port()
    url = f"http://127.0.0.1:{port}"
    command = [
        sys.executable,
        "-m",
        "pipeline.serving.serve",
        "--model-base-path",
        str(model_base_path),
        "--port",
        str(port),
        *flags,
    ]
    child = subprocess.Popen(command, env={**os.environ, "RAY_USAGE_STATS_ENABLED": "0"})
    try:
        deadline = time.time() + timeout_s
        while True:
            if child.poll() is not None:
                raise RuntimeError(f"The model server exited with code {child.returncode} before it was ready.")
            try:
                with urllib.request.urlopen(f"{url}/v1/models/{MODEL_NAME}", timeout=5) as response:
                    rows = json.loads(response.read())["model_version_status"]
                if any(row["state"] == "AVAILABLE" for row in rows):
                    break
            except (OSError, ValueError, KeyError, http.client.HTTPException):  # not up yet
                pass
            if time.time() > deadline:
                raise RuntimeError(f"The model server was not ready within {timeout_s:.0f} s.")
            time.sleep(0.5)
        yield url
    finally:
        if child.poll() is None:
            child.send_signal(signal.SIGINT)
            try:
                child.wait(timeout=30)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()


# Copies of this project driven by git, dvc and Ray --------------------------------------------------------------

# Top-level outputs and environments are not copied; neither are caches anywhere.
TOP_LEVEL_SKIP = {
    ".venv",
    ".git",
    "runs",
    "data",
    "artifacts",
    "models",
    "dvclive",
    "metrics",
    "plots",
    "sweep",
    ".pytest_cache",
}
ANYWHERE_SKIP = shutil.ignore_patterns("__pycache__", "*.egg-info")

TINY = {
    "data": {"limit": 40},
    "model": {"g_width": 8, "d_width": 8, "z_dim": 16},
    "train": {
        "steps": 40,
        "batch_size": 8,
        "log_every": 10,
        "snapshot_every": 20,
        "n_fixed": 16,
        "fid_every": 20,
        "fid_samples": 24,
    },
    "sweep": {  # 2 trials: the sweep stage's own tests cover larger grids
        "ttur_ratios": [1, 4],
        "losses": ["hinge"],
        "steps": 40,
        "fid_every": 20,
        "grace_steps": 20,
        "reduction_factor": 2,
    },
    "eval": {
        "n_fake": 40,
        "batch_size": 20,
        "kid_subsets": 5,
        "kid_subset_size": 20,
        "grid_size": 16,
        "training_stats_fid": True,
        "fid_draws": 2,
        "bootstrap": 50,
        "prc_subsets": 3,
        "floor_splits": 3,
    },
}
"""params.yaml overrides for a whole DAG in tens of seconds (``set_params``)."""


def copy_ignore(directory: str, names: list[str]) -> set[str]:
    """``shutil.copytree``'s ``ignore`` for a copy of this project: no outputs, environments or caches."""
    skipped = set(ANYWHERE_SKIP(directory, names))
    if Path(directory) == REPO:
        skipped |= TOP_LEVEL_SKIP & set(names)
    elif Path(directory) == REPO / ".dvc":
        skipped |= {"cache", "tmp"} & set(names)
    return skipped


def set_params(repo: Path, overrides: dict) -> None:
    """Update sections of ``repo``'s params.yaml with ``overrides`` ({section: {key: value}})."""
    params = yaml.safe_load((repo / "params.yaml").read_text())
    for section, values in overrides.items():
        params[section].update(values)
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def tool_env(**extra: str) -> dict[str, str]:
    """The environment of git, dvc and Ray commands: the venv first on PATH, a git identity, no Ray usage stats."""
    return {
        **os.environ,
        "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@t",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@t",
        "RAY_USAGE_STATS_ENABLED": "0",
        **extra,
    }


def run_command(args, cwd, env, *, check: bool = True, timeout: float = 900) -> subprocess.CompletedProcess:
    """Run a command, its output captured as text; with ``check``, a non-zero exit fails the test and shows
    the ends of the command's stdout and stderr."""
    result = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    if check:
        assert result.returncode == 0, (
            f"{' '.join(map(str, args))} failed:\n{result.stdout[-4000:]}\n{result.stderr[-5000:]}"
        )
    return result


def command_output(args, cwd, env) -> str:
    """``run_command``'s stdout and stderr together (dvc prints its progress to stderr)."""
    result = run_command(args, cwd, env)
    return result.stdout + result.stderr


@contextlib.contextmanager
def environment(**env: str) -> Iterator[None]:
    """``os.environ`` with ``env`` set inside the block, and as it was again after it."""
    import pytest

    with pytest.MonkeyPatch.context() as patch:
        for key, value in env.items():
            patch.setenv(key, value)
        yield


@contextlib.contextmanager
def local_ray(**env: str) -> Iterator[None]:
    """One local Ray instance for a test module's runs, its processes started with ``env`` in their environment.

    A stage uses the Ray its process already runs and leaves it running: the instance must still be up at the end.
    """
    import ray

    from pipeline.ray_runtime.cluster import init_ray

    with environment(**env):
        try:
            init_ray(None, num_cpus=max(2, os.cpu_count() or 1))
            yield
            assert ray.is_initialized(), "a stage shut down a Ray instance it had not started"
        finally:
            ray.shutdown()
