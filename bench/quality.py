"""Side-by-side quality run: DCGAN+BCE, SAGAN+hinge+TTUR and WGAN-GP on the embedded LFW faces.

Same data, step budget (generator updates), seeds and FID extractor for every configuration, in the
default precision (bf16 autocast, channels-last) unless a row says otherwise; prints FID/KID of each EMA
generator (and of its step-0 generator), mean ± std over the seeds, and writes one comparison grid PNG.

    python bench/quality.py                 # defaults: 2000 G steps, 500 generated images, seed 0
    python bench/quality.py --steps 300 --n-fake 100   # a quick look
    python bench/quality.py --steps 3000 --seeds 0 1 2 --configs "dcgan+bce (fp32)" "dcgan+bce"
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

from gans.checkpoint import load_generator
from gans.config import GANConfig
from gans.data import PreparedDataset, write_prepared
from gans.loop import fit
from gans.metrics import features_of_generator, features_of_images, fid, kid, make_extractor, reference_statistics
from gans.plots import save_grid
from gans.prepare.stream import prepare_images

DIFFAUGMENT = {"policy": ["color", "translation", "cutout"]}
CONFIGS = {
    "default": {},  # params.yaml's GAN sections as they are (DCGAN + BCE with label smoothing, TTUR ratio 1)
    "default+diffaugment": {"augment": DIFFAUGMENT},
    "default+ada": {"augment": {**DIFFAUGMENT, "adaptive": True}},
    "default+diffaugment+r1": {"augment": DIFFAUGMENT, "loss": {"r1_weight": 0.1}},
    "default+translation,cutout": {"augment": {"policy": ["translation", "cutout"]}},
    "hinge-x2+diffaugment": {  # the default sweep's winner, with DiffAugment
        "loss": {"name": "hinge"},
        "optim": {"lr_g": 2e-4, "lr_d": 4e-4, "betas_g": [0.0, 0.9], "betas_d": [0.0, 0.9]},
        "augment": DIFFAUGMENT,
    },
    "dcgan+bce": {
        "model": {"name": "dcgan"},
        "loss": {"name": "bce", "label_smoothing": 0.1},
        "optim": {"lr_g": 2e-4, "lr_d": 2e-4, "betas_g": [0.5, 0.999], "betas_d": [0.5, 0.999]},
    },
    "sagan+hinge+ttur": {
        "model": {"name": "sagan"},
        "loss": {"name": "hinge"},
        "optim": {"lr_g": 1e-4, "lr_d": 4e-4, "betas_g": [0.0, 0.9], "betas_d": [0.0, 0.9]},
    },
    "dcgan+bce (fp32)": {  # the first row without bf16 autocast and channels-last: what do they cost?
        "model": {"name": "dcgan"},
        "loss": {"name": "bce", "label_smoothing": 0.1},
        "optim": {"lr_g": 2e-4, "lr_d": 2e-4, "betas_g": [0.5, 0.999], "betas_d": [0.5, 0.999]},
        "train": {"amp": False, "channels_last": False},
    },
    "wgan-gp": {
        "model": {"name": "dcgan"},
        "loss": {"name": "wgan-gp", "gp_weight": 10.0},
        "optim": {"lr_g": 1e-4, "lr_d": 1e-4, "betas_g": [0.0, 0.9], "betas_d": [0.0, 0.9]},
        "train": {"n_critic": 5},
    },
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=2000, help="generator updates per configuration")
    parser.add_argument("--n-fake", type=int, default=500, help="generated images for FID/KID")
    parser.add_argument("--width", type=int, default=32, help="g_width and d_width")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], help="training seeds (mean ± std over them)")
    parser.add_argument("--configs", nargs="+", choices=sorted(CONFIGS), default=list(CONFIGS))
    parser.add_argument("--out", type=Path, default=Path("bench/out"))
    args = parser.parse_args()

    base = {
        "data": {"source": "lfw-subset", "resolution": 32, "channels": 1},
        "model": {"z_dim": 64, "g_width": args.width, "d_width": args.width},
        "train": {
            "steps": args.steps,
            "batch_size": 32,
            "ema_decay": 0.995,
            "log_every": 100,
            "snapshot_every": args.steps,
            "n_fixed": 16,
        },
    }
    images, _, _ = prepare_images(GANConfig.from_dict(base).data, progress=False)
    work = Path(tempfile.mkdtemp(prefix="bench-quality-"))
    dataset = PreparedDataset(write_prepared(work / "data", images, {"count": len(images)}))
    extractor = make_extractor()
    reference = reference_statistics(features_of_images(dataset.uint8(), extractor, verbose=False))

    rows, grids = [], []
    for name in args.configs:
        overrides, runs = CONFIGS[name], []
        for seed in args.seeds:
            params = {
                section: {**base.get(section, {}), **overrides.get(section, {})} for section in {*base, *overrides}
            }
            params["train"] = {**params["train"], "seed": seed}
            cfg = GANConfig.from_dict(params)
            started = time.perf_counter()
            state = fit(cfg, dataset, work_dir=work / f"{name}-{seed}", progress=True)
            seconds = time.perf_counter() - started
            scores = {}
            for key in ("G_init", "G_ema"):
                features = features_of_generator(
                    load_generator(state, key), cfg.model.z_dim, args.n_fake, 2026, extractor, verbose=False
                )
                scores[key] = {"fid": fid(reference, features), **kid(reference, features, 50, 100, 2026)}
            scores["d_acc"] = _late_mean(state["history"], ("d_acc_real", "d_acc_fake"))
            runs.append((scores, seconds))
            print(
                f"{name:32s} seed {seed}: FID {scores['G_ema']['fid']:7.2f} (step 0: {scores['G_init']['fid']:6.2f}, "
                f"ratio {scores['G_ema']['fid'] / scores['G_init']['fid']:.3f})  KID {scores['G_ema']['kid_mean']:.4f}  "
                f"D acc (last quarter) {scores['d_acc']:.2f}  train {seconds:5.0f} s",
                flush=True,
            )
        rows.append((name, runs))
        with torch.no_grad():
            grids.append(load_generator(state)(state["fixed_z"]))

    args.out.mkdir(parents=True, exist_ok=True)
    grid = save_grid(torch.cat(grids), args.out / "quality.png", nrow=16)
    print(f"\n{len(images)} real faces, {args.steps} G steps each, {args.n_fake} generated images, seeds {args.seeds}")
    print("| configuration | FID (mean ± std) | FID / FID at step 0 | KID | D accuracy, last quarter | train s |")
    print("|---|---|---|---|---|---|")
    for name, runs in rows:
        fids = [scores["G_ema"]["fid"] for scores, _ in runs]
        ratios = [scores["G_ema"]["fid"] / scores["G_init"]["fid"] for scores, _ in runs]
        kids = [scores["G_ema"]["kid_mean"] for scores, _ in runs]
        accuracies = [scores["d_acc"] for scores, _ in runs]
        print(
            f"| {name} | {_mean_std(fids, 2)} | {_mean_std(ratios, 3)} | {_mean_std(kids, 4)} | {_mean_std(accuracies, 2)} | "
            f"{statistics.mean(seconds for _, seconds in runs):.0f} |"
        )
    print(f"grid (one row per configuration, last seed, same latents): {grid}")


def _late_mean(history: list[dict], keys: tuple[str, ...]) -> float:
    """Mean of ``keys`` over the last quarter of the logged steps (is D's accuracy pinned at 1 by the end?)."""
    late = history[len(history) * 3 // 4 :]
    return statistics.mean(entry[key] for entry in late for key in keys if key in entry)


def _mean_std(values: list[float], digits: int) -> str:
    spread = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.{digits}f} ± {spread:.{digits}f}"


if __name__ == "__main__":
    main()
