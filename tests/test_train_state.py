"""TrainState: the checkpoint dict's keys, resuming from it, the divergence rollback, and fit's shape."""

from __future__ import annotations

import ast
import inspect
import textwrap

import pytest
import torch

from gans import loop
from gans.config import ConfigError
from gans.diagnosis import Diagnosis
from gans.precision import Decision
from gans.train_state import TrainState
from tests.conftest import tiny_config

CHECKPOINT_KEYS = [
    "config",
    "step",
    "world_size",
    "G",
    "D",
    "G_ema",
    "G_init",
    "opt_g",
    "opt_d",
    "scalers",
    "rng",
    "fixed_z",
    "history",
    "best",
    "augment_p",
    "diagnosis",
    "stopped_by",
    "precision",
]
FP32 = Decision(amp=False, channels_last=False, dtype="float32", how="forced", machine="test")


def _state(cfg=None, resume=None) -> TrainState:
    return TrainState.create(cfg or tiny_config(), FP32, torch.device("cpu"), 1, resume)


def _trained(state: TrainState) -> TrainState:
    """``state`` after one optimizer step on each network and some bookkeeping, so that nothing is at its start."""
    for net, opt in ((state.G, state.opt_g), (state.D, state.opt_d)):
        out = net(torch.randn(2, 8)) if net is state.G else net(torch.randn(2, 1, 32, 32))
        out.float().mean().backward()
        opt.step()
    state.step = 4
    state.history = [{"step": 2, "d_loss": 1.0}, {"step": 4, "d_loss": 0.5}, {"step": 6, "d_loss": 9.0}]
    state.best = {"step": 2, "fid": 3.0, "G_ema": loop.cpu_state_dict(state.G_ema)}
    state.augment.p = 0.25
    state.diagnosed = {"divergence": Diagnosis("divergence", 6, 6, {"d_loss": 9.0}, "lower lr")}
    state.stopped_by = ["divergence"]
    return state


def test_the_checkpoint_keys_are_the_stored_format():
    saved = _state().to_checkpoint()
    assert list(saved) == CHECKPOINT_KEYS
    assert saved["precision"] == FP32.to_dict() and saved["scalers"] == {"d": {}, "g": {}}
    assert saved["best"] is None and saved["diagnosis"] == [] and saved["stopped_by"] == []


def test_a_state_restored_from_its_checkpoint_continues_it():
    saved = _trained(_state()).to_checkpoint()
    rng = saved["rng"]["torch"]
    torch.randn(3)  # move the global generator on: resuming puts it back
    resumed = _state(resume=saved)
    again = resumed.to_checkpoint()
    for key in ("G", "D", "G_ema", "G_init"):
        assert all(torch.equal(again[key][name], saved[key][name]) for name in saved[key]), key
    assert again["opt_d"]["state"][0]["step"] == saved["opt_d"]["state"][0]["step"] == 1
    assert torch.equal(again["rng"]["torch"], rng) and torch.equal(again["fixed_z"], saved["fixed_z"])
    assert again["step"] == 4 and again["augment_p"] == 0.25 and again["best"] is saved["best"]
    assert [row["step"] for row in again["history"]] == [2, 4]  # rows logged past the saved step are dropped
    assert again["diagnosis"] == [] and again["stopped_by"] == []  # diagnosed afresh at the next log step


def test_a_checkpoint_of_another_run_is_refused():
    saved = _state().to_checkpoint()
    with pytest.raises(
        ConfigError,
        match=r"^Cannot resume: the checkpoint's run differs \(model section; "
        r"train\.seed 0 → 1\); set train\.resume: false to start fresh\.$",
    ):
        _state(tiny_config(model={"g_width": 16}, train={"seed": 1}), resume=saved)


def test_a_rollback_keeps_the_last_good_weights_with_the_latest_history_and_verdict():
    state = _state()
    last_good = state.to_checkpoint()
    final = _trained(state).rolled_back(last_good)
    assert list(final) == CHECKPOINT_KEYS
    assert final["step"] == 0 and final["G"] is last_good["G"] and final["best"] is None
    assert final["history"] is state.history and final["stopped_by"] == ["divergence"]
    assert [d["name"] for d in final["diagnosis"]] == ["divergence"]


def test_fit_is_one_flat_loop_with_one_exit():
    tree = ast.parse(textwrap.dedent(inspect.getsource(loop.fit)))
    (fit,) = tree.body
    assert fit.end_lineno - fit.lineno + 1 <= 80
    assert [node for node in ast.walk(fit) if isinstance(node, (ast.FunctionDef, ast.Lambda)) and node is not fit] == []
    assert sum(isinstance(node, ast.Return) for node in ast.walk(fit)) == 1
    assert not any(isinstance(node, ast.Nonlocal) for node in ast.walk(ast.parse(inspect.getsource(loop))))
