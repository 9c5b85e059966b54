"""Stage ``evaluate``: exact FID/KID of the trained generators against the reference; picks the one to export.

Scores the step-0 generator, the final EMA generator and, when training kept one, the EMA weights with
the best in-training FID (``best``). The better of final and best is ``selected``: export ships it, and
its scores are the top-level ``fid``/``kid_*`` of ``paths.eval_metrics`` (DVC metrics). Also draws a
sample grid of the selected generator from the fixed latents and the loss curves.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

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

    candidates = [("initial", "G_init"), ("final", "G_ema")]
    best = state.get("best")
    if best is not None and int(best["step"]) != int(state["step"]):  # at the last step, best is final
        candidates.append(("best_snapshot", "best"))
    scores, generators = {}, {}
    for label, key in candidates:
        generator = generators[label] = checkpoint.load_generator(state, key).to(device)
        features = features_of_generator(generator, trained.model.z_dim, cfg.n_fake, cfg.seed, extractor, cfg.batch_size)
        scores[label] = {"fid": fid(reference, features), **kid(reference, features, cfg.kid_subsets, cfg.kid_subset_size, cfg.seed)}
        print(f"[evaluate] {label} generator ({key}): FID {scores[label]['fid']:.2f}", flush=True)

    selected = min((label for label in scores if label != "initial"), key=lambda label: scores[label]["fid"])
    chosen = scores[selected]
    metrics = {
        "fid": chosen["fid"],
        "kid_mean": chosen["kid_mean"],
        "kid_std": chosen["kid_std"],
        "fid_initial": scores["initial"]["fid"],
        "kid_initial": scores["initial"]["kid_mean"],
        "fid_ratio": chosen["fid"] / scores["initial"]["fid"],
        "fid_final": scores["final"]["fid"],
        "step": int(state["step"]),
        "selected": {
            "weights": "G_ema" if selected == "final" else "best",
            "step": int(state["step"]) if selected == "final" else int(best["step"]),
            "fid": chosen["fid"],
            "fid_in_training": None if best is None else (best["fid"] if selected != "final" else _last_fid(state["history"])),
        },
        "meta": {
            "n_real": reference["n"],
            "n_fake": cfg.n_fake,
            "extractor": EXTRACTOR,
            "extractor_mode": extractor.mode,
            "seed": cfg.seed,
            "resolution": trained.data.resolution,
            "kid_subsets": cfg.kid_subsets,
            "kid_subset_size": chosen["kid_subset_size"],
            "generator": "G_ema",
        },
    }
    if "best_snapshot" in scores:
        metrics["fid_best_snapshot"] = scores["best_snapshot"]["fid"]
        metrics["best_snapshot_step"] = int(best["step"])
    write_json(params.paths.eval_metrics, metrics)

    plots = Path(params.paths.eval_plots)
    with torch.no_grad():
        samples = generators[selected](state["fixed_z"][: params.eval.grid_size].to(device))
    save_grid(samples, plots / GRID_FILE)
    save_curves(state["history"], plots / CURVES_FILE, title=f"{trained.model.name} + {trained.loss.name}")
    return metrics


def _last_fid(history: list[dict]) -> Optional[float]:
    """The in-training FID of the last scored step, if the last logged step was scored."""
    return history[-1].get("fid") if history else None


def main() -> None:
    params = load_params()
    print_config("evaluate", params.eval)
    metrics = evaluate(params)
    chosen = metrics["selected"]
    print(f"[evaluate] selected {chosen['weights']} (step {chosen['step']}): FID {metrics['fid']:.2f} "
          f"(initial {metrics['fid_initial']:.2f}) → {params.paths.eval_metrics}", flush=True)


if __name__ == "__main__":
    run_stage("evaluate", main)
