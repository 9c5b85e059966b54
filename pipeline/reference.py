"""Stage ``reference``: Inception statistics of the prepared real images (DVC caches them per data hash).

The images are read in chunks of ``eval.batch_size`` and their features folded into running statistics
(``gans.metrics.streamed_reference_statistics``), so memory does not grow with the number of images: one chunk of
images and features, the d × d covariance and at most ``gans.metrics.MAX_KID_FEATURES`` kept feature rows.
"""

from __future__ import annotations

import torch

from gans.data import PreparedDataset
from gans.metrics import EXTRACTOR, make_extractor, save_reference, streamed_reference_statistics
from pipeline.params import load_params, print_config, run_stage


def main() -> None:
    params = load_params()
    print_config("reference", params.eval)
    dataset = PreparedDataset(params.paths.prepared)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    batch_size = params.eval.batch_size
    reference = streamed_reference_statistics(dataset.chunks(batch_size), len(dataset), make_extractor(device))
    meta = {"extractor": EXTRACTOR, "n_real": reference["n"], "dataset_sha256": dataset.manifest.get("content_sha256")}
    save_reference(params.paths.reference, reference, meta)
    print(f"[reference] {reference['n']} real images → {params.paths.reference}", flush=True)


if __name__ == "__main__":
    run_stage("reference", main)
