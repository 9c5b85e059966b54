"""Export a generator as TorchScript and ONNX with a ``signature.json``, both checked for parity with the eager model.

A version directory holds ``generator.pt`` (TorchScript), ``generator.onnx`` (one self-contained file, spectral
norm folded into plain weights) and ``signature.json``; ``load_backend`` turns either format into a NumPy
callable for a model server.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn
from torch.nn.utils import parametrize

from gans.atomic import atomic_dir, atomic_file
from gans.config import GANConfig
from gans.errors import UserError
from gans.models import MODELS

FORMAT = "gans-generator/1"
TORCHSCRIPT_FILE = "generator.pt"
ONNX_FILE = "generator.onnx"
SIGNATURE_FILE = "signature.json"
LATEST_FILE = "LATEST"
FILES = {"torchscript": TORCHSCRIPT_FILE, "onnx": ONNX_FILE}
BACKENDS = tuple(sorted(FILES))
PARITY_BATCH_SIZES = (1, 5, 17)  # 1 and an odd size beyond the traced/exported example (2) catch baked-in shapes

Generate = Callable[[np.ndarray], np.ndarray]
"""float32 latents [N, z_dim] → float32 images [N, C, R, R] in [-1, 1]."""


class ExportError(UserError):
    """The exported model disagrees with the eager one, the target already exists, or an export is incomplete."""


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


def fold_spectral_norm(generator: nn.Module, cfg: GANConfig) -> nn.Module:
    """An eval-mode copy of ``generator`` with every parametrization (spectral norm) folded into a plain weight.

    The copy is built fresh from ``cfg`` and loaded from the state dict (buffers such as standing BatchNorm
    statistics included): removing parametrizations from a ``copy.deepcopy`` would also strip the original,
    since both share the generated ``Parametrized*`` class. ``generator`` is left untouched.
    """
    folded = MODELS.get(cfg.model.name).generator(cfg)
    folded.load_state_dict(generator.state_dict())
    # eval() first: folding reads the parametrized weight once, and in training mode spectral norm would run a
    # power iteration (moving u) and fold a weight the eval-mode original never uses.
    folded.eval()
    for module in [m for m in folded.modules() if parametrize.is_parametrized(m)]:
        for name in list(module.parametrizations):
            parametrize.remove_parametrizations(module, name, leave_parametrized=True)
    return folded


def _export_onnx(generator: nn.Module, z_dim: int, path: Path) -> int:
    """Write ``generator`` to ``path`` as one ONNX file with a dynamic batch; returns the opset used."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.export's notices about internals; failures still raise
        program = torch.onnx.export(
            generator,
            (torch.randn(2, z_dim),),
            str(path),
            input_names=["z"],
            output_names=["images"],
            dynamic_shapes={"z": {0: torch.export.Dim("batch")}},
            external_data=False,  # torch 2.14's default would write the weights to a .onnx.data side file
            verbose=False,  # no per-pass progress lines in the stage output
        )
    return int(program.model.opset_imports[""])


def parity(
    reference: nn.Module, candidate: Callable[[torch.Tensor], Any], z_dim: int, batch_sizes=PARITY_BATCH_SIZES
) -> float:
    """Largest |candidate(z) − reference(z)| over a few batch sizes (``candidate`` may return a NumPy array)."""
    worst = 0.0
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for batch in batch_sizes:
            z = torch.randn(batch, z_dim, generator=generator)
            worst = max(worst, float((torch.as_tensor(candidate(z)) - reference(z)).abs().max()))
    return worst


def _checked_parity(label: str, reference: nn.Module, candidate, z_dim: int, atol: float) -> float:
    diff = parity(reference, candidate, z_dim)
    if diff > atol:
        raise ExportError(f"{label} output differs from the eager model by {diff:.3g} (> {atol}).")
    return diff


def export_generator(
    generator: nn.Module,
    *,
    cfg: GANConfig,
    root: str | os.PathLike,
    version: str = "auto",
    atol: float = 1e-5,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write ``root/<version>/{generator.pt, generator.onnx, signature.json}`` atomically; point ``root/LATEST`` at it.

    Both formats must match the eager ``generator`` (eval mode) within ``atol`` at batch sizes 1, 5 and 17,
    else ``ExportError`` and nothing is written.
    """
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
            warnings.simplefilter("ignore", FutureWarning)  # TorchScript's deprecation notice
            torch.jit.save(_trace(generator, z_dim), str(tmp / TORCHSCRIPT_FILE))
            loaded = torch.jit.load(str(tmp / TORCHSCRIPT_FILE))
        diffs = {"torchscript": _checked_parity("TorchScript", generator, loaded, z_dim, atol)}
        opset = _export_onnx(fold_spectral_norm(generator, cfg), z_dim, tmp / ONNX_FILE)
        onnx_generate = _onnx_generate(tmp / ONNX_FILE)
        diffs["onnx"] = _checked_parity("ONNX", generator, lambda z: onnx_generate(z.numpy()), z_dim, atol)
        signature = {
            "format": FORMAT,
            "version": version,
            "model": cfg.model.name,
            "inputs": [{"name": "z", "shape": [-1, z_dim], "dtype": "float32", "distribution": "standard normal"}],
            "outputs": [
                {
                    "name": "images",
                    "shape": [-1, channels, resolution, resolution],
                    "dtype": "float32",
                    "layout": "NCHW",
                    "value_range": [-1.0, 1.0],
                }
            ],
            "z_dim": z_dim,
            "resolution": resolution,
            "channels": channels,
            "params_hash": params_hash(cfg),
            "files": dict(FILES),
            "onnx_opset": opset,
            "parity": {**diffs, "batch_sizes": list(PARITY_BATCH_SIZES)},
            "parity_max_abs_diff": max(diffs.values()),  # kept for readers of the TorchScript-only signature
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            **(extra or {}),
        }
        (tmp / SIGNATURE_FILE).write_text(json.dumps(signature, indent=2) + "\n")
    with atomic_file(root / LATEST_FILE) as tmp:
        tmp.write_text(version + "\n")
    return target


def _read_signature(directory: Path) -> dict[str, Any]:
    path = directory / SIGNATURE_FILE
    if not path.is_file():
        raise ExportError(f"No {SIGNATURE_FILE} in {directory}; point at a version directory the export stage wrote.")
    return json.loads(path.read_text())


def _load_torchscript(path: Path) -> torch.jit.ScriptModule:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        return torch.jit.load(str(path), map_location="cpu").eval()


def _onnx_generate(path: Path, threads: int | None = None) -> Generate:
    import onnxruntime  # imported here: only ONNX users pay for it

    options = onnxruntime.SessionOptions()
    if threads is not None:
        options.intra_op_num_threads = threads
    session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    def generate(z: np.ndarray) -> np.ndarray:
        return session.run(["images"], {"z": np.ascontiguousarray(z, dtype=np.float32)})[0]

    return generate


def _torchscript_generate(path: Path) -> Generate:
    model = _load_torchscript(path)

    def generate(z: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return model(torch.from_numpy(np.ascontiguousarray(z, dtype=np.float32))).numpy()

    return generate


def load_backend(
    directory: str | os.PathLike, backend: str, threads: int | None = None
) -> tuple[Generate, dict[str, Any]]:
    """(generate, signature) of an exported version directory, run by ``backend`` ("onnx" or "torchscript").

    ``generate`` maps float32 latents [N, z_dim] to float32 images [N, C, R, R]. ``threads`` sets ONNX
    Runtime's intra-op threads (None: its default); TorchScript runs on torch's process-wide thread pool,
    which this loader leaves to the caller (``torch.set_num_threads``).
    """
    if backend not in FILES:
        raise ExportError(f"Unknown backend {backend!r}; valid backends: {', '.join(BACKENDS)}.")
    directory = Path(directory)
    signature = _read_signature(directory)
    path = directory / signature.get("files", {}).get(backend, FILES[backend])
    if not path.is_file():
        raise ExportError(
            f"{directory} has no {path.name} for the {backend} backend; re-export it or use another backend."
        )
    generate = _onnx_generate(path, threads) if backend == "onnx" else _torchscript_generate(path)
    return generate, signature


def load_exported(directory: str | os.PathLike) -> tuple[torch.jit.ScriptModule, dict[str, Any]]:
    """(TorchScript generator, signature) of an exported version directory."""
    directory = Path(directory)
    signature = _read_signature(directory)
    return _load_torchscript(directory / signature["files"]["torchscript"]), signature
