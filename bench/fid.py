"""FID feature extraction: the project's exact and fast modes against torch-fidelity's own path.

Extracts Inception features of the default's real images (the 100 LFW faces, 32 px) and of generated
images three ways, interleaved round by round in one process: torch-fidelity's loop with the registered
``InceptionTF2015`` extractor (the reference), ``InceptionFeatures`` in ``exact`` mode and in ``fast`` mode.
Prints images/s and ratios to the reference; each mode's feature error against the reference, as the
largest elementwise error relative to the largest feature (``max err``) and as ‖a − b‖ / ‖b‖ (``L2 err``);
and the FID of the generated images against the real ones with each mode's features, with its relative error.
Last, the distance from the statistics: ``metrics.fid`` against torch-fidelity's ``fid_statistics_to_metric``
on the same features (seconds per call and the relative difference of the values).

The generated images come from the default run's checkpoint (``artifacts/train/checkpoint.pt``, after
``make run``) or, without one, from a DCGAN trained here for ``--steps`` steps.

    python bench/fid.py                  # 500 generated images, 5 timing rounds
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from gans import checkpoint, metrics
from gans.config import GANConfig
from gans.data import PreparedDataset, to_uint8, write_prepared
from gans.loop import fit
from gans.prepare.stream import prepare_images

CHECKPOINT = Path("artifacts/train/checkpoint.pt")


def trained_generator(steps: int) -> torch.nn.Module:
    """The default run's EMA generator, or one trained here for ``steps`` steps."""
    if CHECKPOINT.is_file():
        state = checkpoint.load(CHECKPOINT)
        print(f"generator: {CHECKPOINT} (step {state['step']})")
    else:
        cfg = GANConfig.from_dict({"train": {"steps": steps, "snapshot_every": steps}})
        images, _, _ = prepare_images(cfg.data, progress=False)
        work = Path(tempfile.mkdtemp(prefix="bench-fid-"))
        state = fit(cfg, PreparedDataset(write_prepared(work / "data", images, {})), work_dir=work / "run")
        print(f"generator: trained here for {steps} steps (no {CHECKPOINT}; `make run` makes one)")
    return checkpoint.load_generator(state)


def generated_images(generator: torch.nn.Module, n: int, seed: int) -> torch.Tensor:
    """uint8 samples of ``generator``, z drawn as evaluate does."""
    z = torch.from_numpy(np.random.RandomState(seed).randn(n, generator.z_dim)).float()
    with torch.no_grad():
        return to_uint8(generator(z))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-fake", type=int, default=500)
    parser.add_argument("--batch-size", type=int, default=50, help="images per Inception forward (all paths)")
    parser.add_argument("--rounds", type=int, default=5, help="timing rounds (each path once per round)")
    parser.add_argument("--timing-images", type=int, default=100, help="images per path per round")
    parser.add_argument("--steps", type=int, default=1000, help="training steps when there is no checkpoint")
    args = parser.parse_args()

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    real, _, _ = prepare_images(GANConfig().data, progress=False)
    real = torch.from_numpy(real)
    generator = trained_generator(args.steps)
    fake = generated_images(generator, args.n_fake, seed=2026)
    exact, fast = metrics.make_extractor(device, "exact"), metrics.make_extractor(device, "fast")
    paths = {
        "torch-fidelity": lambda images: metrics.features_via_torch_fidelity(images, args.batch_size),
        "exact": lambda images: metrics.features_of_images(images, exact, args.batch_size, verbose=False),
        "fast": lambda images: metrics.features_of_images(images, fast, args.batch_size, verbose=False),
    }
    if device.type == "cuda":  # torch-fidelity's path here is the CPU one; compare like with like
        paths.pop("torch-fidelity")

    # Accuracy: features and FID of each path.
    features = {name: (extract(real), extract(fake)) for name, extract in paths.items()}
    reference_name = next(iter(paths))
    ref_real, ref_fake = features[reference_name]
    ref_fid = metrics.fid(metrics.reference_statistics(ref_real), ref_fake)

    # Speed: each path on the same images, interleaved.
    timing = fake[: args.timing_images]
    for extract in paths.values():
        extract(timing[: args.batch_size])  # warm-up: allocator, oneDNN primitives, frozen-graph optimisation
    seconds: dict[str, list[float]] = {name: [] for name in paths}
    for _ in range(args.rounds):
        for name, extract in paths.items():
            start = time.perf_counter()
            extract(timing)
            seconds[name].append(time.perf_counter() - start)

    print(
        f"device {device}, threads {torch.get_num_threads()}, batch {args.batch_size}; {len(real)} real and "
        f"{len(fake)} generated images; timing: {args.rounds} rounds × {len(timing)} images, median"
    )
    print(
        f"{'path':<16} {'img/s':>7} {'× ' + reference_name:>17} {'max err':>9} {'L2 err':>9} {'FID':>9} {'FID err':>9}"
    )
    reference_time = statistics.median(seconds[reference_name])
    for name in paths:
        real_f, fake_f = features[name]
        pairs = ((real_f, ref_real), (fake_f, ref_fake))
        max_error = max(float((a - b).abs().max() / b.abs().max()) for a, b in pairs)
        l2_error = max(float((a - b).norm() / b.norm()) for a, b in pairs)
        value = metrics.fid(metrics.reference_statistics(real_f), fake_f)
        median = statistics.median(seconds[name])
        print(
            f"{name:<16} {len(timing) / median:7.1f} {reference_time / median:17.2f} {max_error:9.2e} {l2_error:9.2e} "
            f"{value:9.3f} {abs(value - ref_fid) / ref_fid:9.2e}"
        )
    distance_from_statistics(ref_real, ref_fake, args.rounds)
    in_training_error(generator, real, args.n_fake, GANConfig().train.fid_samples)


def distance_from_statistics(real: torch.Tensor, fake: torch.Tensor, rounds: int) -> None:
    """``metrics.fid`` against torch-fidelity's ``fid_statistics_to_metric``, same features, interleaved."""
    from torch_fidelity.metric_fid import fid_features_to_statistics, fid_statistics_to_metric

    reference = metrics.reference_statistics(real)
    ways = {
        "torch-fidelity": lambda: fid_statistics_to_metric(
            reference, fid_features_to_statistics(fake.double()), verbose=False
        )["frechet_inception_distance"],
        "metrics.fid": lambda: metrics.fid(reference, fake),
    }
    seconds: dict[str, list[float]] = {name: [] for name in ways}
    values = {}
    for _ in range(rounds):
        for name, way in ways.items():
            start = time.perf_counter()
            values[name] = way()
            seconds[name].append(time.perf_counter() - start)
    slow, quick = (statistics.median(seconds[name]) for name in ways)
    print(
        f"FID from statistics ({len(real)} real, {len(fake)} generated): torch-fidelity {slow:.3f} s, metrics.fid "
        f"{quick:.3f} s (×{slow / quick:.0f}); values differ by {abs(values['metrics.fid'] / values['torch-fidelity'] - 1):.1e}"
    )


def in_training_error(
    generator: torch.nn.Module, real: torch.Tensor, n_fake: int, samples: int, seeds: int = 5
) -> None:
    """The in-training FID (fast extractor, ``samples`` images, as ``gans.loop`` scores) against evaluate's exact FID."""
    reference = metrics.reference_statistics(
        metrics.features_of_images(real, metrics.make_extractor("cpu", "exact"), verbose=False)
    )
    exact = metrics.fid(
        reference,
        metrics.features_of_generator(
            generator, generator.z_dim, n_fake, 2026, metrics.make_extractor("cpu", "exact"), verbose=False
        ),
    )
    scores = [
        metrics.InTrainingFID(reference, samples, seed=seed)(generator)["fid"] for seed in range(2027, 2027 + seeds)
    ]
    mean, spread = statistics.mean(scores), statistics.stdev(scores)
    print(
        f"in-training FID (fast, {samples} images, {seeds} latent draws): {mean:.2f} ± {spread:.2f} against exact "
        f"{exact:.2f} ({n_fake} images): {100 * (mean - exact) / exact:+.1f} % (draw-to-draw ±{100 * spread / exact:.1f} %)"
    )


if __name__ == "__main__":
    main()
