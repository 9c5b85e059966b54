"""``python -m pipeline.tools.latent``: interpolation grids and vector arithmetic in a trained generator's latent space.

Not a DVC stage: a tool to run after ``train`` (or ``export``). Writes to ``--out`` (default ``plots/latent/``):

- ``interpolation_lerp.png``, ``interpolation_slerp.png``: ``--rows`` walks of ``--steps`` images each, between
  latents drawn from ``--seed`` (the same ends in both files);
- ``arithmetic.png``: mean(z[A]) − mean(z[B]) + mean(z[C]) with ``--a/--b/--c`` indices into the checkpoint's
  ``fixed_z`` — the latents of ``plots/eval/samples.png``, in its order (row-major). One row per group (its
  members, then G(mean z) in the last column), then the result.

The generator is the checkpoint's (``paths.train`` of params.yaml, or ``--checkpoint``; ``--weights`` picks
which), drawn with its training BatchNorm statistics, or an exported TorchScript one (``--model``). An
exported model carries no fixed latents, so with ``--model`` they are redrawn as training draws them
(``train.n_fixed`` latents from ``--train-seed``), which reproduces the checkpoint's for the same seed and z_dim.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Callable, Optional, Sequence

import torch

from gans import checkpoint
from gans.config import TrainConfig
from gans.errors import UserError
from gans.export import TORCHSCRIPT_FILE, load_exported
from gans.latent import GROUPS, arithmetic_latents, interpolation_latents
from gans.plots import save_labelled_grid
from pipeline.params import load_params, print_config, run_stage

DEFAULT_OUT = "plots/latent"
MODES = ("lerp", "slerp")
ARITHMETIC_FILE = "arithmetic.png"


def interpolation_file(mode: str) -> str:
    return f"interpolation_{mode}.png"


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m pipeline.tools.latent", description=__doc__.splitlines()[0])
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--checkpoint", type=Path, help="train checkpoint (default: paths.train of params.yaml)")
    source.add_argument(
        "--model", type=Path, help=f"exported generator: models/generator/<version>/ or its {TORCHSCRIPT_FILE}"
    )
    parser.add_argument("--weights", default="G_ema", choices=checkpoint.GENERATOR_WEIGHTS, help="checkpoint generator")
    parser.add_argument("--out", type=Path, default=Path(DEFAULT_OUT), help="output folder")
    parser.add_argument("--rows", type=int, default=4, help="interpolations (grid rows)")
    parser.add_argument("--steps", type=int, default=8, help="images per interpolation, both ends included")
    parser.add_argument("--seed", type=int, default=0, help="seed of the interpolations' end latents")
    parser.add_argument(
        "--train-seed",
        type=int,
        default=TrainConfig.seed,
        help="with --model: train.seed, from which the fixed latents are redrawn",
    )
    for group, default in zip(GROUPS, ((0, 1, 2), (3, 4, 5), (6, 7, 8))):
        parser.add_argument(
            f"--{group}",
            type=int,
            nargs="*",
            default=list(default),
            metavar="INDEX",
            help=f"group {group.upper()}: indices into the fixed latents",
        )
    return parser.parse_args(argv)


def load_source(args: argparse.Namespace) -> tuple[Callable[[torch.Tensor], torch.Tensor], torch.Tensor, str]:
    """(generator, fixed latents [N, z_dim], a description) from ``--model`` or the checkpoint."""
    if args.model is not None:
        directory = args.model.parent if args.model.suffix == ".pt" else args.model
        if not (directory / TORCHSCRIPT_FILE).is_file():
            raise UserError(
                f"No exported generator at {args.model}; pass models/generator/<version>/ after the export stage."
            )
        model, signature = load_exported(directory)
        fixed_z = torch.randn(
            TrainConfig.n_fixed, signature["z_dim"], generator=torch.Generator().manual_seed(args.train_seed)
        )
        return model, fixed_z, f"{directory} (fixed latents from train seed {args.train_seed})"
    path = args.checkpoint or Path(load_params().paths.train) / checkpoint.FILENAME
    state = checkpoint.load(path)
    generator = checkpoint.load_generator(state, args.weights)
    step = {"G_init": 0, "best": (state.get("best") or {}).get("step")}.get(args.weights, state["step"])
    return generator, state["fixed_z"], f"{path} ({args.weights}, step {step})"


def main(argv: Optional[Sequence[str]] = None) -> list[Path]:
    args = parse_args(argv)
    print_config("latent", {key: str(value) if isinstance(value, Path) else value for key, value in vars(args).items()})
    generator, fixed_z, described = load_source(args)
    if args.rows < 1:
        raise UserError(f"--rows {args.rows} must be at least 1.")

    # Every latent first: a bad index or step count fails before any file is written.
    ends = torch.randn(2, args.rows, fixed_z.shape[1], generator=torch.Generator().manual_seed(args.seed))
    walks = {mode: interpolation_latents(ends[0], ends[1], args.steps, mode) for mode in MODES}
    arithmetic = arithmetic_latents(fixed_z, {group: getattr(args, group) for group in GROUPS})

    written = []
    with torch.no_grad():
        titles = [f"{t:.2g}" for t in torch.linspace(0, 1, args.steps).tolist()]
        for mode, latents in walks.items():
            images = generator(latents)
            rows = [("", list(row)) for row in images.view(args.rows, args.steps, *images.shape[1:])]
            written.append(save_labelled_grid(rows, args.out / interpolation_file(mode), column_titles=titles))
        rows = arithmetic.rows(generator(arithmetic.tiles()))
        titles = [""] * (arithmetic.columns - 1) + ["mean"]
        written.append(save_labelled_grid(rows, args.out / ARITHMETIC_FILE, column_titles=titles))
    print(
        f"[latent] generator {described}: {args.rows} × {args.steps} interpolations from seed {args.seed}, "
        f"A {list(arithmetic.indices['a'])} − B {list(arithmetic.indices['b'])} + C {list(arithmetic.indices['c'])} "
        f"of {len(fixed_z)} fixed latents",
        flush=True,
    )
    for path in written:
        print(f"[latent] wrote {path}", flush=True)
    return written


if __name__ == "__main__":
    run_stage("latent", main)
