"""The training loop's callbacks: log and snapshot cadence, stopping early, and per-step seeds."""

from __future__ import annotations

import numpy as np
import pytest

from gans import checkpoint, loop
from gans.diagnosis import DIAGNOSES
from gans.loop import fit, step_seed
from tests.helpers import tiny_config

METRIC_KEYS = {"d_loss", "g_loss", "d_acc_real", "d_acc_fake", "d_grad_norm", "g_grad_norm"}


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
