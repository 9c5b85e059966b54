"""How each stage's cost grows with the work: prepare, reference, train and evaluate on synthetic colour photos.

Builds a folder of procedural 128 px colour photos (``tests/synthetic.py``: gradients and shapes, PNG files,
cached under ``--out``; image i is the same in every run, so N images are the folder's first N, read with
``data.limit: N``) and runs the stages on it, each run a child process in a scratch directory with its own
params.yaml: the repository's, with ``data.source: folder``, ``crop: center``, 3 channels, the sweep off,
``train.fid_every: 0``. Every 50 ms the child's process tree is sampled with psutil: the peak of the summed
RSS, and of the summed anonymous RSS (``RssAnon``: the processes' own memory, without file pages such as
mapped images or shared libraries, which RSS counts once per process).

- ``prepare`` (at ``--resolution``, 64 px): N photos with ``data.workers: 1`` and ``data.workers: 0`` (one process
  per core); also the rate the stage prints (without the interpreter's start-up), and whether both outputs
  are identical.
- ``reference``: the stage on N prepared images.
- ``train``: ``gans.loop.fit`` in a child process (what a Ray Train worker runs, without Ray's start-up) for
  each model and resolution on the smallest train size, and at ``--resolution`` on the largest as well;
  steps/s from the first log step after a quarter of the steps to the last. A one-step run per model and
  resolution first fills the precision calibration cache (``gans.precision``), so every measured run uses
  the same cached decision.
- ``sweep``: the stage (ASHA, one trial at a time) at 32 px on the smallest train size, against the number of
  trials (2, 4, 8 grid points of bce/hinge × TTUR ratios, at ``sweep.steps`` 400) and ``sweep.steps`` (200, 400,
  800 at 4 trials).
- ``evaluate``: the stage against ``eval.n_fake``, on a DCGAN (the train runs' or one trained a few steps
  here; real set: the smallest train size). The cache of step-0 scores starts empty in each bench run.

Per stage: a table (N, wall s, images/s = N / wall, peak RSS and anonymous RSS in MiB); the exponent k of
cost ∝ N^k fitted by least squares on log–log, for wall time and for peak RSS; and the marginal seconds per
image between the smallest and the largest N (in which the process's fixed start-up cancels; in k it does
not, so k < 1 where start-up dominates). Then the ratios: train step time and worker RSS at the largest over
the smallest N, reference peak RSS at the largest over the smallest N. ``--rounds`` repeats every stage's
runs, sizes interleaved, and reports medians. First lines: the CPU, its bf16 support and the commit.

    python bench/scale.py                          # the default sizes
    python bench/scale.py --quick                  # a smoke run: tiny sizes at 32 px, DCGAN, 8 steps
    python bench/scale.py --stages prepare,reference --sizes prepare=1000,4000 --sizes reference=500,1000
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import yaml

REPO = Path(__file__).resolve().parents[1]
# Run as `python bench/scale.py`, this file's folder is on sys.path and the repo is not: tests/ is not installed.
sys.path.insert(0, str(REPO))
from tests.synthetic import write_synthetic_folder  # noqa: E402

STAGES = ("prepare", "reference", "train", "evaluate", "sweep")
DEFAULT_SIZES = {
    "prepare": [1000, 4000, 16000],
    "reference": [500, 1000, 2000],
    "train": [1000, 16000],
    "evaluate": [500, 1000, 2000],
    "sweep": [2, 4, 8],
}
QUICK_SIZES = {"prepare": [64, 128], "reference": [64, 128], "train": [64, 128], "evaluate": [64, 128], "sweep": [2]}
SWEEP_STEPS = [200, 400, 800]
"""``sweep.steps`` of the default sweep's growth in steps (4 trials); its sizes are trial counts at 400 steps."""
SWEEP_RATIOS = [1, 2, 4, 8]
"""TTUR ratios the sweeps of more trials add, two losses each (bce, hinge)."""
QUICK_EVAL = {"bootstrap": 20, "prc_subsets": 2, "floor_splits": 2, "standing_samples": 128}
"""Evaluate settings of ``--quick`` (the default bench uses params.yaml's)."""
MiB = 2**20


# Measuring a child process ------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Measurement:
    wall: float
    """Seconds from start to exit."""
    peak_rss: int
    """Bytes: the largest RSS summed over the process tree."""
    peak_anon: int
    """Bytes: the largest anonymous RSS summed over the process tree."""


def anonymous_rss(pid: int, fallback: int) -> int:
    """``RssAnon`` of ``pid`` in bytes (Linux), else ``fallback``."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return fallback


SETTLE_S = 0.25
"""A descendant younger than this is not counted: between fork and exec it reports its parent's pages as its own."""


def tree_memory(root: psutil.Process) -> tuple[int, int]:
    """(RSS, anonymous RSS) summed over ``root`` and its descendants, in bytes; a process gone meanwhile counts 0."""
    try:
        processes = [root, *root.children(recursive=True)]
    except psutil.Error:
        return 0, 0
    rss = anon = 0
    now = time.time()
    for process in processes:
        try:
            if process is not root and now - process.create_time() < SETTLE_S:
                continue
            resident = process.memory_info().rss
        except psutil.Error:
            continue
        rss += resident
        anon += anonymous_rss(process.pid, resident)
    return rss, anon


def measure(command: list[str], cwd: Path, env: dict[str, str], interval: float = 0.05) -> Measurement:
    """Run ``command`` in ``cwd`` (its output to ``cwd/log.txt``), sampling its tree's memory every ``interval`` s."""
    peak_rss = peak_anon = 0
    with open(cwd / "log.txt", "w") as log:
        started = time.perf_counter()
        child = subprocess.Popen(command, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT)
        root = psutil.Process(child.pid)
        while child.poll() is None:
            rss, anon = tree_memory(root)
            peak_rss, peak_anon = max(peak_rss, rss), max(peak_anon, anon)
            time.sleep(interval)
        wall = time.perf_counter() - started
    if child.returncode != 0:
        tail = (cwd / "log.txt").read_text()[-3000:]
        raise SystemExit(f"{' '.join(command)} failed in {cwd} (exit {child.returncode}):\n{tail}")
    return Measurement(wall, peak_rss, peak_anon)


# Runs: a scratch directory with a params.yaml each ------------------------------------------------------------------


class Workspace:
    """Scratch run directories and what runs share: prepared sets, references, checkpoints (made when first needed).

    ``resolution`` is that of prepare, reference, evaluate and of train's runs at every N.
    """

    def __init__(self, out: Path, photos: int, resolution: int, quick: bool) -> None:
        self.photos = out / "photos-128px"
        self.work = out / "work"
        shutil.rmtree(self.work, ignore_errors=True)
        self.work.mkdir(parents=True)
        self.resolution, self.quick, self.runs = resolution, quick, 0
        self.base = yaml.safe_load((REPO / "params.yaml").read_text())
        self.env = {
            **os.environ,
            "GAN_PIPELINE_CACHE": str(self.work / "cache"),  # step-0 scores and precision decisions: this run's only
            "RAY_USAGE_STATS_ENABLED": "0",
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        }
        self.env.pop("PYTHONDONTWRITEBYTECODE", None)  # else every child compiles torch's modules again
        self.prepared: dict[tuple[int, int], Path] = {}
        self.references: dict[int, Path] = {}
        self.checkpoints: dict[tuple[str, int, int], Path] = {}
        self.sweep_references: dict[tuple[int, int], Path] = {}
        started = time.perf_counter()
        missing = photos - len(list(self.photos.glob("*.png"))) if self.photos.is_dir() else photos
        write_synthetic_folder(self.photos, photos)
        if missing > 0:
            print(f"(wrote {missing} synthetic photos in {time.perf_counter() - started:.0f} s)", flush=True)

    def run_dir(self, name: str, resolution: int, count: int, **sections: dict[str, Any]) -> Path:
        """A new run directory with params.yaml: the repository's, for ``count`` photos at ``resolution``, and
        ``sections`` ({section: {key: value}}) over it. Paths are the run directory's own unless set."""
        self.runs += 1
        directory = self.work / f"{self.runs:03d}-{name}"
        (directory / "sweep").mkdir(parents=True)
        (directory / "sweep" / "best.yaml").write_text("")  # the sweep is off: train uses params.yaml as it is
        params = json.loads(json.dumps(self.base))
        defaults = {
            "data": {
                "source": "folder",
                "path": str(self.photos),
                "crop": "center",
                "resolution": resolution,
                "channels": 3,
                "limit": count,
            },
            "train": {"fid_every": 0},
            "sweep": {"enabled": False},
            "ray": {"num_workers": 1},
        }
        for section, values in [*defaults.items(), *sections.items()]:
            params[section].update(values)
        (directory / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
        return directory

    def stage(self, stage: str, directory: Path) -> Measurement:
        return measure([sys.executable, "-m", f"pipeline.{stage}"], directory, self.env)

    def prepare(self, resolution: int, count: int, workers: int = 1) -> tuple[Measurement, Path]:
        """The prepare stage; (the measurement, the run directory: its ``data/prepared`` holds the output)."""
        directory = self.run_dir(
            f"prepare-r{resolution}-n{count}-w{workers}", resolution, count, data={"workers": workers}
        )
        measured = self.stage("prepare", directory)
        self.prepared.setdefault((resolution, count), directory / self.base["paths"]["prepared"])
        return measured, directory

    def prepared_set(self, resolution: int, count: int) -> Path:
        if (resolution, count) not in self.prepared:
            self.prepare(resolution, count)
        return self.prepared[resolution, count]

    def reference(self, count: int) -> tuple[Measurement, Path]:
        """The reference stage on ``count`` prepared images; (the measurement, the statistics file)."""
        prepared = self.prepared_set(self.resolution, count)
        directory = self.run_dir(f"reference-n{count}", self.resolution, count, paths={"prepared": str(prepared)})
        measured = self.stage("reference", directory)
        self.references.setdefault(count, directory / self.base["paths"]["reference"])
        return measured, self.references[count]

    def reference_file(self, count: int) -> Path:
        if count not in self.references:
            self.reference(count)
        return self.references[count]

    def fit(self, model: str, resolution: int, count: int, steps: int, log_every: int) -> tuple[Measurement, Path]:
        """``gans.loop.fit`` in a child (this file with ``--fit-child``); (the measurement, the run directory)."""
        prepared = self.prepared_set(resolution, count)
        directory = self.run_dir(
            f"train-{model}-r{resolution}-n{count}-s{steps}",
            resolution,
            count,
            model={"name": model},
            train={"fid_every": 0, "steps": steps, "log_every": log_every, "snapshot_every": steps, "n_fixed": 16},
            paths={"prepared": str(prepared)},
        )
        measured = measure([sys.executable, str(Path(__file__).resolve()), "--fit-child"], directory, self.env)
        self.checkpoints.setdefault((model, resolution, count), directory / self.base["paths"]["train"])
        return measured, directory

    def checkpoint_dir(self, model: str, resolution: int, count: int) -> Path:
        if (model, resolution, count) not in self.checkpoints:
            self.fit(model, resolution, count, steps=4, log_every=2)
        return self.checkpoints[model, resolution, count]

    def sweep(self, trials: int, steps: int, count: int) -> Measurement:
        """The sweep stage (ASHA, one trial at a time) over ``trials`` grid points of ``steps`` steps each, on
        ``count`` images at 32 px (its own prepared set and reference)."""
        prepared = self.prepared_set(32, count)
        if (32, count) not in self.sweep_references:  # made once, not measured
            directory = self.run_dir(f"sweep-reference-n{count}", 32, count, paths={"prepared": str(prepared)})
            self.stage("reference", directory)
            self.sweep_references[32, count] = directory / self.base["paths"]["reference"]
        reference = self.sweep_references[32, count]
        losses = ["bce", "hinge"] if trials > 1 else ["bce"]
        sweep = {
            "enabled": True,
            "losses": losses,
            "ttur_ratios": SWEEP_RATIOS[: max(1, trials // len(losses))],
            "steps": steps,
            "fid_every": 200,
            "grace_steps": 200,
        }
        paths = {"prepared": str(prepared), "reference": str(reference)}
        return self.stage("sweep", self.run_dir(f"sweep-t{trials}-s{steps}", 32, count, sweep=sweep, paths=paths))

    def evaluate(self, n_fake: int, count: int) -> Measurement:
        """The evaluate stage on ``n_fake`` samples of a DCGAN trained on ``count`` images (``checkpoint_dir``)."""
        train = self.checkpoint_dir("dcgan", self.resolution, count)
        reference = self.reference_file(count)
        eval_settings = {"n_fake": n_fake, **(QUICK_EVAL if self.quick else {})}
        paths = {"train": str(train), "reference": str(reference)}
        return self.stage(
            "evaluate", self.run_dir(f"evaluate-n{n_fake}", self.resolution, count, eval=eval_settings, paths=paths)
        )


def fit_child() -> None:
    """The measured train run, in its run directory: params.yaml's run through ``gans.loop.fit`` with a step clock.

    Writes ``steps.json`` ([step, seconds] at each log step) and the final checkpoint into ``paths.train``.
    """
    from gans import checkpoint
    from gans.data import PreparedDataset
    from gans.loop import fit
    from pipeline.params import load_params

    params = load_params()
    clock: list[tuple[int, float]] = []

    def log(metrics: dict[str, float], step: int) -> None:
        clock.append((step, time.perf_counter()))

    with tempfile.TemporaryDirectory(prefix="bench-scale-") as work_dir:
        state = fit(params.gan, PreparedDataset(params.paths.prepared), work_dir=work_dir, log=log)
    checkpoint.save(state, Path(params.paths.train) / checkpoint.FILENAME)
    Path("steps.json").write_text(json.dumps(clock))


def seconds_per_step(directory: Path, warmup: int) -> float:
    """From a fit child's clock: seconds per step from the first log step at or after ``warmup`` to the last."""
    clock = [(step, at) for step, at in json.loads((directory / "steps.json").read_text()) if step >= warmup]
    (first_step, first), (last_step, last) = clock[0], clock[-1]
    return (last - first) / (last_step - first_step)


# Fits and tables -------------------------------------------------------------------------------------------------


def exponent(sizes: list[float], costs: list[float]) -> float:
    """k of cost ∝ size^k, least squares on log–log (nan with fewer than two distinct sizes)."""
    if len(set(sizes)) < 2:
        return float("nan")
    return float(np.polyfit(np.log(sizes), np.log(costs), 1)[0])


def marginal(sizes: list[int], walls: list[float]) -> float:
    """Seconds per image between the smallest and the largest size (fixed costs cancel)."""
    low, high = int(np.argmin(sizes)), int(np.argmax(sizes))
    return (walls[high] - walls[low]) / (sizes[high] - sizes[low]) if sizes[high] > sizes[low] else float("nan")


def mib_pair(measured: Measurement) -> list[str]:
    """Peak RSS and peak anonymous RSS in MiB, as table cells."""
    return [f"{measured.peak_rss / MiB:.0f}", f"{measured.peak_anon / MiB:.0f}"]


def print_table(header: list[str], rows: list[list[Any]]) -> None:
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for row in rows:
        print("| " + " | ".join(str(cell) for cell in row) + " |", flush=True)


def print_growth(what: str, sizes: list[int], measured: list[Measurement]) -> None:
    """k for wall time and peak RSS, and the marginal cost per image."""
    walls = [m.wall for m in measured]
    line = (
        f"{what}: wall ∝ N^{exponent(sizes, walls):.2f}, peak RSS ∝ N^"
        f"{exponent(sizes, [m.peak_rss for m in measured]):.2f} (anonymous ∝ N^"
        f"{exponent(sizes, [m.peak_anon for m in measured]):.2f})"
    )
    per_image = marginal(sizes, walls)
    if per_image > 0:
        line += f"; marginal {per_image * 1000:.1f} ms/image ({1 / per_image:.1f} images/s)"
    print(line, flush=True)


# The stages ------------------------------------------------------------------------------------------------------


def median_of(measured: list[Measurement]) -> Measurement:
    """The median wall and peaks of repeated runs."""
    return Measurement(
        float(np.median([m.wall for m in measured])),
        int(np.median([m.peak_rss for m in measured])),
        int(np.median([m.peak_anon for m in measured])),
    )


def stage_rate(directory: Path) -> float:
    """The images/s the prepare stage printed (without the interpreter's start-up), or nan."""
    match = re.search(r"([\d.]+) images/s on", (directory / "log.txt").read_text())
    return float(match.group(1)) if match else float("nan")


def bench_prepare(space: Workspace, sizes: list[int], rounds: int) -> None:
    print(f"\n## prepare: 128 px PNG photos → {space.resolution} px, 3 channels, crop center", flush=True)
    runs: dict[tuple[int, int], list[tuple[Measurement, float]]] = {}
    for _ in range(rounds):
        for count in sizes:
            hashes = []
            for workers in (1, 0):
                measured, directory = space.prepare(space.resolution, count, workers)
                runs.setdefault((count, workers), []).append((measured, stage_rate(directory)))
                manifest = directory / space.base["paths"]["prepared"] / "manifest.json"
                hashes.append(json.loads(manifest.read_text())["content_sha256"])
            print(f"N={count}: output with workers 0 identical to workers 1: {hashes[0] == hashes[1]}", flush=True)
    rows, by_workers = [], {1: [], 0: []}
    for (count, workers), results in runs.items():
        measured = median_of([m for m, _ in results])
        by_workers[workers].append(measured)
        rate = float(np.median([r for _, r in results]))
        label = "1" if workers == 1 else f"0 ({os.cpu_count()})"
        wall = f"{measured.wall:.1f}"
        rows.append([count, label, wall, f"{count / measured.wall:.0f}", f"{rate:.0f}", *mib_pair(measured)])
    print_table(["N", "workers", "wall s", "images/s", "stage images/s", "peak RSS MiB", "anon MiB"], rows)
    for workers, measured in by_workers.items():
        print_growth(f"workers {workers}", sizes, measured)


def bench_reference(space: Workspace, sizes: list[int], rounds: int) -> None:
    print(f"\n## reference: Inception statistics of N prepared {space.resolution} px images", flush=True)
    runs: dict[int, list[Measurement]] = {}
    for _ in range(rounds):
        for count in sizes:
            runs.setdefault(count, []).append(space.reference(count)[0])
    measured = [median_of(runs[count]) for count in sizes]
    rows = [[count, f"{m.wall:.1f}", f"{count / m.wall:.1f}", *mib_pair(m)] for count, m in zip(sizes, measured)]
    print_table(["N", "wall s", "images/s", "peak RSS MiB", "anon MiB"], rows)
    print_growth("reference", sizes, measured)
    low, high = int(np.argmin(sizes)), int(np.argmax(sizes))
    print(
        f"reference peak RSS N={sizes[high]} / N={sizes[low]}: ×{measured[high].peak_rss / measured[low].peak_rss:.2f}"
        f" (anonymous ×{measured[high].peak_anon / measured[low].peak_anon:.2f})",
        flush=True,
    )


def bench_train(
    space: Workspace, sizes: list[int], models: list[str], resolutions: list[int], steps: int, rounds: int
) -> None:
    log_every = max(1, steps // 8)
    warmup = 2 * log_every
    small, large = min(sizes), max(sizes)
    print(
        f"\n## train: gans.loop.fit in a child process, {steps} steps timed from step {warmup}, "
        f"batch {space.base['train']['batch_size']}, widths {space.base['model']['g_width']}",
        flush=True,
    )
    plan = [
        (model, resolution, count)
        for model in models
        for resolution in resolutions
        for count in ([small, large] if resolution == space.resolution and large != small else [small])
    ]
    for model, resolution in dict.fromkeys((model, resolution) for model, resolution, _ in plan):
        space.fit(model, resolution, small, steps=1, log_every=1)  # the precision decision, cached for the runs
    runs: dict[tuple[str, int, int], list[tuple[float, Measurement]]] = {}
    for _ in range(rounds):
        for key in plan:
            measured, directory = space.fit(*key, steps, log_every)
            runs.setdefault(key, []).append((seconds_per_step(directory, warmup), measured))
    results = {key: (float(np.median([t for t, _ in r])), median_of([m for _, m in r])) for key, r in runs.items()}
    rows = [
        [*key, f"{m.wall:.1f}", f"{1 / per_step:.2f}", f"{per_step:.3f}", *mib_pair(m)]
        for key, (per_step, m) in results.items()
    ]
    print_table(["model", "px", "N", "wall s", "steps/s", "s/step", "peak RSS MiB", "anon MiB"], rows)
    for model in models:
        line = f"{model}:"
        if len(resolutions) > 1:
            pixels, step_times = [r * r for r in resolutions], [results[model, r, small][0] for r in resolutions]
            line += f" s/step ∝ pixels^{exponent(pixels, step_times):.2f};"
        if (model, space.resolution, large) in results and large != small:
            (t_small, m_small), (t_large, m_large) = (results[model, space.resolution, n] for n in (small, large))
            line += (
                f" at {space.resolution} px N={large} / N={small}: s/step ×{t_large / t_small:.2f},"
                f" worker peak RSS ×{m_large.peak_rss / m_small.peak_rss:.2f}"
                f" (anonymous ×{m_large.peak_anon / m_small.peak_anon:.2f})"
            )
        print(line, flush=True)


def bench_evaluate(space: Workspace, sizes: list[int], real: int, rounds: int) -> None:
    settings = {**space.base["eval"], **(QUICK_EVAL if space.quick else {})}
    shown = ", ".join(f"{key} {settings[key]}" for key in ("fid_draws", "bootstrap", "prc_subsets", "floor_splits"))
    print(f"\n## evaluate: n_fake samples of a {space.resolution} px DCGAN, {real} real images ({shown})", flush=True)
    runs: dict[int, list[Measurement]] = {}
    for _ in range(rounds):
        for n_fake in sizes:
            runs.setdefault(n_fake, []).append(space.evaluate(n_fake, real))
    measured = [median_of(runs[n_fake]) for n_fake in sizes]
    rows = [[n_fake, f"{m.wall:.1f}", f"{n_fake / m.wall:.1f}", *mib_pair(m)] for n_fake, m in zip(sizes, measured)]
    print_table(["n_fake", "wall s", "images/s", "peak RSS MiB", "anon MiB"], rows)
    print_growth("evaluate", sizes, measured)


def bench_sweep(space: Workspace, trials: list[int], steps: list[int], count: int) -> None:
    print(
        f"\n## sweep: the stage (ASHA, grace 200 steps, FID every 200) on {count} images at 32 px, against the "
        f"number of trials (at 400 steps) and sweep.steps (at 4 trials)",
        flush=True,
    )
    plan = [(n, 400) for n in trials] + [(4, n) for n in steps if (4, n) not in [(t, 400) for t in trials]]
    results = {key: space.sweep(*key, count) for key in plan}
    rows = [[t, s, f"{m.wall:.1f}", f"{m.wall / t:.1f}", *mib_pair(m)] for (t, s), m in results.items()]
    print_table(["trials", "sweep.steps", "wall s", "s per trial", "peak RSS MiB", "anon MiB"], rows)
    by_trials = {t: m.wall for (t, s), m in results.items() if s == 400}
    by_steps = {s: m.wall for (t, s), m in results.items() if t == 4}
    print(
        f"sweep: wall ∝ trials^{exponent(list(by_trials), list(by_trials.values())):.2f} (400 steps), "
        f"∝ steps^{exponent(list(by_steps), list(by_steps.values())):.2f} (4 trials)",
        flush=True,
    )


# The machine -----------------------------------------------------------------------------------------------------


def cpu_summary() -> str:
    """The CPU model, core count and the vector and bf16 flags that decide Inception's and training's speed."""
    from gans.precision import cpu_model, native_bf16

    flags: set[str] = set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() in ("flags", "Features"):
                flags = set(value.split())
                break
    except OSError:
        pass
    shown = [flag for flag in ("avx2", "avx512f", "avx512_bf16", "amx_bf16") if flag in flags]
    absent = [flag for flag in ("avx512_bf16", "amx_bf16") if flag not in flags]
    return (
        f"{cpu_model()}, {os.cpu_count()} CPUs; flags: {' '.join(shown) or 'none of avx2/avx512'}"
        f"{'; no ' + ', no '.join(absent) if absent else ''}; native bf16: {native_bf16()}"
    )


def commit() -> str:
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True).stdout.strip()

    head = git("rev-parse", "--short", "HEAD") or "unknown"
    return f"{head}{' with uncommitted changes' if git('status', '--porcelain', '--untracked-files=no') else ''}"


def parse_sizes(values: list[str]) -> dict[str, list[int]]:
    """``--sizes stage=N,N,…`` (repeatable) → {stage: [N, …]}."""
    sizes = {}
    for value in values:
        stage, _, numbers = value.partition("=")
        if stage not in STAGES or not numbers:
            raise SystemExit(f"--sizes {value!r}: expected STAGE=N[,N…] with STAGE one of {', '.join(STAGES)}.")
        sizes[stage] = [int(n) for n in numbers.split(",")]
    return sizes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stages", default=",".join(STAGES), help="comma-separated, of " + ", ".join(STAGES))
    parser.add_argument("--sizes", action="append", default=[], metavar="STAGE=N,N", help="one stage's sizes")
    parser.add_argument("--resolution", type=int, default=64, help="of prepare, reference, evaluate, train's N runs")
    parser.add_argument("--models", default="dcgan,sagan", help="train's")
    parser.add_argument("--resolutions", default="32,64,128", help="train's")
    parser.add_argument("--steps", type=int, default=40, help="train steps per run (the first quarter: warm-up)")
    parser.add_argument("--rounds", type=int, default=1, help="repeats of each stage's sizes, interleaved; medians")
    parser.add_argument("--quick", action="store_true", help="tiny sizes at 32 px, DCGAN, 8 steps, lighter evaluate")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "out" / "scale", help="photos and scratch runs")
    parser.add_argument("--fit-child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.fit_child:
        return fit_child()

    stages = [stage for stage in args.stages.split(",") if stage]
    if unknown := set(stages) - set(STAGES):
        parser.error(f"unknown stage {sorted(unknown)[0]!r}; stages: {', '.join(STAGES)}")
    sizes = {**(QUICK_SIZES if args.quick else DEFAULT_SIZES), **parse_sizes(args.sizes)}
    resolution = 32 if args.quick else args.resolution
    models = ["dcgan"] if args.quick else args.models.split(",")
    resolutions = [resolution] if args.quick else [int(r) for r in args.resolutions.split(",")]
    steps = 8 if args.quick else args.steps
    photos = max(max(sizes[stage]) if stage not in ("evaluate", "sweep") else min(sizes["train"]) for stage in stages)

    print(f"CPU: {cpu_summary()}\ncommit: {commit()}", flush=True)
    started = time.perf_counter()
    space = Workspace(args.out, photos, resolution, args.quick)
    if "prepare" in stages:
        bench_prepare(space, sizes["prepare"], args.rounds)
    if "reference" in stages:
        bench_reference(space, sizes["reference"], args.rounds)
    if "train" in stages:
        bench_train(space, sizes["train"], models, resolutions, steps, args.rounds)
    if "evaluate" in stages:
        bench_evaluate(space, sizes["evaluate"], min(sizes["train"]), args.rounds)
    if "sweep" in stages:
        bench_sweep(space, sizes["sweep"], [] if args.quick else SWEEP_STEPS, min(sizes["train"]))
    print(f"\nbench/scale.py: {time.perf_counter() - started:.0f} s in all ({space.runs} runs)", flush=True)


if __name__ == "__main__":
    main()
