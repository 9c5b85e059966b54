"""Stage ``prepare``: read the configured source, crop, resize, scale; write dataset, manifest and preview.

Images are processed by ``data.workers`` local processes, or across the Ray cluster at ``ray.address``
(Ray's multiprocessing Pool), and streamed to disk (never all in memory). The output is the same either way.
"""

from __future__ import annotations

import contextlib
import os
import time
from typing import Any, Iterator, Optional

from gans.data import iter_outcomes, write_prepared_stream
from pipeline.params import load_params, print_config, run_stage


@contextlib.contextmanager
def cluster_pool(address: Optional[str]) -> Iterator[Optional[Any]]:
    """Ray's multiprocessing Pool over the cluster at ``address`` (one process per CPU), or None locally."""
    if not address:
        yield None
        return
    import ray
    from ray.util.multiprocessing import Pool

    from pipeline.ray_train import init_ray

    init_ray(address)
    pool = Pool(processes=max(1, int(ray.cluster_resources().get("CPU", 1))))
    try:
        yield pool
    finally:
        pool.terminate()
        ray.shutdown()


def _manifest_base(params) -> dict[str, Any]:
    cfg = params.gan.data
    return {
        "source": cfg.source,
        "crop": cfg.crop,
        "params": params.raw.get("data", {}),
        "stored_dtype": "uint8",
        "value_range": [-1.0, 1.0],
        "scaling": "x / 127.5 - 1",
    }


def main() -> None:
    params = load_params()
    cfg, out_dir = params.gan.data, params.paths.prepared
    print_config("prepare", cfg)
    workers = cfg.workers or os.cpu_count() or 1
    started = time.perf_counter()
    with cluster_pool(params.ray.address) as pool:
        manifest = write_prepared_stream(out_dir, iter_outcomes(cfg, workers=workers, pool=pool), _manifest_base(params))
    seconds = time.perf_counter() - started
    where = f"{workers} workers" if pool is None else f"the Ray cluster at {params.ray.address}"
    skipped = {k: v for k, v in manifest["counts"].items() if k != "kept"}
    print(f"[prepare] kept {manifest['count']} images {manifest['shape']} → {out_dir}"
          f" (skipped: {skipped or 'none'}; {sum(manifest['counts'].values()) / seconds:.1f} images/s on {where})",
          flush=True)


if __name__ == "__main__":
    run_stage("prepare", main)
