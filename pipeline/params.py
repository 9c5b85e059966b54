"""params.yaml → typed, validated parameters for every stage."""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Union

import yaml

from gans.atomic import atomic_file
from gans.config import ConfigError, EvalConfig, ExportConfig, GANConfig, require_positive, section_from_mapping
from gans.errors import UserError

PARAMS_FILE = "params.yaml"
TRAIN_RUN_FILE = "run.json"
"""In ``paths.train``, beside the checkpoint: the train stage's resolved config, sweep trial and replicas."""
EVAL_GRID_FILE, EVAL_CURVES_FILE = "samples.png", "losses.png"
"""In ``paths.eval_plots``: the evaluate stage's sample grid and loss curves."""


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
    sweep_best: str = "sweep/best.yaml"
    """The sweep winner's overrides of params.yaml (a params file of the train stage; empty: no sweep)."""
    sweep_trials: str = "sweep/trials.csv"
    """One row per sweep trial: swept and resolved values, FID at each report, status, steps, wall time."""
    sweep_metrics: str = "metrics/sweep.json"
    """Best FID and params, trials by status, trial-steps used (a DVC metrics file)."""
    sweep_plots: str = "plots/sweep"
    """FID curves per trial and the best-FID heat map (PNG), and the curves as CSV for ``dvc plots``."""


AUTO_WORKERS = "auto"
RAY_JOB_VARIABLE = (
    "RAY_JOB_CONFIG_JSON_ENV_VAR"  # Ray's job supervisor sets it, with RAY_ADDRESS, for a job's entrypoint
)


@dataclass(frozen=True)
class RayConfig:
    address: Optional[str] = None
    """Ray cluster to join ("auto", "ray://host:10001", "127.0.0.1:6379"); null: the cluster of the Ray job this
    runs in (``cluster/submit.sh``), else a private local Ray."""
    num_workers: Union[int, str] = "auto"
    """Training workers (DDP processes), or auto: one worker with every CPU of a local Ray (one process with all
    threads trains faster than DDP between processes of one machine); on a cluster (``address`` set) one per GPU
    (``use_gpu``) or one per ``cpus_per_worker`` CPUs. ``train.batch_size`` is the global batch either way."""
    use_gpu: bool = False
    """One GPU per worker (DDP over NCCL) instead of CPUs (gloo)."""
    cpus_per_worker: float = 1.0
    """CPUs reserved by each worker, and its torch threads (with ``num_workers: auto`` on a local Ray: all CPUs)."""
    storage_path: str = "runs/ray"
    """Where Ray Train persists checkpoints: a local path (relative to the repo) or a URI such as s3://bucket/runs."""
    max_failures: int = 0
    """Worker-group restarts on failure; a restart resumes from the latest checkpoint."""
    placement_strategy: str = "PACK"
    """PACK, SPREAD or STRICT_SPREAD (one worker per node)."""

    @property
    def cluster_address(self) -> Optional[str]:
        """The cluster the stages join: ``address``, else that of the Ray job running this process, else None (local)."""
        if self.address:
            return self.address
        if os.environ.get(RAY_JOB_VARIABLE) and os.environ.get("RAY_ADDRESS"):
            return os.environ["RAY_ADDRESS"]  # the job's cluster (its GCS address, as the job supervisor sets it)
        return None

    def __post_init__(self) -> None:
        require_positive(self, "ray", "cpus_per_worker")
        if self.num_workers != AUTO_WORKERS and not (isinstance(self.num_workers, int) and self.num_workers > 0):
            raise ConfigError(f"ray.num_workers={self.num_workers!r} must be a positive integer or auto.")
        if self.max_failures < -1:
            raise ConfigError(f"ray.max_failures={self.max_failures} must be -1 (forever) or a non-negative integer.")
        allowed = ("PACK", "SPREAD", "STRICT_PACK", "STRICT_SPREAD")
        if self.placement_strategy not in allowed:
            raise ConfigError(
                f"ray.placement_strategy={self.placement_strategy!r} is not valid; allowed values: {', '.join(allowed)}."
            )


SEARCHES = ("grid", "random")
SCHEDULERS = ("asha", "fifo")
SWEEP_METRICS = ("fid", "kid")


@dataclass(frozen=True)
class SweepConfig:
    """The sweep stage: Ray Tune over TTUR ratios × losses (× models); each trial a short Ray Train run."""

    enabled: bool = True
    """false: the stage writes an empty winner in seconds and train uses params.yaml as it is."""
    search: str = "grid"
    """grid: every combination; random: ``num_samples`` draws (ratios log-uniform in [min, max] of the list)."""
    num_samples: int = 8
    """random search: trials drawn."""
    ttur_ratios: tuple[float, ...] = (1.0, 4.0)
    """lr_d / lr_g values (random search: the range's ends)."""
    losses: tuple[str, ...] = ("bce", "hinge")
    """Losses to try (bce, hinge, wgan-gp, lsgan)."""
    models: Optional[tuple[str, ...]] = None
    """Models to try (null: model.name only)."""
    lr_g: Optional[float] = None
    """G's learning rate, around which the ratios set D's (null: optim.lr_g)."""
    betas: Optional[tuple[float, float]] = None
    """Adam betas of G and D in every trial (null: each loss's known-good betas; hinge and wgan-gp (0, 0.9), else optim's)."""
    n_critic: Optional[int] = None
    """D updates per G update in every trial (null: 5 for wgan-gp, 1 otherwise)."""
    steps: int = 400
    """Budget per trial, in generator steps (train.steps is the winner's, trained afterwards)."""
    fid_every: Optional[int] = None
    """Also report the in-training FID (and take a checkpoint) every this many steps; null: only where the
    scheduler compares trials (ASHA's rungs) and at a trial's last step, so no Inception pass goes to a report
    that no decision reads (``report_steps``)."""
    scheduler: str = "asha"
    """asha: stop weak trials early at rungs grace_steps × reduction_factor^k; fifo: run every trial to the end."""
    grace_steps: int = 200
    """ASHA: steps every trial runs before it can be stopped."""
    reduction_factor: int = 3
    """ASHA: each rung keeps the best 1/reduction_factor of the trials that reached it."""
    workers_per_trial: int = 1
    """DDP workers of each trial (each reserves ``cpus_per_worker`` CPUs, or a GPU with ray.use_gpu)."""
    cpus_per_worker: Optional[float] = 2.0
    """CPUs (and torch threads) of each trial worker (null: ray.cpus_per_worker)."""
    max_concurrent: int = 1
    """Trials running at once; all their workers must fit the cluster together (checked before the first trial).

    One at a time, ASHA sees the trials in a fixed order, so a rerun makes the same decisions; several at
    once, which trial reaches a rung first (and so is never stopped there) depends on timing."""
    resume: bool = False
    """Continue an interrupted sweep (finished trials are not rerun) instead of starting fresh."""
    seeds: Optional[tuple[int, ...]] = None
    """Training seeds each configuration is repeated over (a grid axis; null: train.seed alone). The winner is
    the configuration with the best mean over its seeds (at the last step all of them reached), and the noise
    of that mean is their spread."""
    metric: str = "fid"
    """What trials report to the scheduler and the winner is ranked by: fid, or kid (unbiased: suits a small
    real set). Either is taken at a trial's last report, with its bootstrap noise."""

    def __post_init__(self) -> None:
        require_positive(self, "sweep", "num_samples", "steps", "grace_steps", "workers_per_trial", "max_concurrent")
        if self.fid_every is not None and self.fid_every < 1:
            raise ConfigError(f"sweep.fid_every={self.fid_every} must be positive or null.")
        if self.cpus_per_worker is not None and not self.cpus_per_worker > 0:
            raise ConfigError(f"sweep.cpus_per_worker={self.cpus_per_worker} must be positive or null.")
        for key, value, allowed in (
            ("search", self.search, SEARCHES),
            ("scheduler", self.scheduler, SCHEDULERS),
            ("metric", self.metric, SWEEP_METRICS),
        ):
            if value not in allowed:
                raise ConfigError(f"sweep.{key}={value!r} is not valid; allowed values: {', '.join(allowed)}.")
        for key in ("ttur_ratios", "losses") + (("models",) if self.models is not None else ()):
            if not getattr(self, key):
                raise ConfigError(f"sweep.{key} is empty, so the sweep has nothing to try; list at least one value.")
        bad_ratio = next((r for r in self.ttur_ratios if not r > 0), None)
        if bad_ratio is not None:
            raise ConfigError(f"sweep.ttur_ratios holds {bad_ratio}; every lr_d / lr_g ratio must be positive.")
        if self.search == "random" and len(self.ttur_ratios) != 2:
            raise ConfigError(f"sweep.ttur_ratios={list(self.ttur_ratios)} must be [min, max] for search: random.")
        if self.lr_g is not None and not self.lr_g > 0:
            raise ConfigError(f"sweep.lr_g={self.lr_g} must be positive or null.")
        if self.betas is not None and not all(0 <= b < 1 for b in self.betas):
            raise ConfigError(f"sweep.betas={list(self.betas)} must be two values in [0, 1) or null.")
        if self.n_critic is not None and self.n_critic < 1:
            raise ConfigError(f"sweep.n_critic={self.n_critic} must be positive or null.")
        if self.seeds is not None and (not self.seeds or len(set(self.seeds)) != len(self.seeds)):
            raise ConfigError(f"sweep.seeds={list(self.seeds)} must list distinct seeds, or be null (train.seed).")
        if self.seeds is not None and len(self.seeds) > 1 and self.search != "grid":
            raise ConfigError(
                f"sweep.seeds lists {len(self.seeds)} seeds, which repeat grid points; use search: grid, "
                "or one seed with search: random."
            )
        if self.fid_every and self.steps % self.fid_every:
            raise ConfigError(
                f"sweep.steps={self.steps} must be a multiple of sweep.fid_every={self.fid_every}, "
                "so every trial ends on a scored step."
            )
        if self.steps < self.grace_steps:
            raise ConfigError(
                f"sweep.steps={self.steps} is smaller than sweep.grace_steps={self.grace_steps}; "
                "the budget must cover the grace period."
            )
        if self.reduction_factor < 2:
            raise ConfigError(f"sweep.reduction_factor={self.reduction_factor} must be at least 2.")

    def report_steps(self) -> tuple[int, ...]:
        """The steps at which a trial scores, reports and checkpoints, in order: ASHA's rungs below ``steps``
        (``grace_steps × reduction_factor^k``, where ``ray_runtime.tuning.asha`` compares trials; none with
        fifo), every ``fid_every`` steps when set, and ``steps`` itself."""
        scored, rung = {self.steps}, self.grace_steps
        while self.scheduler == "asha" and rung < self.steps:
            scored.add(rung)
            rung *= self.reduction_factor
        if self.fid_every:
            scored.update(range(self.fid_every, self.steps + 1, self.fid_every))
        return tuple(sorted(scored))


@dataclass(frozen=True)
class Params:
    gan: GANConfig = field(default_factory=GANConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    export: ExportConfig = field(default_factory=ExportConfig)
    ray: RayConfig = field(default_factory=RayConfig)
    sweep: SweepConfig = field(default_factory=SweepConfig)
    paths: PathsConfig = field(default_factory=PathsConfig)
    from_sweep: tuple[str, ...] = ()
    """The ``section.key`` names whose values came from the sweep winner (``load_params(with_sweep_winner=True)``)."""


_GAN_SECTIONS = tuple(f.name for f in dataclasses.fields(GANConfig))
_OTHER_SECTIONS = {
    "eval": EvalConfig,
    "export": ExportConfig,
    "ray": RayConfig,
    "sweep": SweepConfig,
    "paths": PathsConfig,
}


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


def _read_yaml(path: Path, missing: str) -> Any:
    if not path.is_file():
        raise ConfigError(missing)
    with path.open() as f:
        try:
            return yaml.safe_load(f)
        except yaml.YAMLError as error:
            raise ConfigError(f"{path} is not valid YAML ({str(error).splitlines()[0]}).") from None


def load_params(path: str | os.PathLike = PARAMS_FILE, *, with_sweep_winner: bool = False) -> Params:
    """params.yaml, typed; ``with_sweep_winner`` applies the sweep winner's overrides (``paths.sweep_best``)."""
    path = Path(path)
    raw = _read_yaml(path, f"No {path}; run from the repository root.") or {}
    params = parse_params(raw)
    if not with_sweep_winner:
        return params
    best = Path(params.paths.sweep_best)
    winner = _read_yaml(best, f"No {best}; run the sweep stage first (dvc repro sweep).") or {}
    overrides = {section: winner[section] for section in _GAN_SECTIONS if section in winner}
    if not all(isinstance(values, dict) for values in overrides.values()):
        raise ConfigError(f"{best} must map params sections to keys and values.")
    merged = {**raw, **{section: {**(raw.get(section) or {}), **values} for section, values in overrides.items()}}
    swept = tuple(f"{section}.{key}" for section, values in overrides.items() for key in values)
    return dataclasses.replace(parse_params(merged), from_sweep=swept)


def sweep_winner(params: Params) -> dict[str, Any]:
    """The ``trial`` record of the sweep winner (id, FID, swept values), or {} without a sweep."""
    best = Path(params.paths.sweep_best)
    winner = (_read_yaml(best, f"No {best}.") or {}) if best.is_file() else {}
    return dict(winner.get("trial") or {})


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
