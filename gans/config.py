"""Typed configuration: one frozen dataclass per params.yaml section.

The defaults here are the defaults of params.yaml (a test keeps them equal), so ``GANConfig()`` in a
notebook is the run ``dvc repro`` makes.

Every field has a docstring-style comment; ``__post_init__`` rejects bad values with a message that names
the key and the allowed values, so a typo in params.yaml fails at load time, not an hour into training.
Names of registry entries are checked by the code that owns the registry (``gans.loop.check_config`` for
model and loss, ``gans.prepare.stream.check_source_and_crop`` for source and crop), so this module imports
none of it and every stage that reads params does not depend on every model.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Optional, Union

from gans.errors import UserError


class ConfigError(UserError, ValueError):
    """A params.yaml key is unknown or its value is invalid."""


def _require(ok: bool, message: str) -> None:
    if not ok:
        raise ConfigError(message)


def require_positive(config, section: str, *keys: str) -> None:
    """Each named field of ``config`` must be > 0."""
    for key in keys:
        value = getattr(config, key)
        _require(value > 0, f"{section}.{key}={value} must be positive.")


def require_non_negative(config, section: str, *keys: str) -> None:
    """Each named field of ``config`` must be ≥ 0."""
    for key in keys:
        value = getattr(config, key)
        _require(value >= 0, f"{section}.{key}={value} must be non-negative.")


def require_auto_or_bool(config, section: str, *keys: str) -> None:
    """Each named field of ``config`` must be true, false or "auto"."""
    for key in keys:
        value = getattr(config, key)
        _require(
            isinstance(value, bool) or value == "auto",
            f"{section}.{key}={value!r} is not valid; allowed values: true, false, auto.",
        )


def require_registered(registry, value: str, key: str) -> None:
    """``value`` must name an entry of ``registry``; the message names ``key`` and the allowed values."""
    _require(value in registry, f"{key}={value!r} is not valid; allowed values: {', '.join(registry.names())}.")


@dataclass(frozen=True)
class DataConfig:
    source: str = "lfw-subset"
    """Where images come from: a name in ``gans.prepare.sources.SOURCES``."""
    path: Optional[str] = None
    """Folder or .zip file for the folder and zip sources; root folder of the torchvision sources."""
    download: bool = False
    """torchvision sources (celeba, mnist, cifar10, svhn): download when missing (needs internet)."""
    crop: str = "none"
    """How a square crop is taken from each image: a name in ``gans.prepare.crops.CROPS``."""
    resolution: int = 32
    """Side of the square training images, in pixels."""
    channels: int = 1
    """1 (grayscale) or 3 (RGB)."""
    limit: Optional[int] = None
    """Keep at most this many images (None: all)."""
    min_face_prob: float = 0.9
    """crop=mtcnn: keep the most confident face only if its probability reaches this."""
    margin: float = 0.2
    """crop=mtcnn: widen the face box by this fraction of its longer side before squaring it."""
    min_size: int = 0
    """Smallest accepted crop side in pixels; smaller crops are skipped as "too small" (0: any, upscaling allowed)."""
    workers: int = 1
    """Processes that decode and crop images (0: one per core); the output does not depend on it."""
    chunk_size: int = 16
    """Images per unit of work; crop=mtcnn detects the same-size images of a chunk in one batch.

    Batched detection matches one-at-a-time detection to ~1e-4 px, so changing chunk_size (or the device)
    can, rarely, move a face crop by a pixel; the same params give the same bytes at any ``workers``."""
    max_pixels: int = 50_000_000
    """Largest accepted image (width × height); larger files are refused as "too large" (decompression bombs)."""

    def __post_init__(self) -> None:
        # source and crop are checked by gans.prepare (check_source_and_crop), the only code that uses them.
        _require(8 <= self.resolution <= 1024, f"data.resolution={self.resolution} must be in [8, 1024].")
        _require(self.channels in (1, 3), f"data.channels={self.channels} is not valid; allowed values: 1, 3.")
        _require(self.limit is None or self.limit > 0, f"data.limit={self.limit} must be a positive integer or null.")
        _require(0 <= self.min_face_prob <= 1, f"data.min_face_prob={self.min_face_prob} must be in [0, 1].")
        _require(0 <= self.margin <= 2, f"data.margin={self.margin} must be in [0, 2].")
        require_non_negative(self, "data", "min_size", "workers")
        require_positive(self, "data", "max_pixels", "chunk_size")


@dataclass(frozen=True)
class ModelConfig:
    name: str = "dcgan"
    """Architecture family: a name in ``gans.models.MODELS``."""
    z_dim: int = 64
    """Length of the latent vector z ~ N(0, I)."""
    g_width: int = 32
    """Generator base width (DCGAN: channels of the last hidden layer; MLP: hidden units = 2 × g_width)."""
    d_width: int = 32
    """Discriminator base width (DCGAN: channels of the first conv; MLP: hidden units = 4 × d_width)."""
    d_dropout: float = 0.3
    """Dropout before the MLP discriminator's logit (ignored by conv models)."""
    d_norm: str = "auto"
    """DCGAN discriminator normalisation: batch, none, or auto (none for wgan-gp, whose penalty is per sample)."""
    attention_res: Optional[int] = None
    """SAGAN: side of the feature maps that get self-attention (None: resolution / 4, i.e. 32 for 128 px)."""

    def __post_init__(self) -> None:
        # name (and the resolutions it can make) is checked by gans.models.check_model_config, where families live.
        require_positive(self, "model", "z_dim", "g_width", "d_width")
        _require(0 <= self.d_dropout < 1, f"model.d_dropout={self.d_dropout} must be in [0, 1).")
        _require(
            self.d_norm in ("auto", "batch", "none"),
            f"model.d_norm={self.d_norm!r} is not valid; allowed values: auto, batch, none.",
        )


@dataclass(frozen=True)
class LossConfig:
    name: str = "bce"
    """Adversarial loss: a name in ``gans.losses.LOSSES``."""
    label_smoothing: float = 0.1
    """One-sided label smoothing s: the discriminator's real target is 1 − s (BCE only)."""
    label_flip_prob: float = 0.0
    """Noisy labels: probability that a real/fake target is swapped in the D loss (BCE only)."""
    gp_weight: float = 10.0
    """λ of the WGAN-GP gradient penalty (wgan-gp only)."""
    r1_weight: float = 0.0
    """γ of the R1 penalty (Mescheder et al. 2018), γ/2·E‖∇D(real)‖², added to any loss's D update (0: off)."""

    def __post_init__(self) -> None:
        # name is checked by gans.losses.check_loss_config, where the losses live.
        require_non_negative(self, "loss", "gp_weight", "r1_weight")
        _require(0 <= self.label_smoothing < 0.5, f"loss.label_smoothing={self.label_smoothing} must be in [0, 0.5).")
        _require(0 <= self.label_flip_prob < 0.5, f"loss.label_flip_prob={self.label_flip_prob} must be in [0, 0.5).")


@dataclass(frozen=True)
class OptimConfig:
    """Adam for G and D with separate learning rates and betas (TTUR, Heusel et al. 2017)."""

    lr_g: float = 2e-4
    """Generator learning rate."""
    lr_d: float = 2e-4
    """Discriminator learning rate."""
    betas_g: tuple[float, float] = (0.5, 0.999)
    """Generator Adam betas."""
    betas_d: tuple[float, float] = (0.5, 0.999)
    """Discriminator Adam betas."""

    def __post_init__(self) -> None:
        for key in ("lr_g", "lr_d"):
            _require(0 < getattr(self, key) < 1, f"optim.{key}={getattr(self, key)} must be in (0, 1).")
        for key in ("betas_g", "betas_d"):
            betas = getattr(self, key)
            _require(
                len(betas) == 2 and all(0 <= b < 1 for b in betas),
                f"optim.{key}={list(betas)} must be two numbers in [0, 1).",
            )

    @property
    def ttur_ratio(self) -> float:
        """lr_d / lr_g."""
        return self.lr_d / self.lr_g


@dataclass(frozen=True)
class AugmentConfig:
    """Differentiable augmentation of everything D sees (DiffAugment), optionally adaptive (ADA-style)."""

    policy: tuple[str, ...] = ("color", "translation", "cutout")
    """Transforms, in order: names in ``gans.augment.AUGMENTATIONS`` (color, translation, cutout); empty: off.

    On by default: on a small set (the 100 LFW faces) D otherwise memorises the real images and wins. The
    measured effect (``bench/quality.py``) is in docs/benchmarks.md, "Augmentation on 100 faces"."""
    p: float = 1.0
    """Probability that each transform is applied to an image (1: DiffAugment); the start value is 0 when adaptive."""
    adaptive: bool = False
    """Steer ``p`` from D's real logits: up when E[sign(D(real))] > ``target``, down below it (ADA)."""
    target: float = 0.6
    """Adaptive mode: the E[sign(D(real))] that ``p`` is steered to."""
    ada_kimg: float = 10.0
    """Adaptive mode: thousands of real images over which ``p`` can move from 0 to 1."""

    def __post_init__(self) -> None:
        # policy names are checked by gans.augment.check_augment_config, where the transforms live.
        _require(0 <= self.p <= 1, f"augment.p={self.p} must be in [0, 1].")
        _require(0 <= self.target < 1, f"augment.target={self.target} must be in [0, 1).")
        require_positive(self, "augment", "ada_kimg")


@dataclass(frozen=True)
class TrainConfig:
    seed: int = 0
    """Base seed; each worker uses seed * world_size + rank for its noise."""
    steps: int = 2000
    """Number of generator updates."""
    batch_size: int = 32
    """Images per update over all workers (the global batch); each of W workers takes batch_size / W of it, so
    a run trains the same way at any worker count."""
    n_critic: Optional[int] = None
    """Discriminator updates per generator update (None: 5 for wgan-gp, 1 otherwise)."""
    ema_decay: float = 0.995
    """Decay of the exponential moving average of G's weights (0 copies G every step)."""
    ema_rampup: Optional[float] = 0.05
    """StyleGAN2-ADA's EMA warm-up: the average's half-life is at most this fraction of the steps so far, so G_ema
    starts as G and reaches ``ema_decay`` at step ln 0.5 / ln(ema_decay) / ema_rampup (None or 0: ``ema_decay``
    from the first step; ``gans.ema.ema_decay_at``)."""
    log_every: int = 25
    """Log losses, accuracies and gradient norms every this many steps."""
    snapshot_every: int = 1000
    """Write a full-state checkpoint every this many steps (and at the end)."""
    n_fixed: int = 64
    """Number of fixed evaluation latents (sample grids), stored with the checkpoint."""
    resume: bool = False
    """Continue from the latest checkpoint of the run instead of starting fresh."""
    amp: Union[bool, str] = "auto"
    """Mixed precision (autocast): true, false, or auto — decided on the machine (``gans.precision``): autocast
    when a short calibration measures it faster than float32 (on the CPU bfloat16, never tried where the CPU
    has no native bf16; on CUDA bfloat16 where the GPU has it natively, else float16 with one GradScaler per
    network)."""
    channels_last: Union[bool, str] = "auto"
    """Channels-last memory format for the models and image batches (NHWC convolutions): true, false, or auto
    (the calibration's choice)."""
    fid_every: int = 2000
    """Score G_ema's FID (fast extractor) every this many steps, which are also log steps (0: never).

    The scores are logged, reported to Ray, and the weights with the best one are kept beside the final ones."""
    fid_steps: tuple[int, ...] = ()
    """More steps at which G_ema is scored as at ``fid_every``'s, each also a snapshot (a sweep trial's: where
    its scheduler compares trials, and its last step)."""
    fid_samples: int = 128
    """Generated images per in-training FID (fewer than evaluate's: the score ranks, evaluate measures)."""
    stop_on: tuple[str, ...] = ("divergence",)
    """Failure modes (``gans.diagnosis.DIAGNOSES``) that end a run early. A run stopped by divergence keeps the
    weights of its last good snapshot; a sweep trial stopped by any of them fails."""
    sync_batchnorm: bool = True
    """On several CUDA workers, BatchNorm normalises over the global batch (``torch.nn.SyncBatchNorm``), so a
    run trains the same at any worker count. Not for a discriminator with an input-gradient penalty (WGAN-GP,
    R1: SyncBatchNorm has no double backward), and not on the CPU, where torch 2.14 has no SyncBatchNorm
    kernel: there each worker normalises its own batch (statistics averaged at snapshots)."""
    deterministic: bool = False
    """Deterministic kernels (cuDNN deterministic, no cuDNN benchmark, ``torch.use_deterministic_algorithms``,
    ``CUBLAS_WORKSPACE_CONFIG``), so that a resumed GPU run is bit-identical to an uninterrupted one; slower.
    Process-wide once set. The CPU is deterministic without it (same threads, same results)."""

    def __post_init__(self) -> None:
        require_positive(self, "train", "steps", "batch_size", "log_every", "snapshot_every", "n_fixed")
        require_auto_or_bool(self, "train", "amp", "channels_last")
        require_non_negative(self, "train", "fid_every")
        _require(
            all(0 < step <= self.steps for step in self.fid_steps),
            f"train.fid_steps={list(self.fid_steps)} must lie between 1 and train.steps={self.steps}.",
        )
        _require(
            self.fid_samples >= 2, f"train.fid_samples={self.fid_samples} must be at least 2 (FID needs a covariance)."
        )
        _require(
            self.n_critic is None or self.n_critic > 0, f"train.n_critic={self.n_critic} must be positive or null."
        )
        require_non_negative(self, "train", "seed")
        _require(0 <= self.ema_decay < 1, f"train.ema_decay={self.ema_decay} must be in [0, 1).")
        _require(
            self.ema_rampup is None or self.ema_rampup >= 0,
            f"train.ema_rampup={self.ema_rampup} must be non-negative or null.",
        )

    @property
    def scored(self) -> bool:
        """Whether the run scores G_ema at all (and so needs the reference statistics)."""
        return self.fid_every > 0 or bool(self.fid_steps)

    def scores_at(self, step: int) -> bool:
        """Whether G_ema is scored after ``step``: a multiple of ``fid_every``, or one of ``fid_steps``."""
        return (self.fid_every > 0 and step % self.fid_every == 0) or step in self.fid_steps


@dataclass(frozen=True)
class EvalConfig:
    n_fake: int = 500
    """Generated images per draw (FID, KID, precision/recall), unless ``protocol`` names a standard count."""
    protocol: str = "custom"
    """custom (``n_fake``), or a standard protocol of StyleGAN2-ADA's metrics: fid10k_full, fid50k_full (10,000 or
    50,000 generated images against the statistics of the full dataset, which the reference always holds)."""
    batch_size: int = 50
    """Images per Inception forward."""
    seed: int = 2026
    """Seed of the held-out draws every reported metric comes from (seed, seed + 1, … for ``fid_draws``)."""
    selection_seed: int = 2025
    """Seed of the selection draw (final against best snapshot). It, ``IN_TRAINING_FID_SEED`` and the reported
    draws' seeds are all different, so no reported sample was seen by a choice of weights."""
    kid_subsets: int = 50
    """Number of KID subsets."""
    kid_subset_size: int = 100
    """KID subset size (capped at the smaller of the real and generated counts)."""
    grid_size: int = 64
    """Images in the sample grid (taken from the fixed latents)."""
    fid_draws: int = 1
    """Held-out draws of ``n_fake`` images the selected generator is scored on; ``fid`` is the first one's, and
    with more ``fid_draws_std`` is their spread (a check of the bootstrap ``fid_std``)."""
    bootstrap: int = 200
    """Bootstrap replicates of ``fid_std`` (real and generated features resampled; no extra Inception pass)."""
    standing_stats: bool = True
    """Recompute the generators' BatchNorm statistics from their own samples before scoring and export."""
    standing_samples: int = 1024
    """Latents the standing statistics are averaged over."""
    training_stats_fid: bool = False
    """Also score the selected weights with the BatchNorm statistics training left (``fid_training_bn_stats``:
    what standing statistics change); one more pass of ``n_fake`` images through Inception."""
    prc_neighborhood: int = 3
    """k of the k-NN balls of precision/recall (torch-fidelity's default)."""
    prc_subsets: int = 10
    """Precision/recall are taken at equal counts: the larger set is subsampled this many times, and averaged."""
    floor_splits: int = 10
    """Random splits of the real set into halves for the achievable floor (``fid_real_halves``)."""

    def __post_init__(self) -> None:
        require_positive(
            self,
            "eval",
            "n_fake",
            "batch_size",
            "kid_subsets",
            "kid_subset_size",
            "grid_size",
            "fid_draws",
            "bootstrap",
            "standing_samples",
            "prc_neighborhood",
            "prc_subsets",
            "floor_splits",
        )
        _require(self.n_fake >= 2, f"eval.n_fake={self.n_fake} must be at least 2 (FID needs a covariance).")
        _require(
            self.protocol in EVAL_PROTOCOLS,
            f"eval.protocol={self.protocol!r} is not valid; allowed values: {', '.join(EVAL_PROTOCOLS)}.",
        )
        for name, seed in (("eval.selection_seed", self.selection_seed), ("the in-training FID", IN_TRAINING_FID_SEED)):
            _require(
                seed not in self.report_seeds,
                f"eval.seed={self.seed} with eval.fid_draws={self.fid_draws} reuses seed {seed}, which draws "
                f"{name}'s samples; choose another eval.seed so the reported draws stay held out.",
            )
        _require(
            self.selection_seed != IN_TRAINING_FID_SEED,
            f"eval.selection_seed={self.selection_seed} is the in-training FID's seed; choose another.",
        )

    @property
    def samples(self) -> int:
        """Generated images per draw: the protocol's count, or ``n_fake``."""
        return EVAL_PROTOCOLS[self.protocol] or self.n_fake

    @property
    def report_seeds(self) -> tuple[int, ...]:
        """Seeds of the held-out draws: no selection and no in-training FID saw their samples."""
        return tuple(self.seed + draw for draw in range(self.fid_draws))


EVAL_PROTOCOLS = {"custom": None, "fid10k_full": 10_000, "fid50k_full": 50_000}
"""``eval.protocol``: generated images per draw (None: ``eval.n_fake``)."""

IN_TRAINING_FID_SEED = 90_001
"""Seed of the in-training FID's latents (sweep reports, best-snapshot choice); evaluate never reports on it."""


@dataclass(frozen=True)
class ExportConfig:
    version: str = "auto"
    """Version directory name under the export root; "auto" takes the next integer."""
    parity_atol: float = 1e-5
    """Largest allowed |scripted − eager| difference on the parity check."""

    def __post_init__(self) -> None:
        _require(
            self.version == "auto" or (self.version.replace("-", "").replace(".", "").replace("_", "").isalnum()),
            f"export.version={self.version!r} must be 'auto' or letters, digits, '.', '-' and '_'.",
        )
        require_positive(self, "export", "parity_atol")


@dataclass(frozen=True)
class GANConfig:
    """Everything that defines a training run; stored inside every checkpoint."""

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)

    def __post_init__(self) -> None:
        if self.model.attention_res is not None:
            allowed = [2**k for k in range(3, 11) if 2**k < self.data.resolution]
            _require(
                self.model.attention_res in allowed,
                f"model.attention_res={self.model.attention_res} is not valid at resolution {self.data.resolution}; "
                f"allowed values: {', '.join(map(str, allowed))} (or null).",
            )

    @property
    def d_norm(self) -> str:
        """The discriminator normalisation actually used (``model.d_norm`` with auto resolved)."""
        if self.model.d_norm != "auto":
            return self.model.d_norm
        return "none" if self.loss.name == "wgan-gp" else "batch"

    @property
    def n_critic(self) -> int:
        """D updates per G update (``train.n_critic`` with None resolved: 5 for wgan-gp, else 1)."""
        if self.train.n_critic is not None:
            return self.train.n_critic
        return 5 if self.loss.name == "wgan-gp" else 1

    @property
    def attention_res(self) -> int:
        """SAGAN attention feature-map side (``model.attention_res`` or resolution / 4)."""
        return self.model.attention_res or self.data.resolution // 4

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return (self.data.channels, self.data.resolution, self.data.resolution)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, params: Mapping[str, Any]) -> GANConfig:
        """Build from a params mapping; sections other than this config's are ignored."""
        hints = typing.get_type_hints(cls)
        return cls(
            **{f.name: section_from_mapping(hints[f.name], params.get(f.name), f.name) for f in dataclasses.fields(cls)}
        )


def section_from_mapping(cls: type, values: Optional[Mapping[str, Any]], section: str):
    """Build the dataclass ``cls`` from one params.yaml section, checking keys and types."""
    values = {} if values is None else values
    _require(isinstance(values, Mapping), f"params section {section!r} must be a mapping of keys to values.")
    hints = typing.get_type_hints(cls)
    allowed = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(values) - set(allowed))
    _require(not unknown, f"Unknown key {section}.{unknown[0] if unknown else ''}; allowed keys: {', '.join(allowed)}.")
    return cls(**{key: _coerce(value, hints[key], f"{section}.{key}") for key, value in values.items()})


def _coerce(value: Any, hint: Any, key: str) -> Any:
    """Check ``value`` against a field's type hint; YAML lists become tuples, ints become floats."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is typing.Union:  # Optional[X], or a choice of types (Union[bool, str]: true, false or "auto")
        if value is None and type(None) in args:
            return None
        options = [a for a in args if a is not type(None)]
        if len(options) == 1:
            return _coerce(value, options[0], key)
        for option in options:
            try:
                return _coerce(value, option, key)
            except ConfigError:
                pass
        return value  # fits none: the dataclass's own check names the allowed values
    if origin is tuple and len(args) == 2 and args[1] is Ellipsis:  # tuple[X, ...]: a list of any length
        _require(isinstance(value, (list, tuple)), f"{key}={value!r} must be a list.")
        return tuple(_coerce(v, args[0], key) for v in value)
    if origin is tuple:
        _require(
            isinstance(value, (list, tuple)) and len(value) == len(args),
            f"{key}={value!r} must be a list of {len(args)} values.",
        )
        return tuple(_coerce(v, a, key) for v, a in zip(value, args))
    if hint is float:
        _require(isinstance(value, (int, float)) and not isinstance(value, bool), f"{key}={value!r} must be a number.")
        return float(value)
    if hint is int:
        _require(isinstance(value, int) and not isinstance(value, bool), f"{key}={value!r} must be an integer.")
        return value
    if hint is bool:
        _require(isinstance(value, bool), f"{key}={value!r} must be true or false.")
        return value
    if hint is str:
        _require(isinstance(value, str), f"{key}={value!r} must be a string.")
        return value
    return value
