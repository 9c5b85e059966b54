"""Which backend the model server should run: ONNX Runtime against TorchScript, in one process, alternating.

Exports params.yaml's generator architecture (fresh weights) once and times both backends as the server
loads them (``gans.export.load_backend``, 1 inference thread, as ``python -m pipeline.serving.serve --threads 1``)
at several batch sizes, rounds alternating so that machine noise falls on both. Prints images/s per
backend and batch size and the ratio ONNX / TorchScript.

    python bench/serve_backend.py --rounds 5
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from gans.config import GANConfig
from gans.export import BACKENDS, export_generator, load_backend
from gans.models import MODELS


def images_per_second(generate, z: np.ndarray, min_seconds: float = 0.5) -> float:
    generate(z)  # warm
    count, started = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - started) < min_seconds:
        generate(z)
        count += len(z)
    return count / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 4, 16, 64])
    args = parser.parse_args()

    torch.set_num_threads(1)
    cfg = GANConfig()
    torch.manual_seed(0)
    directory = export_generator(MODELS.get(cfg.model.name).generator(cfg), cfg=cfg, root=Path(tempfile.mkdtemp()))
    generators = {backend: load_backend(directory, backend, threads=1)[0] for backend in BACKENDS}
    rng = np.random.default_rng(0)
    print(
        f"model {cfg.model.name} {cfg.data.resolution} px z_dim {cfg.model.z_dim}, 1 thread, {args.rounds} rounds (median)"
    )
    print(f"{'batch':>5} " + " ".join(f"{b + ' img/s':>17}" for b in BACKENDS) + "  onnx/torchscript")
    for batch in args.batch_sizes:
        z = rng.standard_normal((batch, cfg.model.z_dim), dtype=np.float32)
        rates = {backend: [] for backend in BACKENDS}
        for _ in range(args.rounds):
            for backend, generate in generators.items():
                rates[backend].append(images_per_second(generate, z))
        medians = {backend: statistics.median(values) for backend, values in rates.items()}
        print(
            f"{batch:>5} "
            + " ".join(f"{medians[b]:>17.0f}" for b in BACKENDS)
            + f"  {medians['onnx'] / medians['torchscript']:.2f}"
        )


if __name__ == "__main__":
    main()
