"""The training loop's callbacks: log and snapshot cadence, stopping early, and per-step seeds."""

from __future__ import annotations

import numpy as np
import pytest

from gans import checkpoint, loop
from gans.config import ConfigError
from gans.diagnosis import DIAGNOSES
from gans.loop import fit, step_seed
from tests.helpers import tiny_config

METRIC_KEYS = {
    "d_loss",
    "g_loss",
    "d_acc_real",
    "d_acc_fake",
    "d_real_sign",
    "d_grad_norm",
    "g_grad_norm",
    "amp_skipped_d",
    "amp_skipped_g",
}


def test_should_stop_ends_the_run_after_a_final_snapshot(tiny_dataset, tmp_path):
    cfg = tiny_config(train={"steps": 10, "log_every": 2, "snapshot_every": 100})
    asked_at, reports = [], []
    steps_logged = []

    def should_stop():
        step = steps_logged[-1]
        asked_at.append(step)
        return step >= 4

    state = fit(
        cfg,
        tiny_dataset,
        work_dir=tmp_path / "work",
        log=lambda metrics, step: steps_logged.append(step),
        report=lambda metrics, step, ckpt_dir: reports.append((step, ckpt_dir)),
        should_stop=should_stop,
    )

    assert state["step"] == 4
    assert asked_at == [2, 4]  # asked only at log steps, and never again after it said stop
    assert [step for step, _ in reports] == [4]
    saved = checkpoint.load(reports[0][1] / checkpoint.FILENAME)
    assert saved["step"] == 4
    assert [row["step"] for row in state["history"]] == [2, 4]
    assert [row["step"] for row in saved["history"]] == [2, 4]


def test_fid_steps_are_scored_logged_and_snapshotted_besides_fid_every(tiny_dataset, tmp_path):
    cfg = tiny_config(train={"steps": 9, "log_every": 100, "snapshot_every": 100, "fid_every": 4, "fid_steps": [3, 9]})
    scored_at, logged, reports = [], [], []

    def score(generator):
        scored_at.append(len(logged) + 1)  # the score comes before its step's log
        return {"fid": 100.0 - len(scored_at)}

    fit(
        cfg,
        tiny_dataset,
        work_dir=tmp_path / "work",
        log=lambda metrics, step: logged.append(step),
        report=lambda metrics, step, ckpt_dir: reports.append((step, metrics.get("fid"))),
        score=score,
    )

    assert logged == [3, 4, 8, 9]  # fid_every's multiples and fid_steps, nothing else (log_every is 100)
    assert len(scored_at) == 4
    assert reports == [(3, 99.0), (9, 96.0)]  # fid_steps are snapshots with their score; fid_every's are not


@pytest.mark.parametrize("fid_steps", [[0], [10]])
def test_fid_steps_outside_the_run_are_refused_in_one_sentence(fid_steps):
    with pytest.raises(ConfigError, match=r"^train\.fid_steps=\[\d+\] must lie between 1 and train\.steps=9\.$"):
        tiny_config(train={"steps": 9, "fid_steps": fid_steps})


def test_should_stop_is_asked_only_at_log_steps(tiny_dataset, tmp_path):
    cfg = tiny_config(train={"steps": 7, "log_every": 2, "snapshot_every": 100})
    asked_at, steps_logged = [], []

    def should_stop():
        asked_at.append(steps_logged[-1])
        return False

    state = fit(
        cfg,
        tiny_dataset,
        work_dir=tmp_path / "work",
        log=lambda metrics, step: steps_logged.append(step),
        should_stop=should_stop,
    )

    assert state["step"] == 7
    assert asked_at == [2, 4, 6, 7]


def test_log_and_report_cadence_with_interval_means(tiny_dataset, tmp_path, monkeypatch):
    # Record every step's raw stats by wrapping the real updates, to recompute the interval means.
    per_step: list[dict[str, float]] = []
    real_d, real_g = loop.discriminator_step, loop.generator_step

    def spy_d(*args, **kwargs):
        stats = real_d(*args, **kwargs)
        per_step.append(dict(stats))
        return stats

    def spy_g(*args, **kwargs):
        stats = real_g(*args, **kwargs)
        per_step[-1].update(stats)
        return stats

    monkeypatch.setattr(loop, "discriminator_step", spy_d)
    monkeypatch.setattr(loop, "generator_step", spy_g)

    cfg = tiny_config(train={"steps": 7, "log_every": 3, "snapshot_every": 4})
    logged, reports = [], []
    state = fit(
        cfg,
        tiny_dataset,
        work_dir=tmp_path / "work",
        log=lambda metrics, step: logged.append((step, dict(metrics))),
        report=lambda metrics, step, ckpt_dir: reports.append((step, dict(metrics), ckpt_dir)),
    )

    assert cfg.n_critic == 1  # one D stats dict per step, as the spy assumes
    assert len(per_step) == 7
    assert [step for step, _ in logged] == [3, 6, 7]  # the last step always logs
    assert [step for step, _, _ in reports] == [4, 7]  # the last step always snapshots
    for (step, metrics), (first, last) in zip(logged, [(0, 3), (3, 6), (6, 7)]):
        assert set(metrics) >= METRIC_KEYS
        for key in METRIC_KEYS:
            expected = float(np.mean([row[key] for row in per_step[first:last]]))
            assert metrics[key] == pytest.approx(expected, rel=1e-12, abs=1e-12), (step, key)

    # The log also carries one 0/1 series per failure mode; the history holds the measurements only.
    assert all(
        {key for key in metrics if key.startswith("diagnosis/")} == {f"diagnosis/{name}" for name in DIAGNOSES.names()}
        for _, metrics in logged
    )
    assert state["history"] == [
        {"step": step, **{key: value for key, value in metrics.items() if not key.startswith("diagnosis/")}}
        for step, metrics in logged
    ]
    # A report carries the latest logged row plus the replica fingerprints of the single rank.
    step, metrics, ckpt_dir = reports[-1]
    assert metrics["step"] == 7
    assert len(metrics["replica_fingerprints"]) == 1
    assert checkpoint.load(ckpt_dir)["step"] == 7
    assert sorted(p.name for p in (tmp_path / "work").glob("snapshot-*")) == [ckpt_dir.name]  # only the latest kept


def test_step_seed_is_a_pure_function_of_its_inputs():
    assert step_seed(3, 0, 2, 5) == step_seed(3, 0, 2, 5)
    assert step_seed(3, 0, 2, 5) != step_seed(3, 1, 2, 5)
    assert step_seed(3, 0, 2, 5) != step_seed(3, 0, 2, 6)
    assert step_seed(3, 0, 2, 5) != step_seed(4, 0, 2, 5)
    assert len({step_seed(0, rank, 2, step) for rank in range(2) for step in range(50)}) == 100


@pytest.fixture
def restore_determinism(monkeypatch):
    """Put torch's process-wide deterministic flags (and CUBLAS_WORKSPACE_CONFIG) back after the test."""
    import torch

    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    saved = (
        torch.are_deterministic_algorithms_enabled(),
        torch.backends.cudnn.deterministic,
        torch.backends.cudnn.benchmark,
    )
    yield
    torch.use_deterministic_algorithms(saved[0])
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = saved[1:]


def test_the_deterministic_option_sets_torchs_flags_and_changes_nothing_on_the_cpu(
    tiny_dataset, tmp_path, restore_determinism
):
    """train.deterministic: deterministic kernels for the process; on the CPU the run is the same bit for bit."""
    import os

    import torch

    from gans.dist import fingerprint

    plain = fit(tiny_config(), tiny_dataset, work_dir=tmp_path / "plain")
    assert not torch.are_deterministic_algorithms_enabled()  # off by default: fit leaves the flags alone
    strict = fit(tiny_config(train={"deterministic": True}), tiny_dataset, work_dir=tmp_path / "strict")
    assert torch.are_deterministic_algorithms_enabled() and not torch.is_deterministic_algorithms_warn_only_enabled()
    assert torch.backends.cudnn.deterministic and not torch.backends.cudnn.benchmark
    assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == loop.CUBLAS_WORKSPACE_CONFIG
    assert fingerprint(strict["G"]) == fingerprint(plain["G"]) and fingerprint(strict["D"]) == fingerprint(plain["D"])


def test_updates_skipped_by_fp16_loss_scaling_are_counted_and_do_not_stop_the_run(tiny_dataset, tmp_path, monkeypatch):
    """A GradScaler that starts far too high overflows, skips and halves its scale for ~28 steps, then trains."""
    import math

    import torch

    from gans.plots import save_curves
    from gans.step import Precision

    def fp16(cls, device, decision):  # real GradScalers on the CPU, starting at 2^40 (fp16's range ends near 2^16)
        return Precision(True, "cpu", torch.float16, *(torch.amp.GradScaler("cpu", init_scale=2.0**40) for _ in "dg"))

    monkeypatch.setattr(Precision, "of", classmethod(fp16))
    cfg = tiny_config(train={"steps": 40, "log_every": 8, "snapshot_every": 100})
    state = fit(cfg, tiny_dataset, work_dir=tmp_path / "work")

    first, last = state["history"][0], state["history"][-1]
    assert (first["amp_skipped_d"], first["amp_skipped_g"]) == (1.0, 1.0)  # every update of steps 1–8 skipped
    assert "d_grad_norm" not in first and "g_grad_norm" not in first  # no inf norm stands in for them
    assert (last["amp_skipped_d"], last["amp_skipped_g"]) == (0.0, 0.0)
    assert math.isfinite(last["d_grad_norm"]) and math.isfinite(last["g_grad_norm"])
    assert state["step"] == 40 and state["stopped_by"] == [] and state["diagnosis"] == []
    skips = sum(row["amp_skipped_d"] * 8 for row in state["history"])
    assert 8 <= skips < 40 and state["scalers"]["d"]["scale"] == 2.0 ** (40 - skips)  # halved once per skip
    assert last["amp_scale_d"] == 2.0 ** (40 - skips) >= 1
    assert any(torch.ne(state["G"][key], state["G_init"][key]).any() for key in state["G_init"])  # G trained
    save_curves(state["history"], tmp_path / "curves.png")  # rows without gradient norms still plot


def test_updates_that_overflow_at_every_loss_scale_are_divergence(tiny_dataset, tmp_path, monkeypatch):
    """R1 through a BatchNorm critic in fp16 gives non-finite gradients at any scale: the scale halves to below 1."""
    import torch

    from gans.step import Precision

    monkeypatch.setattr(
        Precision, "of", classmethod(lambda cls, device, decision: Precision.create(device, True, torch.float16))
    )
    cfg = tiny_config(
        loss={"r1_weight": 1.0},
        model={"d_norm": "batch"},
        train={"steps": 40, "log_every": 8, "snapshot_every": 100},
    )
    state = fit(cfg, tiny_dataset, work_dir=tmp_path / "work")
    assert [row["amp_skipped_d"] for row in state["history"]] == [1.0, 1.0, 1.0]
    assert [row["amp_scale_d"] for row in state["history"]] == [2.0**8, 2.0**0, 2.0**-8]  # from 2^16, halved 8× a row
    assert state["stopped_by"] == ["divergence"]
    (found,) = state["diagnosis"]
    assert (found["start"], found["evidence"]) == (24, {"amp_scale_d": 2.0**-8})


def test_g_ema_starts_as_g_and_ramps_up_to_the_decay(tiny_dataset, tmp_path):
    """train.ema_rampup: the decay at step 0 is 0, so after one step G_ema is G; without the ramp it is 0.9·G_init + 0.1·G."""
    import torch

    ramped = fit(tiny_config(train={"steps": 1, "ema_rampup": 0.05}), tiny_dataset, work_dir=tmp_path / "ramped")
    assert all(torch.equal(ramped["G_ema"][key], ramped["G"][key]) for key in ramped["G"])
    constant = fit(tiny_config(train={"steps": 1, "ema_rampup": None}), tiny_dataset, work_dir=tmp_path / "constant")
    weights = [key for key, value in constant["G"].items() if value.is_floating_point() and "running" not in key]
    assert weights and not all(torch.equal(constant["G_ema"][key], constant["G"][key]) for key in weights)
    for key in weights:
        expected = torch.lerp(constant["G_init"][key], constant["G"][key], 0.1)
        assert torch.allclose(constant["G_ema"][key], expected, atol=1e-7), key
    assert all(torch.equal(ramped["G"][key], constant["G"][key]) for key in ramped["G"])  # only G_ema differs


def test_a_critic_without_a_decision_boundary_trains_with_fixed_augmentation(tiny_dataset, tmp_path):
    """wgan-gp logs accuracies (about its critic's midpoint) but no d_real_sign; a fixed augment.p needs none."""
    cfg = tiny_config(loss={"name": "wgan-gp"}, augment={"policy": ["translation"], "p": 0.5}, train={"steps": 2})
    (row,) = fit(cfg, tiny_dataset, work_dir=tmp_path / "work")["history"]
    assert {"d_acc_real", "d_acc_fake", "augment_p"} <= set(row) and "d_real_sign" not in row
    assert row["augment_p"] == 0.5
