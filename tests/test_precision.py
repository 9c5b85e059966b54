"""Precision and layout chosen on the machine: the choice, the calibration and its cache, forced values."""

from __future__ import annotations

import json
import time

import pytest
import torch

from gans import precision
from gans.loop import choose_precision, fit
from gans.precision import Candidate
from tests.helpers import tiny_config

AUTO = {"amp": precision.AUTO, "channels_last": precision.AUTO}
"""The default, which the other tests' tiny configs replace with ``FIXED_PRECISION``."""

FP32, FP32_CL, BF16, BF16_CL = (
    Candidate(False, False),
    Candidate(False, True),
    Candidate(True, False),
    Candidate(True, True),
)


@pytest.fixture
def cache(monkeypatch, tmp_path):
    monkeypatch.setenv(precision.CACHE_ENV, str(tmp_path))
    return tmp_path / precision.CACHE_FILE


def test_choose_takes_the_lowest_median_and_speeds_are_relative_to_fp32():
    times = {FP32: [1.0, 1.1, 5.0], FP32_CL: [0.9, 0.95, 0.92], BF16: [10.0, 11.0, 12.0], BF16_CL: [0.5, 9.0, 9.5]}
    assert precision.choose(times) == FP32_CL  # BF16_CL's one fast round does not make its median
    speeds = precision.relative_speeds(times)
    assert list(speeds) == ["fp32", "fp32 + channels_last", "bf16", "bf16 + channels_last"]
    assert speeds["fp32"] == 1.0 and speeds["fp32 + channels_last"] == pytest.approx(1.1 / 0.92)
    assert speeds["bf16"] == pytest.approx(1.1 / 11.0)


def test_bf16_is_a_candidate_unless_the_cpu_surely_lacks_it():
    assert precision.candidates("auto", "auto", bf16_native=False) == [FP32, FP32_CL]
    assert precision.candidates("auto", "auto", bf16_native=True) == [FP32, FP32_CL, BF16, BF16_CL]
    assert precision.candidates("auto", "auto", bf16_native=None) == [FP32, FP32_CL, BF16, BF16_CL]  # unknown: measure
    assert precision.candidates(True, "auto", bf16_native=False) == [BF16, BF16_CL]  # forced wins
    assert precision.candidates(False, True, bf16_native=True) == [FP32_CL]


def test_a_gpu_without_native_bf16_weighs_fp16_against_fp32():
    fp16 = [Candidate(False, False), Candidate(True, False, "float16")]
    assert precision.candidates("auto", False, bf16_native=None, dtype="float16") == fp16
    assert [c.name for c in fp16] == ["fp32", "fp16"]
    # A CPU without native bf16 never tries bf16; the GPU's fp16 is not bf16, so it is tried.
    assert precision.candidates("auto", False, bf16_native=False, dtype="float16") == fp16


@pytest.mark.parametrize("autocast_faster", [True, False])
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_cuda_auto_takes_the_faster_of_fp32_and_autocast_and_caches_it(cache, monkeypatch, dtype, autocast_faster):
    """The CUDA branch of the decision with injected timings (no GPU needed): autocast to the GPU's dtype
    wins when it is faster, fp32 when autocast is slower, and the cache gives back the dtype it stored."""
    monkeypatch.setattr(precision, "machine", lambda device: "Test GPU, torch 2")
    monkeypatch.setattr(precision, "cuda_autocast_dtype", lambda device: dtype)
    name = {torch.float16: "fp16", torch.bfloat16: "bf16"}[dtype]
    seconds = {True: 1.0, False: 2.0} if autocast_faster else {True: 3.0, False: 2.0}  # by amp
    monkeypatch.setattr(
        precision,
        "time_candidates",
        lambda steps, budget_s: {c: [seconds[c.amp] * (1 - 0.1 * c.channels_last)] for c in steps},
    )
    built = []

    def steps_of(options):
        built.extend(options)
        return {option: None for option in options}

    decision = precision.decide("auto", "auto", torch.device("cuda"), steps_of, {"model": name})
    assert {c.name for c in built} == {"fp32", "fp32 + channels_last", name, f"{name} + channels_last"}
    assert decision.how == "measured" and decision.channels_last
    assert (decision.amp, decision.dtype) == ((True, str(dtype)[6:]) if autocast_faster else (False, "float32"))
    assert f"{name} + channels_last ×" in decision.sentence()

    monkeypatch.setattr(precision, "time_candidates", None)  # a second decision must not time anything
    again = precision.decide(
        "auto", "auto", torch.device("cuda"), lambda options: pytest.fail("timed"), {"model": name}
    )
    assert again.how == "cached"
    assert (again.amp, again.dtype, again.speed) == (decision.amp, decision.dtype, decision.speed)


def test_native_bf16_reads_the_cpu_flags():
    assert precision.native_bf16(["avx2", "fma"]) is False
    assert precision.native_bf16(["avx512f", "avx512_bf16"]) is True
    assert precision.native_bf16(["amx_tile", "amx_bf16"]) is True
    assert precision.native_bf16(["fp", "asimd", "bf16"]) is True  # Arm


def _scripted_steps(seconds: dict[Candidate, list[float]]):
    """Steps whose n-th call (the warm-up first) takes ``seconds[candidate][n]`` of a fake clock (the last value
    repeats), and that clock."""
    now, calls = [0.0], dict.fromkeys(seconds, 0)

    def step_of(candidate):
        def step():
            series = seconds[candidate]
            now[0] += series[min(calls[candidate], len(series) - 1)]
            calls[candidate] += 1

        return step

    return {candidate: step_of(candidate) for candidate in seconds}, lambda: now[0]


def test_one_slow_first_step_drops_no_candidate():
    # A calibration at a sweep's start, while Ray's processes started (emulated AVX2, 2 cores): fp32's first
    # steps were slow, and channels-last's first timed step, 94 ms, was over twice fp32's 45 ms. Judged on that
    # one step it was dropped, and the slower layout was cached for the machine.
    steps, clock = _scripted_steps({FP32: [0.030, 0.045, 0.054, 0.033, 0.027], FP32_CL: [0.030, 0.094, 0.024]})
    times = precision.time_candidates(steps, clock=clock)
    assert len(times[FP32_CL]) >= precision.MIN_ROUNDS and precision.choose(times) == FP32_CL


def test_a_slow_candidate_is_dropped_after_two_steps_and_the_budget_is_kept():
    steps, clock = _scripted_steps({FP32: [0.03], BF16: [0.5]})  # bf16 emulated: about 15× slower
    times = precision.time_candidates(steps, budget_s=1.0, clock=clock)
    assert len(times[BF16]) == 2 and precision.choose(times) == FP32
    # The rounds stop once the minimum is done and the budget spent: 3 rounds, 1.09 s of timed steps.
    assert len(times[FP32]) == 3 and sum(times[FP32]) + sum(times[BF16]) == pytest.approx(1.09)


def test_a_real_calibration_writes_its_cache_and_the_second_run_reads_it(cache, monkeypatch):
    monkeypatch.setattr(precision, "native_bf16", lambda: False)  # the same two candidates on every CPU
    cfg = tiny_config(train={"batch_size": 8, **AUTO})
    start = time.perf_counter()
    first = choose_precision(cfg, torch.device("cpu"), batch=8)
    seconds = time.perf_counter() - start
    print(f"calibration: {seconds:.2f} s; {first.sentence()}")
    entries = json.loads(cache.read_text())
    assert len(entries) == 1
    (entry,) = entries.values()
    timed = {(amp, layout): samples for amp, layout, samples, _ in entry["value"]}
    assert set(timed) == {(False, False), (False, True)}
    fastest = min(map(min, timed.values()))  # each was timed MIN_ROUNDS times, or dropped as too slow
    assert all(len(s) >= precision.MIN_ROUNDS or min(s) > precision.DROP_SLOWER_THAN * fastest for s in timed.values())
    # The budget ends the rounds: every round but the last began within it (or only the minimum was run).
    rounds = max(map(len, timed.values()))
    assert rounds == precision.MIN_ROUNDS or sum(sum(s[: rounds - 1]) for s in timed.values()) < precision.BUDGET_S
    assert first.how == "measured" and not first.amp and first.skipped == "no native bf16"
    assert list(first.speed) == ["fp32", "fp32 + channels_last"] and first.speed["fp32"] == 1.0

    second = choose_precision(cfg, torch.device("cpu"), batch=8)
    assert second.how == "cached" and (second.amp, second.channels_last, second.speed) == (
        first.amp,
        first.channels_last,
        first.speed,
    )
    assert "cached" in second.sentence() and "bf16 not tried: no native bf16" in second.sentence()
    other_shape = choose_precision(cfg, torch.device("cpu"), batch=4)  # another batch is another key
    assert other_shape.how == "measured" and len(json.loads(cache.read_text())) == 2


@pytest.mark.parametrize("amp", [True, False])
def test_forced_settings_are_obeyed_and_stored_with_the_checkpoint(cache, tiny_dataset, tmp_path, amp):
    cfg = tiny_config(train={"amp": amp, "channels_last": False, "steps": 2})
    state = fit(cfg, tiny_dataset, work_dir=tmp_path / "run")
    assert state["precision"]["amp"] is amp and state["precision"]["channels_last"] is False
    assert state["precision"]["how"] == "forced" and state["precision"]["dtype"] == ("bfloat16" if amp else "float32")
    assert not cache.exists()  # nothing was timed
    G = state["G"]
    assert all(tensor.is_contiguous() for tensor in G.values())


@pytest.mark.parametrize("native, amp", [(False, True), (False, False), (False, "auto"), (True, True)])
def test_forced_bf16_on_a_cpu_without_native_bf16_is_obeyed_with_a_warning(
    cache, monkeypatch, capsys, tiny_dataset, tmp_path, native, amp
):
    monkeypatch.setattr(precision, "native_bf16", lambda: native)
    state = fit(tiny_config(train={"amp": amp, "channels_last": False, "steps": 2}), tiny_dataset, work_dir=tmp_path)
    warned = "[train] warning: train.amp: true forces bf16 autocast, which this CPU computes without native" in (
        capsys.readouterr().out
    )
    assert warned is (amp is True and not native)
    assert state["precision"]["amp"] is (amp is True)  # obeyed; auto never tries bf16 without native bf16


def test_auto_never_tries_bf16_without_native_bf16(cache, monkeypatch, tiny_dataset, tmp_path):
    monkeypatch.setattr(precision, "native_bf16", lambda: False)
    tried = []
    real_time_candidates = precision.time_candidates
    monkeypatch.setattr(
        precision,
        "time_candidates",
        lambda steps, budget_s: tried.extend(steps) or real_time_candidates(steps, budget_s),
    )
    state = fit(tiny_config(train={"steps": 2, **AUTO}), tiny_dataset, work_dir=tmp_path / "run")
    assert tried == [FP32, FP32_CL] and state["precision"]["amp"] is False


def test_a_resumed_run_on_the_same_machine_keeps_its_decision(cache, tiny_dataset, tmp_path):
    cfg = tiny_config(train={"steps": 2, **AUTO})
    state = fit(cfg, tiny_dataset, work_dir=tmp_path / "run")
    kept = {**state["precision"], "channels_last": not state["precision"]["channels_last"]}  # not what a timing picks
    resumed = choose_precision(cfg, torch.device("cpu"), batch=4, resume={**state, "precision": kept})
    assert (resumed.how, resumed.channels_last) == ("resumed", kept["channels_last"])
    elsewhere = choose_precision(
        cfg, torch.device("cpu"), batch=4, resume={**state, "precision": {**kept, "machine": "another CPU"}}
    )
    assert elsewhere.how == "cached"


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("fp16", [False, True], ids=["the-gpus-dtype", "fp16-with-gradscalers"])
def test_a_real_cuda_calibration_times_fp32_and_autocast(cache, monkeypatch, fp16):
    if fp16:  # what a GPU without native bf16 runs: float16 autocast with one GradScaler per network
        monkeypatch.setattr(precision, "cuda_autocast_dtype", lambda device: torch.float16)
    cfg = tiny_config(train={"batch_size": 16, **AUTO})
    start = time.perf_counter()
    decision = choose_precision(cfg, torch.device("cuda"), batch=16)
    print(f"CUDA calibration: {time.perf_counter() - start:.2f} s; {decision.sentence()}")
    autocast = precision.SHORT[precision.autocast_dtype(torch.device("cuda"))]
    assert autocast == "fp16" or not fp16
    assert decision.how == "measured" and set(decision.speed) == {
        "fp32",
        "fp32 + channels_last",
        autocast,
        f"{autocast} + channels_last",
    }
    assert decision.dtype in ("float32", precision.autocast_dtype(torch.device("cuda")))
    assert choose_precision(cfg, torch.device("cuda"), batch=16).how == "cached"


def test_the_global_batch_must_split_over_the_workers():
    from gans.config import ConfigError
    from gans.loop import worker_batch

    assert (worker_batch(32, 1), worker_batch(32, 2)) == (32, 16)
    with pytest.raises(
        ConfigError, match=r"^train\.batch_size=6 is the global batch and must split evenly over the 4 workers"
    ):
        worker_batch(6, 4)
