"""Where the time of `dvc repro` goes: runs the whole DAG (forced) and prints each stage's wall time.

Times each stage from its "Running stage" line to the next stage's (the last one to the end), so the
figures are what a user waits for, process start-up included. Run it in the repository to measure
(``--repo``, default the current directory); for another commit, clone it first, e.g.

    git clone -q . /tmp/before && git -C /tmp/before checkout -q 95940fa
    PYTHONPATH=/tmp/before python bench/stage_times.py --repo /tmp/before
    python bench/stage_times.py                       # this checkout

(``PYTHONPATH`` makes Ray's workers import the clone's code rather than this checkout's editable install.)
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repo", type=Path, default=Path("."))
    args = parser.parse_args()

    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    started = time.perf_counter()
    marks: list[tuple[str, float]] = []
    process = subprocess.Popen(
        ["dvc", "repro", "--force"], cwd=args.repo, env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    for line in process.stdout:
        match = re.match(r"Running stage '([\w-]+)'", line)
        if match:
            marks.append((match.group(1), time.perf_counter()))
            print(f"[{time.perf_counter() - started:6.1f} s] {line.rstrip()}", flush=True)
    if process.wait() != 0:
        sys.exit(f"dvc repro failed in {args.repo} (exit {process.returncode}).")
    ended = time.perf_counter()

    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=args.repo, capture_output=True, text=True
    ).stdout.strip()
    print(f"\n`dvc repro --force` at {commit}: {ended - started:.0f} s")
    print("| stage | seconds |")
    print("|---|---|")
    for (stage, start), (_, end) in zip(marks, [*marks[1:], ("end", ended)]):
        print(f"| {stage} | {end - start:.0f} |")


if __name__ == "__main__":
    main()
