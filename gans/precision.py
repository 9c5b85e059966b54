"""Precision and memory layout of the training step, chosen on the machine at hand.

Whether bfloat16 autocast or channels-last convolutions pay off depends on the processor: with native
bf16 (AVX512-BF16, AMX) bf16 trains about twice as fast as float32; without it the CPU emulates bf16 and
trains an order of magnitude slower. So ``train.amp`` and ``train.channels_last`` default to ``auto``:

- forced values (``true``/``false``) always win;
- otherwise ``auto`` times a few D+G steps of each candidate at the run's own shapes, interleaved
  (``time_candidates``), and takes the fastest (``choose``). The candidates are float32 and autocast, each
  contiguous and channels-last; autocast is bfloat16 on the CPU and on a GPU with native bf16, float16 with
  loss scaling on other GPUs (``autocast_dtype``). Small models on a large GPU are bound by kernel launches,
  where autocast can be slower than float32, so CUDA is measured as the CPU is. A candidate that cannot win
  is not tried: no bf16 where the CPU reports no native bf16 (``native_bf16``). The measured times are cached
  per CPU model (or GPU), torch version, threads and shapes (``gans.cache``), so the same machine makes the
  same choice and a sweep calibrates once.

The decision travels as a ``Decision``: its ``sentence()`` is printed, its ``to_dict()`` is stored with
the checkpoint and in the stages' records, so metrics that differ across machines show why.
"""

from __future__ import annotations

import functools
import json
import platform
import statistics
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Optional, Union

import torch

from gans import cache
from gans.cache import CACHE_ENV  # noqa: F401  (tests and benches point the cache elsewhere)

Setting = Union[bool, str]
"""A ``train.amp`` / ``train.channels_last`` value: true, false or "auto"."""

AUTO = "auto"
CACHE_FILE = "precision.json"
BUDGET_S = 1.0
"""Seconds a calibration may spend timing candidates (after one warm-up step each)."""
MIN_ROUNDS, MAX_ROUNDS = 3, 25
DROP_SLOWER_THAN = 2.0
"""A candidate whose best of at least two steps is slower than this factor × the fastest's best is timed no
further."""


SHORT = {"float32": "fp32", "bfloat16": "bf16", "float16": "fp16"}


def autocast_torch_dtype(amp: bool, dtype: str) -> Optional[torch.dtype]:
    """The torch dtype to autocast to (``dtype`` named as in ``SHORT``), or None without autocast."""
    return getattr(torch, dtype) if amp else None


@dataclass(frozen=True, order=True)
class Candidate:
    """One way to run the step: autocast (to ``dtype``) or not, channels-last or not."""

    amp: bool
    channels_last: bool
    dtype: str = "bfloat16"
    """The autocast dtype when ``amp``: bfloat16, or float16 (CUDA without native bf16); the default without."""

    @property
    def name(self) -> str:
        return f"{SHORT[self.dtype] if self.amp else 'fp32'}{' + channels_last' if self.channels_last else ''}"

    @property
    def torch_dtype(self) -> Optional[torch.dtype]:
        """The autocast dtype, or None without autocast."""
        return autocast_torch_dtype(self.amp, self.dtype)

    @property
    def compute_dtype(self) -> str:
        """What a ``Decision`` records as its ``dtype``: "float32", or the autocast dtype."""
        return self.dtype if self.amp else "float32"


BASELINE = Candidate(amp=False, channels_last=False)


@dataclass(frozen=True)
class Decision:
    """The precision and layout a run uses, how they were decided, and the speeds that decided them."""

    amp: bool
    channels_last: bool
    dtype: str
    """"float32", or the autocast dtype ("bfloat16", "float16")."""
    how: str
    """"forced", "measured", "cached" (the same machine measured it before), "only candidate" or "resumed"."""
    machine: str
    """CPU model and torch's CPU capability (or the GPU's name), and the torch version."""
    speed: dict[str, float] = field(default_factory=dict)
    """Each timed candidate's speed relative to fp32 contiguous (> 1: faster)."""
    skipped: str = ""
    """Why bf16 was not tried (e.g. "no native bf16"), or empty."""

    def sentence(self) -> str:
        """One line: the choice and the ratios behind it, e.g. ``precision fp32, channels_last on
        (fp32 + channels_last ×1.09 against fp32; bf16 not tried: no native bf16; on AMD EPYC, AVX2, torch 2.14.1)``."""
        precision = SHORT[self.dtype]
        names = list(self.speed)
        evidence = [f"{name} ×{self.speed[name]:.2f} against {names[0]}" for name in names[1:]]
        if self.skipped:
            evidence.append(f"bf16 not tried: {self.skipped}")
        if self.how != "measured":
            evidence.append(self.how)
        return (
            f"precision {precision}, channels_last {'on' if self.channels_last else 'off'} "
            f"({'; '.join(evidence)}; on {self.machine})"
        )

    @property
    def torch_dtype(self) -> Optional[torch.dtype]:
        """The autocast dtype, or None without autocast."""
        return autocast_torch_dtype(self.amp, self.dtype)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# ---------------------------------------------------------------------------------------------------------------------
# The machine.


@functools.lru_cache(maxsize=1)
def _cpu_flags() -> Optional[frozenset[str]]:
    """The CPU's feature flags from /proc/cpuinfo (x86 ``flags``, Arm ``Features``); None where unreadable."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return None
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return frozenset(value.split())
    return None


def native_bf16(flags: Optional[Iterable[str]] = None) -> Optional[bool]:
    """Whether the CPU computes bfloat16 natively (AVX512-BF16, AMX-BF16, Arm BF16); None when unknown.

    Unknown (no /proc/cpuinfo, e.g. macOS) keeps bf16 a candidate: the calibration then measures it.
    """
    flags = _cpu_flags() if flags is None else frozenset(flags)
    if flags is None:
        return None
    return bool(flags & {"avx512_bf16", "amx_bf16", "bf16"})


def forced_bf16_warning(amp: Setting, device: torch.device) -> str:
    """One sentence when ``train.amp: true`` forces bf16 autocast on a CPU without native bf16, where bf16 is
    emulated (about 12× slower than float32 on an AVX2-only CPU); empty otherwise."""
    if amp is not True or torch.device(device).type != "cpu" or native_bf16() is not False:
        return ""
    return (
        "train.amp: true forces bf16 autocast, which this CPU computes without native support (no avx512_bf16, "
        "amx_bf16 or bf16 flag): training may run several times slower than in float32; train.amp: auto times "
        "both and keeps the faster."
    )


@functools.lru_cache(maxsize=1)
def cpu_model() -> str:
    """The CPU's model name (``lscpu``'s), or the platform's processor string."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name":
                return value.strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def machine(device: torch.device) -> str:
    """What decides speed on ``device``: the CPU model and torch's vector capability, or the GPU's name."""
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)}, torch {torch.__version__}"
    return f"{cpu_model()}, {torch.backends.cpu.get_cpu_capability()}, torch {torch.__version__}"


# ---------------------------------------------------------------------------------------------------------------------
# The choice.


def candidates(
    amp: Setting, channels_last: Setting, bf16_native: Optional[bool], dtype: str = "bfloat16"
) -> list[Candidate]:
    """The candidates a setting allows, autocast to ``dtype``; a bf16 autocast is tried under ``auto`` unless
    the processor surely lacks native bf16. A float32 candidate is the same whatever ``dtype`` is."""
    amps = [amp] if amp != AUTO else ([False] if bf16_native is False and dtype == "bfloat16" else [False, True])
    layouts = [channels_last] if channels_last != AUTO else [False, True]
    return [Candidate(a, c, dtype) if a else Candidate(a, c) for a in amps for c in layouts]


def choose(times: dict[Candidate, list[float]]) -> Candidate:
    """The candidate with the lowest median time per step (ties: the first in ``times``' order)."""
    medians = {candidate: statistics.median(samples) for candidate, samples in times.items() if samples}
    return min(medians, key=lambda candidate: medians[candidate])


def relative_speeds(times: dict[Candidate, list[float]]) -> dict[str, float]:
    """Each candidate's speed relative to the reference, which comes first: fp32 contiguous when it was
    timed, else the first candidate (> 1: faster)."""
    medians = {candidate: statistics.median(samples) for candidate, samples in times.items() if samples}
    reference = BASELINE if BASELINE in medians else next(iter(medians))
    order = [reference] + [candidate for candidate in medians if candidate != reference]
    return {candidate.name: medians[reference] / medians[candidate] for candidate in order}


def time_candidates(
    steps: dict[Candidate, Callable[[], None]],
    budget_s: float = BUDGET_S,
    clock: Callable[[], float] = time.perf_counter,
) -> dict[Candidate, list[float]]:
    """Seconds per step of each candidate: one warm-up step each, then interleaved rounds of one step each.

    Rounds go on until ``budget_s`` is spent (at least ``MIN_ROUNDS``, at most ``MAX_ROUNDS``); a candidate
    whose best of two or more steps is more than ``DROP_SLOWER_THAN`` × the fastest's best is timed no further.
    One slow step, a busy machine's hiccup, drops nothing: not even when it is the candidate's first.
    """
    for step in steps.values():  # allocator, oneDNN primitive caches
        step()
    times: dict[Candidate, list[float]] = {candidate: [] for candidate in steps}
    start = clock()
    for round_ in range(MAX_ROUNDS):
        if round_ >= MIN_ROUNDS and clock() - start >= budget_s:
            break
        for candidate, step in steps.items():
            timed = times[candidate]
            if len(timed) >= 2 and min(timed) > DROP_SLOWER_THAN * min(min(t) for t in times.values()):
                continue
            began = clock()
            step()
            times[candidate].append(clock() - began)
    return times


# ---------------------------------------------------------------------------------------------------------------------
# The cache.


def cache_key(device: torch.device, shapes: dict[str, Any]) -> str:
    """A digest of what the timings depend on: the machine, torch's threads and the step's shapes."""
    return cache.digest({"machine": machine(device), "threads": torch.get_num_threads(), **shapes})


def read_cached(key: str) -> Optional[dict[Candidate, list[float]]]:
    """The timings stored under ``key`` (rows of amp, channels_last, samples and the autocast dtype), or None."""
    entry = cache.read_entry(CACHE_FILE, key)
    try:
        return {
            Candidate(bool(amp), bool(layout), str(dtype[0]) if dtype else "bfloat16"): list(samples)
            for amp, layout, samples, *dtype in entry
        }
    except (TypeError, ValueError):
        return None


def write_cached(key: str, times: dict[Candidate, list[float]], description: str) -> None:
    rows = [[c.amp, c.channels_last, samples, c.dtype] for c, samples in times.items()]
    cache.write_entry(CACHE_FILE, key, rows, description)


# ---------------------------------------------------------------------------------------------------------------------
# The decision.


def cuda_autocast_dtype(device: torch.device) -> torch.dtype:
    """bfloat16 on a GPU that computes it natively (Ampere and later), else float16 (with loss scaling)."""
    return torch.bfloat16 if torch.cuda.is_bf16_supported(including_emulation=False) else torch.float16


def autocast_dtype(device: torch.device) -> str:
    """The autocast candidate's dtype on ``device``: bfloat16 on the CPU, ``cuda_autocast_dtype`` on CUDA."""
    return str(cuda_autocast_dtype(device)).removeprefix("torch.") if device.type == "cuda" else "bfloat16"


def decide(
    amp: Setting,
    channels_last: Setting,
    device: torch.device,
    steps_of: Callable[[list[Candidate]], dict[Candidate, Callable[[], None]]],
    shapes: dict[str, Any],
    budget_s: float = BUDGET_S,
) -> Decision:
    """The ``Decision`` for settings ``amp`` and ``channels_last`` on ``device``.

    ``steps_of(candidates)`` builds one zero-argument training step per candidate (only called when
    something must be timed); ``shapes`` names what the step's speed depends on, for the cache key.
    """
    device = torch.device(device)
    where, dtype = machine(device), autocast_dtype(device)
    bf16_native = None if device.type == "cuda" else native_bf16()  # on CUDA the dtype already says
    skipped = "no native bf16" if amp == AUTO and bf16_native is False else ""
    options = candidates(amp, channels_last, bf16_native, dtype)
    if len(options) == 1:
        only = options[0]
        how = "forced" if amp != AUTO and channels_last != AUTO else "only candidate"
        return Decision(only.amp, only.channels_last, only.compute_dtype, how, where, {}, skipped)

    key = cache_key(device, {**shapes, "candidates": [c.name for c in options]})
    times, how = read_cached(key), "cached"
    if times is None or set(times) != set(options):
        times, how = time_candidates(steps_of(options), budget_s), "measured"
        write_cached(key, times, f"{where}; threads {torch.get_num_threads()}; {json.dumps(shapes, default=str)}")
    best = choose(times)
    return Decision(best.amp, best.channels_last, best.compute_dtype, how, where, relative_speeds(times), skipped)
