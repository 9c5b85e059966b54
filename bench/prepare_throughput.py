"""MTCNN face-crop throughput of the prepare stage at 1 and N worker processes (same run, printed as ratios).

Writes the 100 LFW faces of scikit-image, upscaled to ``--size`` px JPEGs, into a temp folder, prepares
them with ``crop: mtcnn`` serially and in parallel, checks the outputs are byte-identical, and prints
images/s for each.

    python bench/prepare_throughput.py --size 160 --workers 2
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from gans.config import DataConfig
from gans.data import iter_outcomes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=160, help="side of the JPEG photos")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=2, help="copies of the 100 faces (distinct by a pixel)")
    args = parser.parse_args()

    from skimage.data import lfw_subset

    folder = Path(tempfile.mkdtemp(prefix="bench-prepare-"))
    for copy in range(args.repeat):
        for index, face in enumerate(lfw_subset()[:100]):
            pixels = (face * 255).astype(np.uint8)
            pixels[0, 0] = copy  # not an exact duplicate
            Image.fromarray(pixels).resize((args.size, args.size), Image.BICUBIC).save(folder / f"{copy}-{index:03d}.jpg", quality=95)
    cfg = DataConfig(source="folder", path=str(folder), crop="mtcnn", resolution=32, channels=3)

    results = {}
    for workers in (1, args.workers):
        started = time.perf_counter()
        outcomes = list(iter_outcomes(cfg, workers=workers, progress=False))
        seconds = time.perf_counter() - started
        results[workers] = (outcomes, len(outcomes) / seconds)
        kept = sum(o.reason is None for o in outcomes)
        print(f"workers={workers}: {len(outcomes)} photos ({args.size} px), kept {kept}, {len(outcomes) / seconds:.1f} images/s")
    serial, parallel = results[1][0], results[args.workers][0]
    identical = all(
        a.reason == b.reason and (a.image is None or np.array_equal(a.image, b.image)) for a, b in zip(serial, parallel)
    )
    print(f"speed-up ×{results[args.workers][1] / results[1][1]:.2f} at {args.workers} workers; outputs identical: {identical}")


if __name__ == "__main__":
    main()
