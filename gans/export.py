"""Export a generator as TorchScript with a ``signature.json``, checked for parity with the eager model."""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
from torch import nn

from gans.atomic import atomic_dir, atomic_file
from gans.config import GANConfig
from gans.errors import UserError

FORMAT = "gans-generator/1"
TORCHSCRIPT_FILE = "generator.pt"
SIGNATURE_FILE = "signature.json"
LATEST_FILE = "LATEST"


class ExportError(UserError):
    """The exported model disagrees with the eager one, or the target already exists."""


def params_hash(cfg: GANConfig) -> str:
    """Short, stable hash of a training config."""
    return hashlib.sha256(json.dumps(cfg.to_dict(), sort_keys=True).encode()).hexdigest()[:16]


def next_version(root: str | os.PathLike) -> str:
    """The next integer version under ``root`` ("1" when there is none)."""
    root = Path(root)
    taken = [int(p.name) for p in root.iterdir() if p.is_dir() and p.name.isdigit()] if root.is_dir() else []
    return str(max(taken, default=0) + 1)


def _trace(generator: nn.Module, z_dim: int) -> torch.jit.ScriptModule:
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore", (FutureWarning, DeprecationWarning))
        return torch.jit.trace(generator, torch.randn(2, z_dim), check_trace=False)


def parity(reference: nn.Module, candidate, z_dim: int, batch_sizes=(1, 5)) -> float:
    """Largest |candidate(z) − reference(z)| over a few batch sizes."""
    worst = 0.0
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for batch in batch_sizes:
            z = torch.randn(batch, z_dim, generator=generator)
            worst = max(worst, float((candidate(z) - reference(z)).abs().max()))
    return worst


def export_generator(
    generator: nn.Module,
    *,
    cfg: GANConfig,
    root: str | os.PathLike,
    version: str = "auto",
    atol: float = 1e-5,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write ``root/<version>/{generator.pt, signature.json}`` atomically and point ``root/LATEST`` at it."""
    generator = generator.cpu().eval()
    root = Path(root)
    version = next_version(root) if version == "auto" else version
    target = root / version
    if target.exists():
        raise ExportError(f"Export version {target} already exists; choose another export.version or 'auto'.")

    z_dim = cfg.model.z_dim
    channels, resolution = cfg.data.channels, cfg.data.resolution
    with atomic_dir(target) as tmp:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # TorchScript's deprecation notice (ONNX comes next)
            torch.jit.save(_trace(generator, z_dim), str(tmp / TORCHSCRIPT_FILE))
            loaded = torch.jit.load(str(tmp / TORCHSCRIPT_FILE))
        max_diff = parity(generator, loaded, z_dim)
        if max_diff > atol:
            raise ExportError(f"TorchScript output differs from the eager model by {max_diff:.3g} (> {atol}).")
        signature = {
            "format": FORMAT,
            "version": version,
            "model": cfg.model.name,
            "inputs": [{"name": "z", "shape": [-1, z_dim], "dtype": "float32", "distribution": "standard normal"}],
            "outputs": [{
                "name": "images",
                "shape": [-1, channels, resolution, resolution],
                "dtype": "float32",
                "layout": "NCHW",
                "value_range": [-1.0, 1.0],
            }],
            "z_dim": z_dim,
            "resolution": resolution,
            "channels": channels,
            "params_hash": params_hash(cfg),
            "files": {"torchscript": TORCHSCRIPT_FILE},
            "parity_max_abs_diff": max_diff,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            **(extra or {}),
        }
        (tmp / SIGNATURE_FILE).write_text(json.dumps(signature, indent=2) + "\n")
    with atomic_file(root / LATEST_FILE) as tmp:
        tmp.write_text(version + "\n")
    return target


def load_exported(directory: str | os.PathLike) -> tuple[torch.jit.ScriptModule, dict[str, Any]]:
    """(TorchScript generator, signature) of an exported version directory."""
    directory = Path(directory)
    signature = json.loads((directory / SIGNATURE_FILE).read_text())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        model = torch.jit.load(str(directory / signature["files"]["torchscript"]), map_location="cpu")
    return model.eval(), signature
