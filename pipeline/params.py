"""params.yaml → typed, validated parameters for every stage."""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import yaml

from gans.atomic import atomic_file
from gans.config import ConfigError, EvalConfig, ExportConfig, GANConfig, require_positive, section_from_mapping
from gans.errors import UserError

PARAMS_FILE = "params.yaml"


@dataclass(frozen=True)
class PathsConfig:
    """Where each stage writes; dvc.yaml reads the same keys (``${paths.*}``), so no path is spelled twice."""

    prepared: str = "data/prepared"
    """Prepared dataset directory (images.npy, manifest.json, preview.png)."""
    reference: str = "data/reference.npz"
    """Inception statistics of the prepared real images."""
    train: str = "artifacts/train"
    """Final full-state checkpoint and resolved config of the train stage."""
    train_live: str = "dvclive/train"
    """DVCLive directory of the train stage (per-step metrics and their plots)."""
    eval_metrics: str = "metrics/eval.json"
    """FID/KID metrics file (a DVC metrics file)."""
    eval_plots: str = "plots/eval"
    """Sample grid and loss curves (PNG)."""
    models: str = "models/generator"
    """Root of exported, versioned generators."""


@dataclass(frozen=True)
class RayConfig:
    address: Optional[str] = None
    """Ray cluster to join ("auto", "ray://host:10001", "127.0.0.1:6379"); null starts Ray locally."""
    num_workers: int = 2
    """Training workers (DDP processes)."""
    use_gpu: bool = False
    """One GPU per worker (DDP over NCCL) instead of CPUs (gloo)."""
    cpus_per_worker: float = 1.0
    """CPUs reserved by each worker."""
    storage_path: str = "runs/ray"
    """Where Ray Train persists checkpoints: a local path (relative to the repo) or a URI such as s3://bucket/runs."""
    max_failures: int = 0
    """Worker-group restarts on failure; a restart resumes from the latest checkpoint."""
    placement_strategy: str = "PACK"
    """PACK, SPREAD or STRICT_SPREAD (one worker per node)."""

    def __post_init__(self) -> None:
        require_positive(self, "ray", "num_workers", "cpus_per_worker")
        if self.max_failures < -1:
            raise ConfigError(f"ray.max_failures={self.max_failures} must be -1 (forever) or a non-negative integer.")
        allowed = ("PACK", "SPREAD", "STRICT_PACK", "STRICT_SPREAD")
        if self.placement_strategy not in allowed:
            raise ConfigError(f"ray.placement_strategy={self.placement_strategy!r} is not valid; allowed values: {', '.join(allowed)}.")


@dataclass(frozen=True)
class Params:
    gan: GANConfig = field(default_factory=GANConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    export: ExportConfig = field(default_factory=ExportConfig)
    ray: RayConfig = field(default_factory=RayConfig)
    paths: PathsConfig = field(default_factory=PathsConfig)


_GAN_SECTIONS = tuple(f.name for f in dataclasses.fields(GANConfig))
_OTHER_SECTIONS = {"eval": EvalConfig, "export": ExportConfig, "ray": RayConfig, "paths": PathsConfig}


def parse_params(raw: dict[str, Any]) -> Params:
    """Validate a params mapping: unknown sections or keys and bad values raise ``ConfigError``."""
    if not isinstance(raw, dict):
        raise ConfigError("params.yaml must be a mapping of sections.")
    allowed = (*_GAN_SECTIONS, *_OTHER_SECTIONS)
    unknown = sorted(set(raw) - set(allowed))
    if unknown:
        raise ConfigError(f"Unknown params section {unknown[0]!r}; allowed sections: {', '.join(allowed)}.")
    others = {name: section_from_mapping(cls, raw.get(name), name) for name, cls in _OTHER_SECTIONS.items()}
    return Params(gan=GANConfig.from_dict(raw), **others)


def load_params(path: str | os.PathLike = PARAMS_FILE) -> Params:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"No {path}; run from the repository root.")
    with path.open() as f:
        return parse_params(yaml.safe_load(f) or {})


def write_json(path: str | os.PathLike, data: Any) -> Path:
    """Write JSON atomically (temp file + rename)."""
    with atomic_file(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")
    return Path(path)


def print_config(stage: str, config: Any) -> None:
    """Print a stage's resolved config (each stage also saves it next to its outputs)."""
    data = dataclasses.asdict(config) if dataclasses.is_dataclass(config) else config
    print(f"[{stage}] config: {json.dumps(data, sort_keys=True, default=str)}", flush=True)


def run_stage(name: str, main) -> None:
    """Run a stage's ``main``; a user error (bad params, missing input) becomes one clear line and exit code 1."""
    try:
        main()
    except UserError as error:
        print(f"[{name}] error: {error}", file=sys.stderr, flush=True)
        sys.exit(1)
