"""Stage ``evaluate``: FID/KID of the EMA generator (and of the step-0 generator) against the reference.

Writes ``paths.eval_metrics`` (DVC metrics), a sample grid from the fixed latents and the loss curves.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from gans import checkpoint
from gans.config import GANConfig
from gans.metrics import EXTRACTOR, features_of_generator, fid, kid, load_reference, make_extractor
from gans.plots import save_curves, save_grid
from pipeline.params import Params, load_params, print_config, run_stage, write_json

GRID_FILE = "samples.png"
CURVES_FILE = "losses.png"


def evaluate(params: Params) -> dict[str, Any]:
    cfg = params.eval
    state = checkpoint.load(Path(params.paths.train) / checkpoint.FILENAME)
    reference = load_reference(params.paths.reference)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    extractor = make_extractor(device)
    trained: GANConfig = state["config"]

    scores, generators = {}, {}
    for label, key in (("initial", "G_init"), ("final", "G_ema")):
        generator = generators[key] = checkpoint.load_generator(state, key).to(device)
        features = features_of_generator(generator, trained.model.z_dim, cfg.n_fake, cfg.seed, extractor, cfg.batch_size)
        scores[label] = {"fid": fid(reference, features), **kid(reference, features, cfg.kid_subsets, cfg.kid_subset_size, cfg.seed)}
        print(f"[evaluate] {label} generator ({key}): FID {scores[label]['fid']:.2f}", flush=True)

    final = scores["final"]
    metrics = {
        "fid": final["fid"],
        "kid_mean": final["kid_mean"],
        "kid_std": final["kid_std"],
        "fid_initial": scores["initial"]["fid"],
        "kid_initial": scores["initial"]["kid_mean"],
        "fid_ratio": final["fid"] / scores["initial"]["fid"],
        "step": int(state["step"]),
        "meta": {
            "n_real": reference["n"],
            "n_fake": cfg.n_fake,
            "extractor": EXTRACTOR,
            "extractor_mode": extractor.mode,
            "seed": cfg.seed,
            "resolution": trained.data.resolution,
            "kid_subsets": cfg.kid_subsets,
            "kid_subset_size": final["kid_subset_size"],
            "generator": "G_ema",
        },
    }
    write_json(params.paths.eval_metrics, metrics)

    plots = Path(params.paths.eval_plots)
    with torch.no_grad():
        samples = generators["G_ema"](state["fixed_z"][: params.eval.grid_size].to(device))
    save_grid(samples, plots / GRID_FILE)
    save_curves(state["history"], plots / CURVES_FILE, title=f"{trained.model.name} + {trained.loss.name}")
    return metrics


def main() -> None:
    params = load_params()
    print_config("evaluate", params.eval)
    metrics = evaluate(params)
    print(f"[evaluate] FID {metrics['fid']:.2f} (initial {metrics['fid_initial']:.2f}) → {params.paths.eval_metrics}", flush=True)


if __name__ == "__main__":
    run_stage("evaluate", main)
