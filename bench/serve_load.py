"""Load test of the model server on loopback, with a version swap in the middle of the load.

Exports two versions of params.yaml's generator architecture (fresh weights, two seeds) into a temp model
directory, starts ``python -m pipeline.serving.serve`` on 127.0.0.1, and sends ``--requests`` predict requests from
``--concurrency`` keep-alive connections; every 10th request is malformed (a rotating kind of bad request).
When ``--swap-at`` of the requests are done, version 2 is renamed into the model directory, as the export
stage writes it. Prints throughput, p50/p99 latency overall and across the swap, responses by status, the
requests that failed (no HTTP response), the versions seen, and the replica's memory before and after.

    python bench/serve_load.py                       # 2400 requests, concurrency 16
    python bench/serve_load.py --requests 10000      # the memory check over 10 000 requests
"""

from __future__ import annotations

import argparse
import collections
import http.client
import json
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import torch

from gans.config import GANConfig
from gans.export import export_generator
from gans.models import MODELS

# Run as `python bench/serve_load.py`, this file's folder is on sys.path and the repo is not: tests/ is not installed.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.helpers import server_process  # noqa: E402

MALFORMED = [
    (b'{"seed": ', "application/json"),  # malformed JSON
    (b'{"instances": [[0.0, 1.0]]}', "application/json"),  # wrong z shape
    (b'{"instances": [[NaN]]}', "application/json"),  # non-finite z
    (b'{"seed": 0, "n": 100000}', "application/json"),  # n over the limit
    (b'{"seed": 0}', "text/plain"),  # wrong content type
]


def export_versions(cfg: GANConfig, root: Path, spare: Path) -> Path:
    """Version 1 in ``root``; version 2 (other weights) ready in ``spare`` to be renamed in."""
    for seed, target in ((0, root), (1, spare)):
        torch.manual_seed(seed)
        generator = MODELS.get(cfg.model.name).generator(cfg)
        export_generator(generator, cfg=cfg, root=target, version=str(1 + seed))
    return spare / "2"


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) * 1000 if values else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2400)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--swap-at", type=float, default=0.4, help="fraction of requests done when version 2 appears")
    parser.add_argument("--backend", default="onnx", choices=["onnx", "torchscript"])
    args = parser.parse_args()

    cfg = GANConfig()
    work = Path(tempfile.mkdtemp(prefix="bench-serve-"))
    root = work / "models"
    incoming = export_versions(cfg, root, work / "spare")
    records: list[tuple[float, float, int | None, str | None]] = []  # (start, latency s, status, version)
    lock, counter = threading.Lock(), iter(range(args.requests))
    swap_after = int(args.requests * args.swap_at)
    swap_time: list[float] = []

    def client(port: int) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        while True:
            with lock:
                index = next(counter, None)
                if index == swap_after and not swap_time:  # only a rename here: the copy was made before the load
                    (root / ".incoming-2").rename(root / "2")
                    swap_time.append(time.perf_counter())
            if index is None:
                break
            body, content_type = (
                MALFORMED[index // 10 % len(MALFORMED)]
                if index % 10 == 9
                else (json.dumps({"seed": index, "n": 4}).encode(), "application/json")
            )
            started = time.perf_counter()
            status, version = None, None
            try:
                connection.request("POST", "/v1/models/generator:predict", body, {"Content-Type": content_type})
                response = connection.getresponse()
                data = response.read()
                status = response.status
                version = json.loads(data).get("model_version") if status == 200 else None
            except (OSError, http.client.HTTPException):
                connection.close()
                connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            records.append((started, time.perf_counter() - started, status, version))
        connection.close()

    with server_process(root, "--backend", args.backend) as url:
        port = int(url.rsplit(":", 1)[1])

        def rss() -> int:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            connection.request("GET", "/v1/server")
            return json.loads(connection.getresponse().read())["rss_bytes"]

        shutil.copytree(incoming, root / ".incoming-2")  # a hidden name: not a version until renamed
        rss_before = rss()
        began = time.perf_counter()
        threads = [threading.Thread(target=client, args=(port,)) for _ in range(args.concurrency)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        elapsed = time.perf_counter() - began
        rss_after = rss()

    records.sort()
    statuses = collections.Counter(status for _, _, status, _ in records)
    ok = [latency for _, latency, status, _ in records if status == 200]
    first_new = min((start for start, _, _, version in records if version == "2"), default=float("nan"))
    # Across the swap: from 1 s before version 2 appeared to 1 s after the first request it answered.
    window = [
        (latency, status)
        for start, latency, status, _ in records
        if swap_time and swap_time[0] - 1 <= start <= first_new + 1
    ]
    window_ok = [latency for latency, status in window if status == 200]
    p50, p99 = percentile(ok, 50), percentile(ok, 99)
    w50, w99 = percentile(window_ok, 50), percentile(window_ok, 99)
    print(
        f"model {cfg.model.name} {cfg.data.resolution} px, backend {args.backend}; {args.requests} requests "
        f"({sum(1 for i in range(args.requests) if i % 10 == 9)} malformed) at concurrency {args.concurrency}"
    )
    print(f"throughput: {len(records) / elapsed:.0f} requests/s ({elapsed:.1f} s)")
    print(f"latency of 200s: p50 {p50:.1f} ms, p99 {p99:.1f} ms (p99/p50 {p99 / p50:.2f})")
    print(
        "responses by status: "
        + ", ".join(
            f"{s if s is not None else 'failed'}: {n}"
            for s, n in sorted(statuses.items(), key=lambda item: (item[0] is None, item[0] or 0))
        )
    )
    print(
        f"5xx: {sum(n for s, n in statuses.items() if s is not None and s >= 500)}, "
        f"failed (no response): {statuses.get(None, 0)}"
    )
    print(
        f"swap: version 2 appeared after {swap_after} requests and answered "
        f"{(first_new - swap_time[0]) * 1000:.0f} ms later; {len(window)} requests across the swap, "
        f"{sum(1 for _, s in window if s is None or s >= 500)} failed or 5xx; "
        f"p50 {w50:.1f} ms, p99 {w99:.1f} ms (p99 {w99 / p50:.2f}× the overall p50)"
    )
    versions = collections.Counter(version for *_, version in records if version)
    print(f"answered by version: {dict(sorted(versions.items()))}")
    print(
        f"replica memory: {rss_before / 2**20:.0f} MiB before, {rss_after / 2**20:.0f} MiB after "
        f"({(rss_after - rss_before) / 2**20:+.1f} MiB over {args.requests} requests)"
    )
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
