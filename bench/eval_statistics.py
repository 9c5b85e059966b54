"""What evaluate's statistics cost beyond the Inception pass, at a real set's and a sample's sizes.

On random 2048-wide features (the cost does not depend on their values): a reference of ``--real`` rows
(its ``kid_features``: at most 10 000, so beyond that the bootstrap holds the real side fixed, as evaluate
does for a large real set) and ``--fake`` generated rows. Times one call each of ``fid``, one bootstrap
replicate of ``fid_noise``, one subsample of ``precision_recall_equal``, one split of ``achievable_floor`` and
``fid_infinity``, and prints what evaluate's defaults (``eval.bootstrap``, ``eval.prc_subsets``,
``eval.floor_splits``) multiply them to. First line: the CPU and the commit.

    python bench/eval_statistics.py --real 202599 --fake 10000     # CelebA's real set, 10k generated
"""

from __future__ import annotations

import argparse
import subprocess
import time
from typing import Any, Callable

import numpy as np
import torch

from gans.config import EvalConfig
from gans.metric_noise import achievable_floor, fid_infinity, fid_noise, precision_recall_equal
from gans.metrics import MAX_KID_FEATURES, fid, reference_statistics
from gans.precision import cpu_model


def timed(call: Callable[[], Any]) -> float:
    started = time.perf_counter()
    call()
    return time.perf_counter() - started


def costs(reference: dict[str, Any], fake: torch.Tensor, defaults: EvalConfig) -> dict[str, tuple[float, int]]:
    """Seconds of one call of each statistic, and how many calls evaluate's defaults make."""
    return {
        "fid": (timed(lambda: fid(reference, fake)), 1),
        "fid_noise, one replicate": (
            timed(lambda: fid_noise(reference, fake, replicates=2, seed=0)) / 2,
            defaults.bootstrap,
        ),
        "precision/recall, one subsample": (
            timed(lambda: precision_recall_equal(reference, fake, subsets=1, seed=0)),
            defaults.prc_subsets,
        ),
        "floor, one split": (timed(lambda: achievable_floor(reference, fake, splits=1, seed=0)), defaults.floor_splits),
        "fid_infinity": (timed(lambda: fid_infinity(reference, fake, seed=0)), 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--real", type=int, default=202_599, help="real images (kid_features keeps at most 10 000)")
    parser.add_argument("--fake", type=int, nargs="+", default=[2_000, 10_000], help="generated images")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    print(f"{cpu_model()}, torch threads {torch.get_num_threads()}; commit {commit}")
    rng = np.random.default_rng(0)
    kept = min(args.real, MAX_KID_FEATURES)
    reference = reference_statistics(torch.from_numpy(rng.standard_normal((kept, 2048), dtype=np.float32)))
    reference["n"] = args.real
    print(f"real {args.real} (kid_features {kept}); seconds per call, and × the default count")
    for n in args.fake:
        fake = torch.from_numpy(rng.standard_normal((n, 2048), dtype=np.float32) * 1.1 + 0.1)
        for name, (seconds, count) in costs(reference, fake, EvalConfig()).items():
            print(f"generated {n:>6}: {name:<32} {seconds:8.2f} s  × {count:>3} = {seconds * count / 60:6.1f} min")


if __name__ == "__main__":
    main()
