"""Stage ``prepare``: read the configured source, crop, resize, scale; write dataset, manifest and preview.

Images are processed by ``data.workers`` local processes, or across the Ray cluster at ``ray.address``
(Ray's multiprocessing Pool), and streamed to disk (never all in memory). The output is the same either way.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import time
from typing import Any, ContextManager, Optional

from gans.prepare.stream import check_source_and_crop, iter_outcomes, write_prepared_stream
from pipeline.params import load_params, print_config, run_stage


def _pool(address: Optional[str]) -> ContextManager[Optional[Any]]:
    """Ray's Pool over the cluster at ``ray.address`` (Ray is imported only then), or None for local workers."""
    if not address:
        return contextlib.nullcontext()
    from pipeline.ray_runtime.cluster import cluster_pool

    return cluster_pool(address)


def _manifest_base(params) -> dict[str, Any]:
    cfg = params.gan.data
    return {
        "source": cfg.source,
        "crop": cfg.crop,
        "config": dataclasses.asdict(cfg),
        "stored_dtype": "uint8",
        "value_range": [-1.0, 1.0],
        "scaling": "x / 127.5 - 1",
    }


def main() -> None:
    params = load_params()
    cfg, out_dir = params.gan.data, params.paths.prepared
    print_config("prepare", cfg)
    check_source_and_crop(cfg)
    workers = cfg.workers or os.cpu_count() or 1
    started = time.perf_counter()
    with _pool(params.ray.cluster_address) as pool:
        manifest = write_prepared_stream(
            out_dir, iter_outcomes(cfg, workers=workers, pool=pool), _manifest_base(params)
        )
    seconds = time.perf_counter() - started
    where = f"{workers} workers" if pool is None else f"the Ray cluster at {params.ray.cluster_address}"
    skipped = {k: v for k, v in manifest["counts"].items() if k != "kept"}
    print(
        f"[prepare] kept {manifest['count']} images {manifest['shape']} → {out_dir}"
        f" (skipped: {skipped or 'none'}; {sum(manifest['counts'].values()) / seconds:.1f} images/s on {where})",
        flush=True,
    )


if __name__ == "__main__":
    run_stage("prepare", main)
