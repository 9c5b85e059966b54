"""Stage ``evaluate``: exact FID/KID of the trained generators against the reference; picks the one to export.

Scores the step-0 generator, the final EMA generator and, when training kept one, the EMA weights with
the best in-training FID (``best``), each with standing BatchNorm statistics (``eval.standing_stats``:
recomputed from its own samples, as export does). The better of final and best is ``selected``: export
ships it, and its scores are the top-level ``fid``/``kid_*`` of ``paths.eval_metrics`` (DVC metrics).
The selected generator is also scored on ``eval.fid_draws`` draws of samples (``fid_std``: the noise a
difference must beat), with the training-time statistics (the effect of standing statistics), and by
precision/recall. Failure modes (``gans.diagnosis``) found in the training history and in the samples are
listed under ``diagnosis``. Also draws a sample grid of the selected generator from the fixed latents and
the loss curves, with the diagnosed step ranges shaded.
"""

from __future__ import annotations

import hashlib
import statistics
from pathlib import Path
from typing import Any, Optional

import torch

from gans import checkpoint
from gans.cache import digest, read_entry, write_entry
from gans.config import EvalConfig, GANConfig
from gans.diagnosis import collapse_of, diagnose, g_loss_oscillation
from gans.dist import fingerprint
from gans.ema import standing_statistics
from gans.metrics import (
    EXTRACTOR,
    FID_FORMULA,
    features_of_generator,
    fid,
    kid,
    load_reference,
    make_extractor,
    precision_recall,
    sample_diversity,
)
from gans.plots import save_curves, save_grid
from pipeline.params import Params, load_params, print_config, run_stage, write_json

SCORES_FILE = "scores.json"
"""The cache file (``gans.cache``) of step-0 generator scores."""
GRID_FILE = "samples.png"
CURVES_FILE = "losses.png"


def standing_settings(cfg: EvalConfig) -> Optional[dict[str, int]]:
    """The ``gans.ema.standing_statistics`` arguments evaluate uses (recorded in ``selected`` for export), or None."""
    return (
        {"samples": cfg.standing_samples, "batch_size": cfg.batch_size, "seed": cfg.seed}
        if cfg.standing_stats
        else None
    )


def evaluated_generator(state: dict[str, Any], key: str, cfg: EvalConfig, device: torch.device) -> torch.nn.Module:
    """The checkpoint's ``key`` generator as evaluate scores it and export ships it (standing statistics if on)."""
    generator = checkpoint.load_generator(state, key).to(device)
    if cfg.standing_stats:
        standing_statistics(generator, state["config"].model.z_dim, **standing_settings(cfg))
    return generator


def initial_score_key(state: dict[str, Any], cfg: EvalConfig, reference_path: str, extractor) -> str:
    """What the step-0 generator's scores depend on: its weights and architecture, the evaluation settings,
    the reference statistics' bytes and the extractor on this machine. Runs that keep the model and seed
    share them, so evaluate scores the step-0 generator once per machine (``gans.cache``)."""
    return digest(
        {
            "weights": fingerprint(state["G_init"]),
            "model": state["config"].model,
            "image_shape": state["config"].image_shape,
            "eval": {
                key: getattr(cfg, key) for key in ("n_fake", "seed", "batch_size", "kid_subsets", "kid_subset_size")
            },
            "standing": standing_settings(cfg),
            "reference": hashlib.sha256(Path(reference_path).read_bytes()).hexdigest(),
            "extractor": [EXTRACTOR, extractor.decision.to_dict()],
            "fid": FID_FORMULA,
            "torch": torch.__version__,
        }
    )


def evaluate(params: Params) -> dict[str, Any]:
    cfg = params.eval
    state = checkpoint.load(Path(params.paths.train) / checkpoint.FILENAME)
    reference = load_reference(params.paths.reference)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    extractor = make_extractor(device)
    trained: GANConfig = state["config"]

    def features(generator: torch.nn.Module, seed: int) -> torch.Tensor:
        return features_of_generator(generator, trained.model.z_dim, cfg.n_fake, seed, extractor, cfg.batch_size)

    candidates = [("initial", "G_init"), ("final", "G_ema")]
    best = state.get("best")
    if best is not None and int(best["step"]) != int(state["step"]):  # at the last step, best is final
        candidates.append(("best_snapshot", "best"))
    scores, generators, feature_sets = {}, {}, {}
    initial_key = initial_score_key(state, cfg, params.paths.reference, extractor)
    for label, key in candidates:
        generator = generators[label] = evaluated_generator(state, key, cfg, device)
        cached = read_entry(SCORES_FILE, initial_key) if label == "initial" else None
        if cached is not None:
            scores[label] = cached
            print(
                f"[evaluate] {label} generator ({key}): FID {scores[label]['fid']:.2f} (cached: these weights, "
                f"samples and reference were scored on this machine before)",
                flush=True,
            )
            continue
        feature_sets[label] = features(generator, cfg.seed)
        scores[label] = {
            "fid": fid(reference, feature_sets[label]),
            **kid(reference, feature_sets[label], cfg.kid_subsets, cfg.kid_subset_size, cfg.seed),
        }
        print(f"[evaluate] {label} generator ({key}): FID {scores[label]['fid']:.2f}", flush=True)
    write_entry(SCORES_FILE, initial_key, scores["initial"], "evaluate: the step-0 generator's FID and KID")

    selected = min((label for label in scores if label != "initial"), key=lambda label: scores[label]["fid"])
    chosen, selected_key = scores[selected], dict(candidates)[selected]
    selected_step = int(state["step"]) if selected == "final" else int(best["step"])
    fids = [chosen["fid"]] + [
        fid(reference, features(generators[selected], cfg.seed + draw)) for draw in range(1, cfg.fid_draws)
    ]
    diversity = sample_diversity(feature_sets[selected], reference["kid_features"])
    metrics = {
        "fid": chosen["fid"],
        "fid_std": statistics.stdev(fids) if len(fids) > 1 else 0.0,
        "fid_draws_mean": statistics.mean(fids),
        "kid_mean": chosen["kid_mean"],
        "kid_std": chosen["kid_std"],
        **precision_recall(reference, feature_sets[selected], cfg.prc_neighborhood),
        **diversity,
        "fid_initial": scores["initial"]["fid"],
        "kid_initial": scores["initial"]["kid_mean"],
        "fid_ratio": chosen["fid"] / scores["initial"]["fid"],
        "fid_final": scores["final"]["fid"],
        "step": int(state["step"]),
        "selected": {
            "weights": selected_key,
            "step": selected_step,
            "fid": chosen["fid"],
            "fid_in_training": None
            if best is None
            else (best["fid"] if selected != "final" else _last_fid(state["history"])),
            "standing_stats": standing_settings(cfg),
        },
        "diagnosis": _diagnosis(state, diversity, selected_step),
        "meta": {
            "n_real": reference["n"],
            "n_fake": cfg.n_fake,
            "extractor": EXTRACTOR,
            "extractor_mode": extractor.mode,
            "extractor_precision": extractor.decision.to_dict(),
            "training_precision": state.get("precision"),
            "seed": cfg.seed,
            "resolution": trained.data.resolution,
            "kid_subsets": cfg.kid_subsets,
            "kid_subset_size": chosen["kid_subset_size"],
            "generator": "G_ema",
            "fid_draws": cfg.fid_draws,
            "fid_draw_seeds": [cfg.seed + draw for draw in range(cfg.fid_draws)],
            "precision_recall": {
                "implementation": "torch_fidelity.metric_prc.prc_features_to_metric",
                "input_order": "generated first, real second",
                "features": f"{EXTRACTOR} pool (2048)",
                "neighborhood": cfg.prc_neighborhood,
                "n_generated": cfg.n_fake,
                "n_real": int(len(reference["kid_features"])),
            },
        },
    }
    if cfg.standing_stats and cfg.training_stats_fid:
        live = checkpoint.load_generator(state, selected_key).to(device)
        metrics["fid_training_bn_stats"] = fid(reference, features(live, cfg.seed))
        metrics["meta"]["standing_samples"] = cfg.standing_samples
    if "best_snapshot" in scores:
        metrics["fid_best_snapshot"] = scores["best_snapshot"]["fid"]
        metrics["best_snapshot_step"] = int(best["step"])
    write_json(params.paths.eval_metrics, metrics)
    for name, found in metrics["diagnosis"].items():
        print(
            f"[evaluate] diagnosis: {name.replace('_', ' ')} at steps {found['start']}–{found['end']}: {found['hint']}",
            flush=True,
        )

    plots = Path(params.paths.eval_plots)
    with torch.no_grad():
        samples = generators[selected](state["fixed_z"][: params.eval.grid_size].to(device))
    save_grid(samples, plots / GRID_FILE)
    save_curves(
        state["history"],
        plots / CURVES_FILE,
        title=f"{trained.model.name} + {trained.loss.name}",
        shaded={name: (found["start"], found["end"]) for name, found in metrics["diagnosis"].items()},
    )
    return metrics


def _diagnosis(state: dict[str, Any], diversity: dict[str, float], step: int) -> dict[str, Any]:
    """Failure modes by name: those in the training history, with mode collapse judged on evaluate's samples."""
    found = {diagnosis.name: diagnosis for diagnosis in diagnose(state["history"]) if diagnosis.name != "mode_collapse"}
    collapse = collapse_of(
        diversity["diversity"], diversity["duplicates"], step, step, g_loss_oscillation(state["history"])
    )
    if collapse is not None:
        found[collapse.name] = collapse
    return {
        name: {key: value for key, value in diagnosis.to_dict().items() if key != "name"}
        for name, diagnosis in sorted(found.items())
    }


def _last_fid(history: list[dict]) -> Optional[float]:
    """The in-training FID of the last scored step, if the last logged step was scored."""
    return history[-1].get("fid") if history else None


def main() -> None:
    params = load_params()
    print_config("evaluate", params.eval)
    metrics = evaluate(params)
    chosen = metrics["selected"]
    print(
        f"[evaluate] selected {chosen['weights']} (step {chosen['step']}): FID {metrics['fid']:.2f} "
        f"(initial {metrics['fid_initial']:.2f}) → {params.paths.eval_metrics}",
        flush=True,
    )


if __name__ == "__main__":
    run_stage("evaluate", main)
