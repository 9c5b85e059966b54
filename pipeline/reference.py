"""Stage ``reference``: Inception statistics of the prepared real images (DVC caches them per data hash)."""

from __future__ import annotations

import torch

from gans.data import PreparedDataset
from gans.metrics import EXTRACTOR, features_of_images, make_extractor, reference_statistics, save_reference
from pipeline.params import load_params, print_config, run_stage


def main() -> None:
    params = load_params()
    print_config("reference", params.eval)
    dataset = PreparedDataset(params.paths.prepared)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    features = features_of_images(dataset.uint8(), make_extractor(device), params.eval.batch_size)
    reference = reference_statistics(features)
    meta = {"extractor": EXTRACTOR, "n_real": reference["n"], "dataset_sha256": dataset.manifest.get("content_sha256")}
    save_reference(params.paths.reference, reference, meta)
    print(f"[reference] {reference['n']} real images → {params.paths.reference}", flush=True)


if __name__ == "__main__":
    run_stage("reference", main)
