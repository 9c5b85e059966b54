"""Failure-mode diagnosis: synthetic histories for each mode, and real tiny runs pushed into each mode."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from gans import checkpoint
from gans.config import ConfigError
from gans.data import PreparedDataset, write_prepared
from gans.diagnosis import DIAGNOSES, collapse_of, diagnose
from gans.loop import TrainingDiverged, fit
from gans.metrics import InTrainingFID, load_reference, sample_diversity
from gans.models.families import MODELS
from gans.models.mlp import MLP
from tests.conftest import _lfw_subset
from tests.helpers import tiny_config


def _row(step, d_acc=0.7, g_loss=1.0, **extra):
    return {
        "step": step,
        "d_loss": 1.2,
        "g_loss": g_loss,
        "d_acc_real": d_acc,
        "d_acc_fake": d_acc,
        "d_real_sign": 2 * d_acc - 1,
        "d_grad_norm": 2.0,
        "g_grad_norm": 1.0,
        **extra,
    }


HEALTHY = [_row(25 * i, d_acc=0.6 + 0.1 * (i % 3), g_loss=1.0 + 0.05 * (i % 4)) for i in range(1, 41)]


def _names(history):
    return [diagnosis.name for diagnosis in diagnose(history)]


# --- synthetic histories -------------------------------------------------------------------------------------


def test_a_healthy_history_gets_no_diagnosis():
    assert diagnose(HEALTHY) == []


def test_convergence_failure_is_d_pinned_at_one_while_g_loss_rises():
    history = HEALTHY[:10] + [_row(275 + 25 * i, d_acc=1.0, g_loss=3.0 + 0.1 * i) for i in range(20)]
    (found,) = diagnose(history)
    assert found.name == "convergence_failure"
    assert (found.start, found.end) == (275, 750)
    assert found.evidence["d_acc_real"] == 1.0 and found.evidence["g_loss_end"] == pytest.approx(4.9)
    assert found.evidence["g_loss_rise_per_1k_steps"] == pytest.approx(4.0)
    assert "lower lr_d" in found.hint
    # Pinned but G's loss flat (G still learns), or pinned for too short a window: no diagnosis.
    assert _names(HEALTHY[:10] + [_row(275 + 25 * i, d_acc=1.0, g_loss=3.0) for i in range(20)]) == []
    assert _names(HEALTHY[:10] + [_row(275 + 25 * i, d_acc=1.0, g_loss=3.0 + i) for i in range(5)]) == []


def test_a_critic_without_a_decision_boundary_is_not_judged_for_convergence_failure():
    """wgan-gp rows (accuracies about the critic's midpoint, no d_real_sign) pinned while G's loss rises: no verdict."""
    pinned = HEALTHY[:10] + [_row(275 + 25 * i, d_acc=1.0, g_loss=3.0 + 0.1 * i) for i in range(20)]
    assert _names(pinned) == ["convergence_failure"]
    critic = [{key: value for key, value in row.items() if key != "d_real_sign"} for row in pinned]
    assert _names(critic) == []


def test_divergence_is_a_non_finite_or_exploding_loss_or_gradient():
    nan = HEALTHY[:10] + [_row(275, g_loss=math.nan)]
    (found,) = diagnose(nan)
    assert (found.name, found.start, found.evidence) == ("divergence", 275, {"g_loss_finite": 0.0})
    exploding = HEALTHY[:10] + [_row(275, d_grad_norm=5e4)] + HEALTHY[10:12]
    (found,) = diagnose(exploding)
    assert (found.name, found.start, found.evidence) == ("divergence", 275, {"d_grad_norm": 5e4})


def test_divergence_is_also_an_fp16_loss_scale_below_one():
    """Skipped fp16 updates leave no gradient norm; the scale they halve is the evidence once it falls below 1."""
    calibrating = [_row(25 * i, amp_scale_d=2.0 ** (16 - 4 * i), amp_scale_g=2.0**16) for i in range(1, 5)]
    assert _names(calibrating) == []  # down to 2^0: still a scale at which fp16 holds the gradients
    (found,) = diagnose(calibrating + [_row(125, amp_scale_d=2.0**-4, amp_scale_g=2.0**16)])
    assert (found.name, found.start, found.evidence) == ("divergence", 125, {"amp_scale_d": 2.0**-4})


def test_mode_collapse_is_low_diversity_or_many_duplicates_at_the_latest_score():
    collapsed = HEALTHY[:20] + [_row(525, diversity=0.2, duplicates=0.9)]
    (found,) = diagnose(collapsed)
    assert (found.name, found.start, found.end) == ("mode_collapse", 525, 525)
    assert found.evidence["diversity"] == 0.2 and found.evidence["duplicates"] == 0.9
    assert "g_loss_oscillation" in found.evidence
    recovered = collapsed + [_row(550, diversity=0.95, duplicates=0.0)]
    assert _names(recovered) == []
    assert collapse_of(0.9, 0.6, 1, 1).name == "mode_collapse"  # many duplicates alone is enough
    assert collapse_of(0.9, 0.1, 1, 1) is None


def test_sample_diversity_of_copies_and_of_the_real_set():
    rng = np.random.default_rng(0)
    real = torch.from_numpy(rng.normal(size=(64, 16)))
    assert sample_diversity(real, real) == {"diversity": pytest.approx(1.0), "duplicates": 0.0}
    copies = real[:1].repeat(64, 1)
    assert sample_diversity(copies, real) == {"diversity": pytest.approx(0.0, abs=1e-8), "duplicates": 1.0}


def test_stop_on_names_are_checked():
    with pytest.raises(
        ConfigError,
        match=r"^train\.stop_on='collapse' is not valid; allowed values: convergence_failure, divergence, mode_collapse\.$",
    ):
        fit(tiny_config(train={"stop_on": ["collapse"]}), None, work_dir="unused")
    assert DIAGNOSES.names() == ["convergence_failure", "divergence", "mode_collapse"]


# --- real tiny runs ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def faces8(tmp_path_factory) -> PreparedDataset:
    """The 100 LFW faces, area-downsampled to 8×8."""
    faces = torch.from_numpy(_lfw_subset()[:100]).float().unsqueeze(1)
    small = (F.interpolate(faces, size=8, mode="area") * 255).round().clamp(0, 255).to(torch.uint8).numpy()
    return PreparedDataset(write_prepared(tmp_path_factory.mktemp("faces8") / "prepared", small, {"count": 100}))


def _mlp(**sections):
    train = {"steps": 200, "log_every": 5, "snapshot_every": 50, "batch_size": 8, **sections.pop("train", {})}
    sections.setdefault("augment", {"policy": []})  # augmentation exists to keep D from winning: off here
    return tiny_config(
        data={"resolution": 8}, model={"name": "mlp", **sections.pop("model", {})}, train=train, **sections
    )


def test_a_huge_lr_d_diverges_and_the_run_keeps_its_last_good_snapshot(faces8, tmp_path):
    state = fit(_mlp(optim={"lr_d": 0.9}), faces8, work_dir=tmp_path / "work")
    assert state["stopped_by"] == ["divergence"]
    (found,) = [d for d in state["diagnosis"] if d["name"] == "divergence"]
    last_logged = state["history"][-1]["step"]
    assert found["start"] == last_logged < 200  # stopped at the log step that saw it
    assert state["step"] == (last_logged - 1) // 50 * 50  # the weights of the latest snapshot before it
    for key in ("d_loss", "g_loss", "d_grad_norm", "g_grad_norm"):
        assert all(abs(row[key]) < 1e4 for row in state["history"] if row["step"] <= state["step"]), key
    saved = checkpoint.load(next((tmp_path / "work").glob("snapshot-*")))
    assert saved["step"] == state["step"] and saved["stopped_by"] == ["divergence"]
    assert all(torch.equal(saved["G"][key], state["G"][key]) for key in state["G"])


def test_without_divergence_in_stop_on_a_nan_run_raises(faces8, tmp_path):
    cfg = _mlp(loss={"name": "wgan-gp", "gp_weight": math.inf}, train={"stop_on": [], "steps": 20})
    with pytest.raises(TrainingDiverged, match=r"^Training diverged at step 5 \("):
        fit(cfg, faces8, work_dir=tmp_path / "work")


def test_a_much_stronger_d_gives_convergence_failure(faces8, tmp_path):
    state = fit(_mlp(optim={"lr_g": 1e-6, "lr_d": 2e-3}), faces8, work_dir=tmp_path / "work")
    assert state["step"] == 200 and state["stopped_by"] == []
    assert [d["name"] for d in state["diagnosis"]] == ["convergence_failure"]
    found = state["diagnosis"][0]
    assert (
        found["evidence"]["d_acc_real"] >= 0.95 and found["evidence"]["g_loss_end"] > found["evidence"]["g_loss_start"]
    )


class _IgnoresZ(MLP):
    """The MLP family whose generator multiplies z by 0: every sample is the same image."""

    @staticmethod
    def generator(cfg):
        generator = MLP.generator(cfg)
        forward = generator.forward
        generator.forward = lambda z: forward(z * 0)
        return generator


def test_a_generator_that_ignores_z_collapses_and_a_healthy_run_gets_no_diagnosis(faces8, faces, tmp_path, monkeypatch):
    monkeypatch.setitem(MODELS._entries, "mlp-ignoring-z", _IgnoresZ)  # registered for this test only
    reference = load_reference(faces[1])  # the same 100 faces at 8 px (resized bicubic, not by area)
    collapsed = fit(
        _mlp(model={"name": "mlp-ignoring-z"}, train={"fid_every": 200}),
        faces8,
        work_dir=tmp_path / "collapsed",
        score=InTrainingFID(reference, 48, seed=1),
    )
    assert "mode_collapse" in [d["name"] for d in collapsed["diagnosis"]]
    assert collapsed["history"][-1]["duplicates"] == 1.0

    healthy = fit(
        _mlp(train={"fid_every": 200}),
        faces8,
        work_dir=tmp_path / "healthy",
        score=InTrainingFID(reference, 48, seed=1),
    )
    assert healthy["diagnosis"] == [] and healthy["stopped_by"] == []
    assert healthy["history"][-1]["diversity"] > 0.5
