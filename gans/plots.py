"""Pictures a person would rather look at than numbers: sample grids and loss curves (PNG).

torchvision (grids) and matplotlib (curves) are imported by the functions that draw with them: either takes
about a second to import, and a process that draws only the other kind need not pay for it.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Optional, Sequence

import torch

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


def _save_figure(fig, path: str | os.PathLike, dpi: int = 100) -> Path:
    """Write a matplotlib figure as a PNG atomically and release it."""
    plt = _pyplot()
    try:
        return _atomic_png(path, lambda tmp: fig.savefig(tmp, dpi=dpi))
    finally:
        plt.close(fig)


def grid_image(images: torch.Tensor, nrow: int | None = None, upscale: int = 2) -> torch.Tensor:
    """Images in [-1, 1] ([N, C, H, W]) as one grid image in [0, 1] ([C, H, W]), nearest-upscaled so small
    images stay visible; ``nrow`` images a row (default: a square)."""
    from torchvision.utils import make_grid

    images = images.detach().float().cpu()
    if upscale > 1:
        images = torch.nn.functional.interpolate(images, scale_factor=upscale, mode="nearest")
    nrow = nrow or max(1, int(math.ceil(math.sqrt(images.shape[0]))))
    return make_grid(images, nrow=nrow, padding=2, normalize=True, value_range=(-1, 1), pad_value=1.0)


def save_grid(images: torch.Tensor, path: str | os.PathLike, nrow: int | None = None, upscale: int = 2) -> Path:
    """Save images in [-1, 1] ([N, C, H, W]) as one grid PNG (``grid_image``)."""
    from torchvision.utils import save_image

    grid = grid_image(images, nrow, upscale)
    return _atomic_png(path, lambda tmp: save_image(grid, tmp))


def save_curves(
    history: Sequence[dict],
    path: str | os.PathLike,
    title: str = "",
    shaded: Optional[dict[str, tuple[int, int]]] = None,
) -> Path:
    """Plot training curves from loop history (one panel each: losses, D accuracy, gradient norms).

    ``shaded`` maps a label (a diagnosed failure mode) to the step range it covers, shaded on every panel.
    """
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
            if any(key in row for row in history):  # a row may lack a gradient norm (every update AMP-skipped)
                ax.plot(steps, [row.get(key, math.nan) for row in history], label=key)
        for (label, (start, end)), colour in zip((shaded or {}).items(), ("tab:red", "tab:purple", "tab:brown")):
            ax.axvspan(start, max(end, start + 1), color=colour, alpha=0.15, label=label.replace("_", " "))
        ax.set_title(name)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        ax.legend()
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return _save_figure(fig, path, dpi=100)


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
    return _save_figure(fig, path, dpi=80)


def save_lines(series: Sequence[dict], path: str | os.PathLike, *, xlabel: str, ylabel: str, title: str = "") -> Path:
    """One line per series (``label``, ``x``, ``y``); a series with ``ended_early`` ends in a cross.

    Non-finite values are left out of a line.
    """
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for item in series:
        points = [(x, y) for x, y in zip(item["x"], item["y"]) if math.isfinite(y)]
        if not points:
            continue
        xs, ys = zip(*points)
        (line,) = ax.plot(xs, ys, marker="o", markersize=3, label=item["label"])
        if item.get("ended_early"):
            ax.plot(xs[-1], ys[-1], marker="x", markersize=10, markeredgewidth=2, color=line.get_color())
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    if series:
        ax.legend(fontsize=8)
    ax.set_title(title)
    fig.tight_layout()
    return _save_figure(fig, path, dpi=100)


def save_heatmap(
    values: Sequence[Sequence[Optional[float]]],
    rows: Sequence[str],
    columns: Sequence[str],
    path: str | os.PathLike,
    *,
    xlabel: str,
    ylabel: str,
    title: str = "",
    notes: Optional[Sequence[Sequence[str]]] = None,
) -> Path:
    """A table of numbers as a colour map with each cell's value (and note) written in it (None: an empty cell)."""
    import numpy as np

    plt = _pyplot()
    grid = np.array([[math.nan if v is None else v for v in row] for row in values], dtype=float)
    fig, ax = plt.subplots(figsize=(1.4 * len(columns) + 2.5, 0.8 * len(rows) + 1.8))
    image = ax.imshow(grid, cmap="viridis_r", aspect="auto")
    ax.set_xticks(range(len(columns)), labels=list(columns))
    ax.set_yticks(range(len(rows)), labels=list(rows))
    for (i, j), value in np.ndenumerate(grid):
        text = ("–" if math.isnan(value) else f"{value:.1f}") + (f"\n{notes[i][j]}" if notes and notes[i][j] else "")
        ax.text(
            j,
            i,
            text,
            ha="center",
            va="center",
            fontsize=9,
            color="w" if math.isnan(value) else "k",
            bbox={"facecolor": "white", "alpha": 0.6, "linewidth": 0} if not math.isnan(value) else None,
        )
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    fig.colorbar(image, ax=ax)
    fig.tight_layout()
    return _save_figure(fig, path, dpi=100)


def save_labelled_grid(
    rows: Sequence[tuple[str, Sequence[Optional[torch.Tensor]]]],
    path: str | os.PathLike,
    *,
    column_titles: Optional[Sequence[str]] = None,
    upscale: int = 2,
    padding: int = 2,
    fontsize: float = 9,
) -> Path:
    """A grid of images in [-1, 1] (each [C, H, W], all one size) with a label left of each row.

    ``rows`` is (label, cells) per row; a None cell, and the cells a short row lacks, stay white. The image
    part is laid out as ``save_grid`` lays it out (tiles nearest-upscaled, ``padding`` white pixels around
    each) and drawn pixel for pixel at the right of the PNG: it is ``columns·(H·upscale + padding) + padding``
    pixels wide and ``rows·(…) + padding`` high. Labels take a left margin as wide as the longest needs
    (none when all are empty); ``column_titles`` add a band of ``labelled_grid_title_band(fontsize)`` pixels on top.
    """
    import numpy as np

    plt = _pyplot()
    tiles = [cell for _, cells in rows for cell in cells if cell is not None]
    if not tiles:
        raise ValueError("save_labelled_grid needs at least one image.")
    _, tile_h, tile_w = tiles[0].shape
    tile_h, tile_w = tile_h * upscale, tile_w * upscale
    columns = max(len(cells) for _, cells in rows)
    canvas = np.ones((len(rows) * (tile_h + padding) + padding, columns * (tile_w + padding) + padding, 3))
    for r, (_, cells) in enumerate(rows):
        for c, cell in enumerate(cells):
            if cell is None:
                continue
            image = (
                ((cell.detach().float().cpu().clamp(-1, 1) + 1) / 2)
                .repeat_interleave(upscale, 1)
                .repeat_interleave(upscale, 2)
            )
            image = image.expand(3, -1, -1) if image.shape[0] == 1 else image[:3]
            top, left = padding + r * (tile_h + padding), padding + c * (tile_w + padding)
            canvas[top : top + tile_h, left : left + tile_w] = image.permute(1, 2, 0).numpy()

    dpi = 100
    fig = plt.figure(dpi=dpi, facecolor="white")
    renderer = fig.canvas.get_renderer()

    def text_width(text: str) -> float:
        probe = fig.text(0, 0, text, fontsize=fontsize)
        width = probe.get_window_extent(renderer=renderer).width
        probe.remove()
        return width

    gap = 6
    label_margin = (
        int(math.ceil(max(text_width(label) for label, _ in rows))) + 2 * gap if any(label for label, _ in rows) else 0
    )
    band = labelled_grid_title_band(fontsize) if column_titles else 0
    width, height = label_margin + canvas.shape[1], band + canvas.shape[0]
    fig.set_size_inches((width + 0.5) / dpi, (height + 0.5) / dpi)  # +0.5: Agg truncates the pixel size
    ax = fig.add_axes((label_margin / width, 0, canvas.shape[1] / width, canvas.shape[0] / height))
    ax.imshow(canvas, interpolation="nearest", aspect="auto")
    ax.axis("off")
    for r, (label, _) in enumerate(rows):
        centre = band + padding + r * (tile_h + padding) + tile_h / 2  # pixels from the top
        fig.text((label_margin - gap) / width, 1 - centre / height, label, fontsize=fontsize, ha="right", va="center")
    for c, title in enumerate(column_titles or ()):
        centre = label_margin + padding + c * (tile_w + padding) + tile_w / 2
        fig.text(centre / width, 1 - band / 2 / height, title, fontsize=fontsize, ha="center", va="center")
    return _save_figure(fig, path, dpi=dpi)


def labelled_grid_title_band(fontsize: float = 9) -> int:
    """Height in pixels of ``save_labelled_grid``'s column-title band (at its 100 dpi)."""
    return int(math.ceil(fontsize * 100 / 72 * 1.8))
