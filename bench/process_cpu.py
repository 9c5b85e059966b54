"""Where a command's CPU time goes, by process title: the command, its stages, Ray's workers and daemons.

Runs the command and samples every process on the machine every ``--interval`` seconds (``/proc``), adding each
process's CPU time since the previous sample to its current title (``ray::`` titles cut to the actor's name, so
a worker's time lands on ``ray::IDLE`` while it starts and on its actor once it runs). Processes alive before
the command count only what they use during it. Prints the titles using the most CPU, the total, the wall and
how busy the CPUs were (total / (wall × CPUs)). Linux only. Run it on an otherwise idle machine.

    python bench/process_cpu.py [--top 30] -- python -m pytest -q tests/test_sweep.py
"""

from __future__ import annotations

import argparse
import collections
import os
import subprocess
import time

TICKS = os.sysconf("SC_CLK_TCK")


def title(pid: str) -> str:
    """A process's command line, short: ``ray::<actor>`` for Ray's workers, else its first 100 characters."""
    with open(f"/proc/{pid}/cmdline", "rb") as f:
        line = " ".join(f.read().decode(errors="replace").split("\0")).strip()
    return line.split()[0] if line.startswith("ray::") else line[:100] or "<exited>"


def cpu_seconds(pid: str) -> float:
    """User + system CPU seconds of ``pid`` so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def sample(last: dict[str, float], by_title: collections.Counter, new_from_zero: bool) -> None:
    """Add every process's CPU time since ``last`` to its title; a process first seen counts from 0 or from now."""
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            now, name = cpu_seconds(pid), title(pid)
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
        before = last.setdefault(pid, 0.0 if new_from_zero else now)
        last[pid] = now
        if now > before:
            by_title[name] += now - before


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--interval", type=float, default=0.3, help="seconds between samples")
    parser.add_argument("--top", type=int, default=30, help="titles to print")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="the command, after --")
    args = parser.parse_args()
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("give the command to measure after --")
    last: dict[str, float] = {}
    by_title: collections.Counter = collections.Counter()
    sample(last, by_title, new_from_zero=False)  # what runs already counts from now on
    started = time.perf_counter()
    process = subprocess.Popen(command)
    while process.poll() is None:
        time.sleep(args.interval)
        sample(last, by_title, new_from_zero=True)
    wall = time.perf_counter() - started
    total = sum(by_title.values())
    for name, seconds in by_title.most_common(args.top):
        print(f"{seconds:9.1f} s  {name}")
    cpus = os.cpu_count() or 1
    print(
        f"{total:9.1f} s  CPU in all over {wall:.1f} s of wall on {cpus} CPUs: {100 * total / (wall * cpus):.0f} % busy"
    )
    raise SystemExit(process.returncode)


if __name__ == "__main__":
    main()
