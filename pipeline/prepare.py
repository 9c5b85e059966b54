"""Stage ``prepare``: read the configured source, crop, resize, scale; write dataset, manifest and preview."""

from __future__ import annotations

import time

import torch

from gans.data import content_hash, prepare_images, to_unit_range, write_prepared
from gans.plots import save_grid
from pipeline.params import load_params, print_config, run_stage

PREVIEW_FILE = "preview.png"


def main() -> None:
    params = load_params()
    cfg, out_dir = params.gan.data, params.paths.prepared
    print_config("prepare", cfg)
    started = time.perf_counter()
    images, counts, rejected = prepare_images(cfg)
    manifest = {
        "source": cfg.source,
        "crop": cfg.crop,
        "params": params.raw.get("data", {}),
        "count": int(images.shape[0]),
        "counts": counts,
        "rejected": rejected,
        "shape": list(images.shape[1:]),
        "stored_dtype": "uint8",
        "value_range": [-1.0, 1.0],
        "scaling": "x / 127.5 - 1",
        "content_sha256": content_hash(images),
        "seconds": round(time.perf_counter() - started, 2),
    }
    write_prepared(out_dir, images, manifest)
    save_grid(to_unit_range(torch.from_numpy(images[:64])), f"{out_dir}/{PREVIEW_FILE}")
    print(f"[prepare] {manifest['count']} images {manifest['shape']} → {out_dir}", flush=True)


if __name__ == "__main__":
    run_stage("prepare", main)
