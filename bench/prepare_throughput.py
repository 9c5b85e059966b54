"""MTCNN face-crop throughput of the prepare stage: 1 and N worker processes, one image or a chunk per detection.

Writes the 100 LFW faces of scikit-image, upscaled to ``--size`` px JPEGs, into a temp folder, prepares
them with ``crop: mtcnn`` for each (workers, chunk_size), checks that outputs with the same chunk size are
byte-identical, and prints images/s for each and the ratio to the reference measured in the same run
(1 worker, chunk_size 1: detection one image at a time).

    python bench/prepare_throughput.py --size 160 --workers 2 --chunk-size 16
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from gans.config import DataConfig
from gans.prepare.stream import iter_outcomes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=160, help="side of the JPEG photos")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--chunk-size", type=int, default=16, help="images per batched detection")
    parser.add_argument("--repeat", type=int, default=2, help="copies of the 100 faces (distinct by a pixel)")
    args = parser.parse_args()

    from skimage.data import lfw_subset

    folder = Path(tempfile.mkdtemp(prefix="bench-prepare-"))
    for copy in range(args.repeat):
        for index, face in enumerate(lfw_subset()[:100]):
            pixels = (face * 255).astype(np.uint8)
            pixels[0, 0] = copy  # not an exact duplicate
            Image.fromarray(pixels).resize((args.size, args.size), Image.BICUBIC).save(
                folder / f"{copy}-{index:03d}.jpg", quality=95
            )
    results = {}
    for chunk_size in (1, args.chunk_size):
        cfg = DataConfig(
            source="folder", path=str(folder), crop="mtcnn", resolution=32, channels=3, chunk_size=chunk_size
        )
        for workers in (1, args.workers):
            started = time.perf_counter()
            outcomes = list(iter_outcomes(cfg, workers=workers, progress=False))
            rate = len(outcomes) / (time.perf_counter() - started)
            results[workers, chunk_size] = (outcomes, rate)
            kept = sum(o.reason is None for o in outcomes)
            reference = results[1, 1][1]
            print(
                f"workers={workers} chunk_size={chunk_size:>3}: {len(outcomes)} photos ({args.size} px), kept {kept}, "
                f"{rate:.1f} images/s (×{rate / reference:.2f} of 1 worker, chunk 1)",
                flush=True,
            )
        serial, parallel = results[1, chunk_size][0], results[args.workers, chunk_size][0]
        identical = len(serial) == len(parallel) and all(
            a.reason == b.reason and (a.image is None or np.array_equal(a.image, b.image))
            for a, b in zip(serial, parallel)
        )
        print(f"chunk_size={chunk_size}: {args.workers}-worker output identical to 1-worker output: {identical}")
        if not identical:
            raise SystemExit(f"{args.workers}-worker output differs from 1-worker output at chunk_size={chunk_size}.")


if __name__ == "__main__":
    main()
