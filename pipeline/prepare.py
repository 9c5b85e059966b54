"""Stage ``prepare``: read the configured source, crop, resize, scale; write dataset, manifest and preview.

Images are processed by ``data.workers`` processes and streamed to disk (never all in memory).
"""

from __future__ import annotations

import os
import time

import numpy as np
import torch

from gans.data import IMAGES_FILE, iter_outcomes, to_unit_range, write_prepared_stream
from gans.plots import save_grid
from pipeline.params import load_params, print_config, run_stage

PREVIEW_FILE = "preview.png"


def main() -> None:
    params = load_params()
    cfg, out_dir = params.gan.data, params.paths.prepared
    print_config("prepare", cfg)
    workers = cfg.workers or os.cpu_count() or 1
    started = time.perf_counter()
    manifest = write_prepared_stream(
        out_dir,
        iter_outcomes(cfg, workers=workers),
        {
            "source": cfg.source,
            "crop": cfg.crop,
            "params": params.raw.get("data", {}),
            "stored_dtype": "uint8",
            "value_range": [-1.0, 1.0],
            "scaling": "x / 127.5 - 1",
        },
    )
    seconds = time.perf_counter() - started
    images = np.load(f"{out_dir}/{IMAGES_FILE}", mmap_mode="r")
    save_grid(to_unit_range(torch.from_numpy(np.array(images[:64]))), f"{out_dir}/{PREVIEW_FILE}")
    skipped = {k: v for k, v in manifest["counts"].items() if k != "kept"}
    print(f"[prepare] kept {manifest['count']} images {manifest['shape']} → {out_dir}"
          f" (skipped: {skipped or 'none'}; {sum(manifest['counts'].values()) / seconds:.1f} images/s, {workers} workers)",
          flush=True)


if __name__ == "__main__":
    run_stage("prepare", main)
