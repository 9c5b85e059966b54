"""What a new Python process pays to import what a stage, a Ray worker or a Tune trial imports, with and
without Python's bytecode cache.

Every stage is a new process, and so is every Ray Train worker, Train controller and Tune trial actor. Without
the bytecode cache (``PYTHONDONTWRITEBYTECODE`` set and a package installed with ``pip --no-compile``) each of
them compiles torch, torchvision and Ray from source again. Each variant runs in a fresh interpreter with a
bytecode cache of its own (``PYTHONPYCACHEPREFIX``), so the venv's own cache is neither used nor changed:

- ``no cache``: an empty cache that is never written (``PYTHONDONTWRITEBYTECODE=1``): compile every time;
- ``cache``: a cache the first, untimed run wrote: what every process after the first pays.

The two alternate round by round. Prints seconds per variant (median) and the ratio.

    python bench/imports.py [--rounds 3] [--modules torch,ray.train.torch]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

MODULES = "torch,torch._dynamo,torchvision,torch_fidelity,ray.train.torch,ray.tune,dvclive"
"""A Train worker that scores FID imports all of these (torch.optim imports torch._dynamo)."""


def import_seconds(modules: list[str], cache: str, write: bool) -> float:
    env = {**os.environ, "PYTHONPYCACHEPREFIX": cache}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    if not write:
        env["PYTHONDONTWRITEBYTECODE"] = "1"
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", f"import {', '.join(modules)}"], env=env, check=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--modules", default=MODULES, help="comma-separated modules to import")
    args = parser.parse_args()
    modules = args.modules.split(",")
    times: dict[str, list[float]] = {"no cache": [], "cache": []}
    with tempfile.TemporaryDirectory() as empty, tempfile.TemporaryDirectory() as warm:
        import_seconds(modules, warm, write=True)  # untimed: writes the cache the "cache" rows read
        for _ in range(args.rounds):
            times["no cache"].append(import_seconds(modules, empty, write=False))
            times["cache"].append(import_seconds(modules, warm, write=True))
    print(f"import {', '.join(modules)} in a new process, {os.cpu_count()} CPUs, {args.rounds} rounds:")
    base = statistics.median(times["no cache"])
    for name, seconds in times.items():
        median = statistics.median(seconds)
        print(f"  {name:9s} {median:6.2f} s  ×{median / base:.2f}  ({', '.join(f'{s:.2f}' for s in seconds)})")


if __name__ == "__main__":
    main()
