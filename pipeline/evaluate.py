"""Stage ``evaluate``: exact FID/KID of the trained generator on held-out samples; picks the one to export.

Selection and report never share samples. The final EMA generator and, when training kept one, the EMA
weights with the best in-training FID (``best``) are scored on the selection draw (``eval.selection_seed``),
each with standing BatchNorm statistics (``eval.standing_stats``: recomputed from its own samples, as export
does); the better is ``selected`` and export ships it. Every reported figure comes from held-out draws
(seeds ``eval.seed`` …, which neither the selection nor the in-training FID drew): FID with its
bootstrap noise ``fid_std`` (real and generated features resampled), KID ± std, precision/recall at equal
counts, sample diversity, and what this real set allows at all (two halves of it against each other, and
FID∞). The step-0 generator is scored on the same held-out draw (``fid_ratio``). Failure modes
(``gans.diagnosis``) found in the training history and in the samples are listed under ``diagnosis``.
Also draws a sample grid of the selected generator from the fixed latents and the loss curves, with the
diagnosed step ranges shaded. ``meta.seeds`` lists every seed.
"""

from __future__ import annotations

import hashlib
import statistics
from pathlib import Path
from typing import Any, Optional

import torch

from gans import checkpoint
from gans.cache import digest, read_entry, write_entry
from gans.config import IN_TRAINING_FID_SEED, EvalConfig, GANConfig
from gans.diagnosis import collapse_of, diagnose, g_loss_oscillation
from gans.dist import fingerprint
from gans.ema import standing_statistics
from gans.metric_noise import achievable_floor, fid_infinity, fid_noise, precision_recall_equal
from gans.metrics import (
    EXTRACTOR,
    FID_FORMULA,
    features_of_generator,
    fid,
    kid,
    load_reference,
    make_extractor,
    sample_diversity,
)
from gans.plots import save_curves, save_grid
from pipeline.params import (
    EVAL_CURVES_FILE,
    EVAL_GRID_FILE,
    Params,
    load_params,
    print_config,
    run_stage,
    write_json,
)

SCORES_FILE = "scores.json"
"""The cache file (``gans.cache``) of step-0 generator scores."""


def standing_settings(cfg: EvalConfig) -> Optional[dict[str, int]]:
    """The ``gans.ema.standing_statistics`` arguments evaluate uses (recorded in ``selected`` for export), or None."""
    return (
        {"samples": cfg.standing_samples, "batch_size": cfg.batch_size, "seed": cfg.selection_seed}
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
                "n_fake": cfg.samples,
                "seed": cfg.report_seeds[0],
                **{key: getattr(cfg, key) for key in ("batch_size", "kid_subsets", "kid_subset_size")},
            },
            "standing": standing_settings(cfg),
            "reference": hashlib.sha256(Path(reference_path).read_bytes()).hexdigest(),
            "extractor": [EXTRACTOR, extractor.decision.to_dict()],
            "fid": FID_FORMULA,
            "torch": torch.__version__,
        }
    )


def seeds_used(cfg: EvalConfig) -> dict[str, Any]:
    """Every seed behind the metrics, by what it draws: the selection and held-out samples are disjoint draws."""
    return {
        "selection": cfg.selection_seed,
        "in_training_fid": IN_TRAINING_FID_SEED,
        "reported": list(cfg.report_seeds),
        "bootstrap": cfg.seed,
        "kid_subsets": cfg.seed,
        "precision_recall_subsamples": cfg.seed,
        "floor_splits": cfg.seed,
        "standing_stats": cfg.selection_seed if cfg.standing_stats else None,
    }


def held_out_metrics(reference: dict[str, Any], features: torch.Tensor, cfg: EvalConfig) -> dict[str, Any]:
    """Every reported figure of one held-out draw: FID with its bootstrap noise (``fid_std``: real and generated
    features resampled, the uncertainty against the data; ``fid_std_generated``: generated only, the part two
    generators scored against the same reference do not share), KID, precision/recall at equal counts, sample
    diversity, and what is achievable on this real set (the floor, FID∞)."""
    noise = fid_noise(reference, features, cfg.bootstrap, cfg.seed)
    generated_noise = fid_noise(reference, features, cfg.bootstrap, cfg.seed, resample_real=False)
    return {
        "fid": fid(reference, features),
        "fid_std": noise["fid_std"],
        "fid_std_generated": generated_noise["fid_std"],
        **kid(reference, features, cfg.kid_subsets, cfg.kid_subset_size, cfg.seed),
        **precision_recall_equal(reference, features, cfg.prc_neighborhood, cfg.prc_subsets, cfg.seed),
        **sample_diversity(features, reference["kid_features"]),
        **achievable_floor(reference, features, cfg.floor_splits, cfg.seed),
        **fid_infinity(reference, features, seed=cfg.seed),
        "bootstrap": noise,
    }


DESCRIPTIVE_KEYS = (
    "bootstrap",
    "kid_subset_size",
    "prc_count",
    "prc_subsets",
    "floor_size",
    "floor_splits",
    "fid_infinity_sizes",
)
"""Keys of ``held_out_metrics`` that describe how a figure was taken: ``meta``, not metrics."""


def evaluate(params: Params) -> dict[str, Any]:
    cfg = params.eval
    state = checkpoint.load(Path(params.paths.train) / checkpoint.FILENAME)
    reference = load_reference(params.paths.reference)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    extractor = make_extractor(device)
    trained: GANConfig = state["config"]

    def features(generator: torch.nn.Module, seed: int) -> torch.Tensor:
        return features_of_generator(generator, trained.model.z_dim, cfg.samples, seed, extractor, cfg.batch_size)

    # Selection: final against the best in-training snapshot, on the selection draw only.
    candidates = {"final": "G_ema"}
    best = state.get("best")
    if best is not None and int(best["step"]) != int(state["step"]):  # at the last step, best is final
        candidates["best_snapshot"] = "best"
    generators = {label: evaluated_generator(state, key, cfg, device) for label, key in candidates.items()}
    selection_fids = {}
    if len(candidates) > 1:
        for label, generator in generators.items():
            selection_fids[label] = fid(reference, features(generator, cfg.selection_seed))
            print(
                f"[evaluate] selection draw (seed {cfg.selection_seed}): {label} FID {selection_fids[label]:.2f}",
                flush=True,
            )
    selected = min(selection_fids, key=selection_fids.get) if selection_fids else "final"
    selected_key = candidates[selected]
    selected_step = int(state["step"]) if selected == "final" else int(best["step"])

    # Everything reported: held-out draws of the selected generator (and of the step-0 one, for the ratio).
    draws = [features(generators[selected], seed) for seed in cfg.report_seeds]
    held_out = held_out_metrics(reference, draws[0], cfg)
    initial = initial_scores(state, cfg, params.paths.reference, reference, extractor, device)
    draw_fids = [held_out["fid"]] + [fid(reference, draw) for draw in draws[1:]]
    metrics = {
        **{key: value for key, value in held_out.items() if key not in DESCRIPTIVE_KEYS},
        **(
            {"fid_draws_mean": statistics.mean(draw_fids), "fid_draws_std": statistics.stdev(draw_fids)}
            if len(draw_fids) > 1
            else {}
        ),
        "fid_initial": initial["fid"],
        "kid_initial": initial["kid_mean"],
        "fid_ratio": held_out["fid"] / initial["fid"],
        "step": int(state["step"]),
        "selected": {
            "weights": selected_key,
            "step": selected_step,
            "selection_fids": selection_fids,
            "fid_in_training": None
            if best is None
            else (best["fid"] if selected != "final" else _last_fid(state["history"])),
            "standing_stats": standing_settings(cfg),
        },
        "diagnosis": _diagnosis(state, held_out, selected_step),
        "meta": {
            "n_real": reference["n"],
            "n_fake": cfg.samples,
            "protocol": cfg.protocol,
            "seeds": seeds_used(cfg),
            "extractor": EXTRACTOR,
            "extractor_mode": extractor.mode,
            "extractor_precision": extractor.decision.to_dict(),
            "training_precision": state.get("precision"),
            "resolution": trained.data.resolution,
            "fid_noise": held_out["bootstrap"],
            "floor": {
                "what": "two disjoint random halves of the real features against each other, and the generated "
                "features subsampled to one half's size against the other half",
                "size_each": held_out["floor_size"],
                "splits": held_out["floor_splits"],
            },
            "fid_infinity_sizes": held_out["fid_infinity_sizes"],
            "kid_subsets": cfg.kid_subsets,
            "kid_subset_size": held_out["kid_subset_size"],
            "generator": "G_ema",
            "fid_draws": cfg.fid_draws,
            "precision_recall": {
                "implementation": "torch_fidelity.metric_prc.prc_features_to_metric, at equal counts",
                "input_order": "generated first, real second",
                "features": f"{EXTRACTOR} pool (2048)",
                "neighborhood": cfg.prc_neighborhood,
                "count_each": held_out["prc_count"],
                "subsamples": held_out["prc_subsets"],
            },
        },
    }
    if cfg.standing_stats and cfg.training_stats_fid:
        live = checkpoint.load_generator(state, selected_key).to(device)
        metrics["fid_training_bn_stats"] = fid(reference, features(live, cfg.report_seeds[0]))
        metrics["meta"]["standing_samples"] = cfg.standing_samples
    if "best_snapshot" in candidates:
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
    save_grid(samples, plots / EVAL_GRID_FILE)
    save_curves(
        state["history"],
        plots / EVAL_CURVES_FILE,
        title=f"{trained.model.name} + {trained.loss.name}",
        shaded={name: (found["start"], found["end"]) for name, found in metrics["diagnosis"].items()},
    )
    return metrics


def initial_scores(
    state: dict[str, Any], cfg: EvalConfig, reference_path: str, reference: dict[str, Any], extractor, device
) -> dict[str, float]:
    """FID and KID of the step-0 generator on the first held-out draw; cached per machine (``gans.cache``)."""
    key = initial_score_key(state, cfg, reference_path, extractor)
    cached = read_entry(SCORES_FILE, key)
    if cached is not None:
        print(
            f"[evaluate] initial generator (G_init): FID {cached['fid']:.2f} (cached: these weights, samples and "
            "reference were scored on this machine before)",
            flush=True,
        )
        return cached
    generator = evaluated_generator(state, "G_init", cfg, device)
    features = features_of_generator(
        generator, state["config"].model.z_dim, cfg.samples, cfg.report_seeds[0], extractor, cfg.batch_size
    )
    scores = {
        "fid": fid(reference, features),
        **kid(reference, features, cfg.kid_subsets, cfg.kid_subset_size, cfg.seed),
    }
    print(f"[evaluate] initial generator (G_init): FID {scores['fid']:.2f}", flush=True)
    write_entry(SCORES_FILE, key, scores, "evaluate: the step-0 generator's FID and KID")
    return scores


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
        f"[evaluate] selected {chosen['weights']} (step {chosen['step']}); held-out draw (seed "
        f"{metrics['meta']['seeds']['reported'][0]}): FID {metrics['fid']:.2f} ± {metrics['fid_std']:.2f} "
        f"(initial {metrics['fid_initial']:.2f}), KID {metrics['kid_mean']:.4f} ± {metrics['kid_std']:.4f}; "
        f"two halves of the real set score FID {metrics['fid_real_halves']:.2f}, this generator at their size "
        f"{metrics['fid_generated_vs_half']:.2f} → {params.paths.eval_metrics}",
        flush=True,
    )


if __name__ == "__main__":
    run_stage("evaluate", main)
