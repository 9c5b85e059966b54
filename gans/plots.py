"""Pictures a person would rather look at than numbers: sample grids and loss curves (PNG)."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Sequence

import torch
from torchvision.utils import make_grid, save_image

from gans.atomic import atomic_file


def _atomic_png(path: str | os.PathLike, write) -> Path:
    with atomic_file(path) as tmp:
        write(tmp)
    return Path(path)


def _pyplot():
    """matplotlib's pyplot on the file-only Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_grid(images: torch.Tensor, path: str | os.PathLike, nrow: int | None = None, upscale: int = 2) -> Path:
    """Save images in [-1, 1] ([N, C, H, W]) as one grid PNG, nearest-upscaled so small images stay visible."""
    images = images.detach().float().cpu()
    if upscale > 1:
        images = torch.nn.functional.interpolate(images, scale_factor=upscale, mode="nearest")
    nrow = nrow or max(1, int(math.ceil(math.sqrt(images.shape[0]))))
    grid = make_grid(images, nrow=nrow, padding=2, normalize=True, value_range=(-1, 1), pad_value=1.0)
    return _atomic_png(path, lambda tmp: save_image(grid, tmp))


def save_curves(history: Sequence[dict], path: str | os.PathLike, title: str = "") -> Path:
    """Plot training curves from loop history (one panel each: losses, D accuracy, gradient norms)."""
    plt = _pyplot()
    panels = [
        ("loss", ("d_loss", "g_loss")),
        ("D accuracy", ("d_acc_real", "d_acc_fake")),
        ("gradient norm", ("d_grad_norm", "g_grad_norm")),
    ]
    steps = [row["step"] for row in history]
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 3.6))
    for ax, (name, keys) in zip(axes, panels):
        for key in keys:
            if history and key in history[0]:
                ax.plot(steps, [row[key] for row in history], label=key)
        ax.set_title(name)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        ax.legend()
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    try:
        return _atomic_png(path, lambda tmp: fig.savefig(tmp, dpi=100))
    finally:
        plt.close(fig)


def save_labelled_rows(rows: dict[str, list], path: str | os.PathLike) -> Path:
    """One labelled row of uint8 [C, H, W] images per key (e.g. rejected examples by reason)."""
    plt = _pyplot()
    columns = max(len(images) for images in rows.values())
    fig, axes = plt.subplots(len(rows), columns, figsize=(1.2 * columns + 1.5, 1.3 * len(rows)), squeeze=False)
    for row, (label, images) in zip(axes, rows.items()):
        for column, ax in enumerate(row):
            ax.set_xticks([]), ax.set_yticks([])
            if column < len(images):
                image = images[column].transpose(1, 2, 0)
                ax.imshow(image[..., 0] if image.shape[2] == 1 else image, cmap="gray", vmin=0, vmax=255)
            else:
                ax.axis("off")
        row[0].set_ylabel(label, rotation=0, ha="right", va="center", fontsize=9)
    fig.tight_layout()
    try:
        return _atomic_png(path, lambda tmp: fig.savefig(tmp, dpi=80))
    finally:
        plt.close(fig)
