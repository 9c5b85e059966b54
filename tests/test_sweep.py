"""The sweep stage: the search space and its checks (pure), then real Ray Tune + Ray Train sweeps on 8 px faces."""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from gans.config import ConfigError
from pipeline import sweep as sweep_stage
from pipeline.params import Params, PathsConfig, RayConfig, SweepConfig, load_params, parse_params
from pipeline.ray_runtime import tuning
from pipeline.sweep_report import margin_sentence, summarize, sweep_metrics
from pipeline.sweep_space import TrialOutcome, trial_config
from tests.helpers import tiny_config

pytestmark = pytest.mark.slow  # real Ray, DVC, servers or browsers: `make test-fast` leaves it out

REPO = Path(__file__).resolve().parents[1]


# --- the search space, each trial's config, the checks (no Ray) ---------------------------------------------


def test_each_loss_gets_its_known_good_optimizer_settings_unless_they_are_set():
    base = tiny_config(optim={"lr_g": 1e-4, "betas_g": [0.5, 0.999], "betas_d": [0.5, 0.999]})
    sweep = SweepConfig()
    hinge = trial_config(base, sweep, {"loss": "hinge", "ttur_ratio": 4})
    assert hinge.optim.lr_g == 1e-4 and hinge.optim.lr_d == pytest.approx(4e-4)
    assert hinge.optim.betas_g == hinge.optim.betas_d == (0.0, 0.9) and hinge.n_critic == 1
    wgan = trial_config(base, sweep, {"loss": "wgan-gp", "ttur_ratio": 1})
    assert wgan.optim.betas_d == (0.0, 0.9) and wgan.n_critic == 5 and wgan.d_norm == "none"
    bce = trial_config(base, sweep, {"loss": "bce", "ttur_ratio": 2})
    assert bce.optim.betas_g == (0.5, 0.999) and bce.n_critic == 1  # params.yaml's betas
    # Set in the sweep section, they apply to every trial.
    fixed = trial_config(
        base, SweepConfig(betas=(0.5, 0.99), n_critic=2, lr_g=3e-4), {"loss": "hinge", "ttur_ratio": 2}
    )
    assert fixed.optim.betas_d == (0.5, 0.99) and fixed.n_critic == 2 and fixed.optim.lr_d == pytest.approx(6e-4)
    # A trial is short: the sweep's budget, scored and checkpointed at every report, never a resume.
    assert (bce.train.steps, bce.train.fid_every, bce.train.fid_steps, bce.train.resume) == (
        sweep.steps,
        0,
        sweep.report_steps(),
        False,
    )
    assert [step for step in range(1, sweep.steps + 1) if bce.train.scores_at(step)] == list(sweep.report_steps())


@pytest.mark.parametrize(
    "section, steps",
    [
        ({}, (200, 400)),  # the default: ASHA's rung at 200 and the last step
        ({"steps": 600}, (200, 600)),  # rungs at 200 and 600, nothing at 400 that no decision reads
        ({"scheduler": "fifo"}, (400,)),  # nothing compares trials before their end
        ({"steps": 600, "fid_every": 200}, (200, 400, 600)),  # a regular curve, when asked for
        ({"steps": 600, "fid_every": 300}, (200, 300, 600)),  # ... with ASHA's rungs kept: each decision reads its step
        ({"steps": 600, "fid_every": 200, "scheduler": "fifo"}, (200, 400, 600)),
        ({"steps": 5000, "grace_steps": 1000, "reduction_factor": 3}, (1000, 3000, 5000)),
        ({"steps": 800, "grace_steps": 100, "reduction_factor": 2}, (100, 200, 400, 800)),
    ],
)
def test_trials_report_where_the_scheduler_compares_them(section, steps):
    sweep = SweepConfig(**section)
    assert sweep.report_steps() == steps
    # ASHA's own rungs (its milestones below max_t) are all among them, so every decision reads a fresh score.
    scheduler = tuning.asha(sweep.steps, sweep.grace_steps, sweep.reduction_factor)
    milestones = {milestone for bracket in scheduler._brackets for milestone, _ in bracket._rungs}
    assert sweep.scheduler == "fifo" or milestones <= set(steps)


@pytest.mark.parametrize(
    "section, message",
    [
        ({"losses": []}, r"^sweep\.losses is empty, so the sweep has nothing to try; list at least one value\.$"),
        ({"ttur_ratios": [1, 0]}, r"^sweep\.ttur_ratios holds 0\.0; every lr_d / lr_g ratio must be positive\.$"),
        (
            {"steps": 100, "fid_every": 50, "grace_steps": 200},
            r"^sweep\.steps=100 is smaller than sweep\.grace_steps=200",
        ),
        ({"steps": 500, "fid_every": 200}, r"^sweep\.steps=500 must be a multiple of sweep\.fid_every=200"),
        ({"fid_every": 0}, r"^sweep\.fid_every=0 must be positive or null\.$"),
        ({"scheduler": "pbt"}, r"^sweep\.scheduler='pbt' is not valid; allowed values: asha, fifo\.$"),
        ({"metric": "is"}, r"^sweep\.metric='is' is not valid; allowed values: fid, kid\.$"),
        ({"seeds": [1, 1]}, r"^sweep\.seeds=\[1, 1\] must list distinct seeds, or be null \(train\.seed\)\.$"),
        ({"seeds": [0, 1], "search": "random"}, r"^sweep\.seeds lists 2 seeds, which repeat grid points"),
    ],
)
def test_bad_sweep_params_are_one_sentence_naming_the_key(section, message):
    with pytest.raises(ConfigError, match=message):
        parse_params({"sweep": section})


def test_names_in_the_space_and_the_reference_are_checked_before_any_trial(tmp_path):
    def params(**sweep) -> Params:
        return dataclasses.replace(
            Params(), sweep=SweepConfig(**sweep), paths=PathsConfig(reference=str(tmp_path / "missing.npz"))
        )

    with pytest.raises(
        ConfigError, match=r"^sweep\.losses='wgan' is not valid; allowed values: bce, hinge, lsgan, wgan-gp\.$"
    ):
        sweep_stage.check_sweep(params(losses=("bce", "wgan")))
    with pytest.raises(
        ConfigError, match=r"^sweep\.models='stylegan' is not valid; allowed values: dcgan, mlp, sagan\.$"
    ):
        sweep_stage.check_sweep(params(models=("dcgan", "stylegan")))
    with pytest.raises(
        ConfigError,
        match=r"^sweep\.ttur_ratios/losses/models: the trial bce ×10000 is invalid "
        r"\(optim\.lr_d=2\.0 must be in \(0, 1\)\)\.$",
    ):
        sweep_stage.check_sweep(params(losses=("bce",), ttur_ratios=(1, 1e4)))
    with pytest.raises(
        Exception, match=r"^No reference statistics at .*missing\.npz; run the reference stage first\.$"
    ):
        sweep_stage.check_sweep(params())


def outcome(number: int, loss: str, ratio: float, last: list[float], noise: float, seed=None, error=None):
    """A trial's outcome as Tune hands it over: a report every 200 steps, each with its bootstrap noise."""
    point = {"loss": loss, "ttur_ratio": ratio, **({"seed": seed} if seed is not None else {})}
    reports = [
        {"step": 200 * (i + 1), "fid": fid, "fid_std": noise, "kid": fid / 1e3, "kid_std": noise / 1e3}
        for i, fid in enumerate(last)
    ]
    return TrialOutcome(f"trial_{number:05d}", point, reports, error)


SHORT_SWEEP = {"sweep": {"steps": 600, "fid_every": 200, "grace_steps": 200}}


def test_the_ranking_takes_each_trials_last_report_and_states_a_margin_within_the_noise():
    params = parse_params(SHORT_SWEEP)
    outcomes = [
        outcome(0, "bce", 1, [380, 390, 395], 4.0),  # the best FID ever, but not at the end
        outcome(1, "hinge", 4, [400, 392, 390], 4.0),  # the best last report: the winner
        outcome(2, "bce", 4, [300], 1.0),  # stopped by ASHA at step 200: ranks below every completed trial
        outcome(3, "hinge", 1, [390, 410], 1.0, error="TrainingStopped: diverged"),
    ]
    rows = summarize(outcomes, params)
    assert [row["number"] for row in rows] == [1, 0, 2, 3]
    assert [row["status"] for row in rows] == ["completed", "completed", "stopped", "failed"]
    metrics = sweep_metrics(rows, params)
    assert metrics["best"]["label"] == "hinge ×4" and metrics["best_score"] == 390 and metrics["best_noise"] == 4
    assert metrics["runner_up"]["label"] == "bce ×1" and metrics["margin"] == 5
    assert metrics["margin_noise"] == pytest.approx(math.hypot(4, 4)) and metrics["margin_resolved"] is False
    assert margin_sentence(metrics).startswith("The winner leads bce ×1 by 5 FID, within the noise (±5.7")


def test_a_margin_beyond_two_sigma_is_resolved_and_kid_can_rank():
    params = parse_params({"sweep": {**SHORT_SWEEP["sweep"], "metric": "kid"}})
    rows = summarize([outcome(0, "bce", 1, [400, 390, 380], 3.0), outcome(1, "hinge", 4, [400, 390, 350], 3.0)], params)
    metrics = sweep_metrics(rows, params)
    assert metrics["metric"] == "kid" and metrics["best"]["label"] == "hinge ×4"
    assert metrics["best_score"] == pytest.approx(0.350) and metrics["best_fid"] == 350
    assert metrics["margin"] == pytest.approx(0.030) and metrics["margin_resolved"] is True
    assert margin_sentence(metrics) is None


def test_a_runner_up_stopped_on_a_rung_is_compared_with_the_winner_at_that_rung():
    params = parse_params(SHORT_SWEEP)
    winner = outcome(0, "hinge", 1, [400, 390, 420], 4.0)  # the only completed trial: it ranks first
    stopped = outcome(1, "bce", 1, [405], 3.0)  # stopped at step 200, where the winner reported 400
    metrics = sweep_metrics(summarize([winner, stopped], params), params)
    assert metrics["best"]["label"] == "hinge ×1" and metrics["best_score"] == 420
    assert metrics["margin_step"] == 200 and metrics["margin"] == 5  # 405 − 400, not 405 − 420
    assert metrics["margin_noise"] == pytest.approx(5.0) and metrics["margin_resolved"] is False
    assert margin_sentence(metrics).startswith("The winner leads bce ×1 by 5 FID at step 200, within the noise (±5 ")

    behind = outcome(1, "bce", 1, [370], 3.0)  # better than the winner at the rung ASHA compared them on
    metrics = sweep_metrics(summarize([winner, behind], params), params)
    assert metrics["margin"] == -30 and metrics["margin_resolved"] is False
    assert margin_sentence(metrics).startswith(
        "The winner trails bce ×1 by 30 FID at step 200, beyond the noise (±5 for the difference, 2σ needed): "
        "it ranks first only because it trained longer;"
    )

    # Both completed: compared at the last step, which the sentence does not repeat.
    metrics = sweep_metrics(summarize([winner, outcome(1, "bce", 1, [405, 400, 424], 3.0)], params), params)
    assert metrics["margin_step"] == 600 and metrics["margin"] == 4
    assert margin_sentence(metrics).startswith("The winner leads bce ×1 by 4 FID, within")


def test_the_margin_at_a_rung_with_kid_a_missing_noise_or_no_report_there():
    kid = parse_params({"sweep": {**SHORT_SWEEP["sweep"], "metric": "kid"}})
    metrics = sweep_metrics(
        summarize([outcome(0, "hinge", 1, [400, 390, 420], 4.0), outcome(1, "bce", 1, [450], 3.0)], kid), kid
    )
    assert metrics["margin_step"] == 200 and metrics["margin"] == pytest.approx(0.050)  # KID 0.450 − 0.400
    assert metrics["margin_noise"] == pytest.approx(0.005) and metrics["margin_resolved"] is True

    params = parse_params(SHORT_SWEEP)
    no_noise = outcome(0, "hinge", 1, [400, 390, 420], math.nan)  # a report without a finite bootstrap std
    metrics = sweep_metrics(summarize([no_noise, outcome(1, "bce", 1, [405, 400, 440], 3.0)], params), params)
    assert metrics["margin"] == 20 and metrics["margin_noise"] == 3 and metrics["margin_resolved"] is True

    unscored_rung = outcome(0, "hinge", 1, [math.nan, 390, 420], 4.0)  # no FID where the runner-up stopped
    metrics = sweep_metrics(summarize([unscored_rung, outcome(1, "bce", 1, [405], 3.0)], params), params)
    assert metrics["runner_up"]["label"] == "bce ×1" and metrics["margin"] is None
    assert margin_sentence(metrics) is None


def test_seeds_repeat_each_configuration_and_the_winner_is_the_best_mean():
    params = parse_params({"sweep": {**SHORT_SWEEP["sweep"], "seeds": [0, 1], "ttur_ratios": [1, 4]}})
    grid = sweep_stage.grid_points(params.sweep, params.gan)
    assert len(grid) == 8 and {point["seed"] for point in grid} == {0, 1}
    assert trial_config(params.gan, params.sweep, {**grid[0], "seed": 1}).train.seed == 1
    outcomes = [
        outcome(0, "bce", 1, [380, 370, 360], 9.0, seed=0),  # one lucky seed: 360 …
        outcome(1, "bce", 1, [380, 390, 400], 9.0, seed=1),  # … but a mean of 380
        outcome(2, "hinge", 4, [380, 375, 372], 9.0, seed=0),
        outcome(3, "hinge", 4, [380, 375, 374], 9.0, seed=1),  # a mean of 373: the winner
    ]
    rows = summarize(outcomes, params)
    metrics = sweep_metrics(rows, params)
    assert metrics["best"]["label"] == "hinge ×4" and metrics["best"]["seeds"] == 2
    assert metrics["best_score"] == 373 and metrics["best_noise"] == pytest.approx(math.sqrt(2) / math.sqrt(2))
    assert metrics["runner_up"]["score"] == 380 and metrics["runner_up"]["noise"] == pytest.approx(40 / 2**0.5 / 2**0.5)
    assert metrics["configurations"] == 2 and metrics["trials"] == 4 and metrics["margin_resolved"] is False
    assert [row["number"] for row in rows] == [2, 3, 0, 1]
    assert [(row["rank"], row["config_score"]) for row in rows] == [(1, 373), (1, 373), (2, 380), (2, 380)]
    assert [(entry["label"], entry["score"], entry["seeds"]) for entry in metrics["ranking"]] == [
        ("hinge ×4", 373, 2),
        ("bce ×1", 380, 2),
    ]


def test_seeds_that_asha_stopped_at_different_steps_are_averaged_at_one_step():
    params = parse_params({"sweep": {**SHORT_SWEEP["sweep"], "seeds": [0, 1], "ttur_ratios": [1, 4]}})
    outcomes = [
        outcome(0, "hinge", 1, [400, 390, 420], 4.0, seed=0),  # completed …
        outcome(1, "hinge", 1, [405], 4.0, seed=1),  # … and stopped at step 200: compared there, 402.5
        outcome(2, "bce", 4, [395, 392, 380], 4.0, seed=0),
        outcome(3, "bce", 4, [415], 4.0, seed=1),  # 405 at step 200 (its last reports' mean would be 397.5)
    ]
    rows = summarize(outcomes, params)
    metrics = sweep_metrics(rows, params)
    assert metrics["best"]["label"] == "hinge ×1" and metrics["best"]["steps"] == 200
    assert metrics["best_score"] == metrics["best_fid"] == 402.5
    assert metrics["best_noise"] == pytest.approx(2.5)  # the standard error of 400 and 405
    assert metrics["runner_up"]["score"] == 405 and metrics["margin"] == 2.5 and metrics["margin_step"] == 200
    assert [(row["number"], row["config_score"]) for row in rows] == [(0, 402.5), (1, 402.5), (2, 405), (3, 405)]
    assert metrics["best"]["trial"] == "trial_00000"  # the configuration's longest-trained trial stands for it


def test_trials_that_cannot_all_get_their_workers_are_refused():
    cpu = RayConfig(cpus_per_worker=1)
    sweep_stage.check_capacity(SweepConfig(workers_per_trial=1, max_concurrent=2), cpu, {"CPU": 2})  # fits exactly
    with pytest.raises(
        sweep_stage.SweepError, match=r"^sweep\.workers_per_trial=4 needs 4 CPUs per trial but the cluster has 2"
    ):
        sweep_stage.check_capacity(SweepConfig(workers_per_trial=4), cpu, {"CPU": 2})
    with pytest.raises(
        sweep_stage.SweepError,
        match=r"^sweep\.max_concurrent=3 trials × 1 CPUs need 3 CPUs but the cluster has 2; "
        r"set sweep\.max_concurrent to at most 2\.$",
    ):
        sweep_stage.check_capacity(SweepConfig(max_concurrent=3), cpu, {"CPU": 2})
    with pytest.raises(sweep_stage.SweepError, match=r"needs 2 GPUs per trial but the cluster has 1"):
        sweep_stage.check_capacity(
            SweepConfig(workers_per_trial=2, max_concurrent=1), RayConfig(use_gpu=True), {"CPU": 8, "GPU": 1}
        )


def test_a_disabled_sweep_writes_an_empty_winner_and_train_uses_params_yaml(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "params.yaml").write_text("sweep: {enabled: false}\nloss: {name: lsgan}\n")
    assert sweep_stage.run(load_params()) is None  # without Ray: tests/test_layering.py
    assert yaml.safe_load(Path("sweep/best.yaml").read_text()) == {}
    assert json.loads(Path("metrics/sweep.json").read_text()) == {"enabled": False, "trials": 0}
    assert Path("plots/sweep/fid_curves.png").stat().st_size > 0
    params = load_params(with_sweep_winner=True)
    assert params.from_sweep == () and params.gan.loss.name == "lsgan"


def test_the_winner_overrides_params_yaml_for_train(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "params.yaml").write_text("loss: {name: bce}\noptim: {lr_g: 0.0001}\n")
    Path("sweep").mkdir()
    Path("sweep/best.yaml").write_text(
        "loss: {name: hinge}\noptim: {lr_d: 0.0004}\ntrain: {n_critic: 1}\n"
        "trial: {id: abc_00001, ttur_ratio: 4.0, fid: 99.5}\n"
    )
    params = load_params(with_sweep_winner=True)
    assert params.gan.loss.name == "hinge" and params.gan.optim.lr_d == 4e-4 and params.gan.optim.lr_g == 1e-4
    assert params.from_sweep == ("loss.name", "optim.lr_d", "train.n_critic")
    assert load_params().gan.loss.name == "bce"  # only train asks for the winner
    Path("sweep/best.yaml").write_text("loss: {name: hinge, lr: 3}\n")
    with pytest.raises(ConfigError, match=r"^Unknown key loss\.lr"):
        load_params(with_sweep_winner=True)


# --- real sweeps ----------------------------------------------------------------------------------------------


TINY_GAN = {
    "data": {"resolution": 8, "channels": 1},
    "model": {"name": "mlp", "z_dim": 16, "g_width": 64, "d_width": 64},
    "train": {"batch_size": 16, "log_every": 10, "n_fixed": 4, "fid_samples": 48, "ema_decay": 0.9},
}


FEW_SAMPLES = 16
"""``train.fid_samples`` of the sweeps whose tests read where and when trials ran, not their scores."""


def _tiny_gan(fid_samples: int = TINY_GAN["train"]["fid_samples"]) -> dict:
    """TINY_GAN with ``fid_samples`` generated images per in-training FID."""
    return {**TINY_GAN, "train": {**TINY_GAN["train"], "fid_samples": fid_samples}}


def _sweep_params(
    tmp_path: Path, data: tuple[str, str], fid_samples: int = TINY_GAN["train"]["fid_samples"], **sweep
) -> Params:
    """Params of a sweep over ``data`` (``faces``) with TINY_GAN's model and training (``_tiny_gan``)."""
    paths = PathsConfig(
        prepared=data[0],
        reference=data[1],
        sweep_best=str(tmp_path / "sweep/best.yaml"),
        sweep_trials=str(tmp_path / "sweep/trials.csv"),
        sweep_metrics=str(tmp_path / "metrics/sweep.json"),
        sweep_plots=str(tmp_path / "plots/sweep"),
    )
    raw = {**_tiny_gan(fid_samples), "sweep": {"steps": 120, "grace_steps": 60, "reduction_factor": 2, **sweep}}
    return dataclasses.replace(parse_params(raw), ray=RayConfig(storage_path=str(tmp_path / "ray")), paths=paths)


def _table(params: Params) -> list[dict]:
    with open(params.paths.sweep_trials) as f:
        return list(csv.DictReader(f))


def _seed_ordering(params: Params, ranks: dict[float, int]) -> Params:
    """``params`` with the first ``train.seed`` whose shuffled grid runs the ratios in the order of ``ranks``.

    ASHA compares a trial with those that reached the rung before it, so the test fixes who comes first.
    """
    for seed in range(10_000):
        cfg = dataclasses.replace(params.gan, train=dataclasses.replace(params.gan.train, seed=seed))
        order = [ranks[point["ttur_ratio"]] for point in sweep_stage.grid_points(params.sweep, cfg)]
        if order == sorted(order):
            return dataclasses.replace(params, gan=cfg)
    raise AssertionError("no seed gives that order")


@pytest.fixture(scope="module")
def asha_sweep(tmp_path_factory, faces):
    """bce/wgan-gp × ratios {1, 1e-6 (D frozen: G cannot learn)}, ASHA, 2 trials at a time, scored at its rung
    (step 60) and at the end (step 120).

    An infinite gradient-penalty weight makes every wgan-gp trial diverge (its D loss turns NaN/inf).
    The ratio-1 trials run first: the learning one sets the bar at each rung.
    """
    root = tmp_path_factory.mktemp("sweep")
    params = _sweep_params(root, faces, losses=["bce", "wgan-gp"], ttur_ratios=[1, 1e-6])
    params = dataclasses.replace(
        params, gan=dataclasses.replace(params.gan, loss=dataclasses.replace(params.gan.loss, gp_weight=math.inf))
    )
    params = _seed_ordering(params, {1.0: 0, 1e-6: 1})
    metrics = sweep_stage.run(params)
    return params, metrics, _table(params)


def test_asha_stops_the_configuration_that_cannot_learn_and_a_diverged_trial_fails(asha_sweep):
    params, metrics, rows = asha_sweep
    trials = {(row["loss"], float(row["ttur_ratio"])): row for row in rows}
    assert sorted(trials) == [("bce", 1e-6), ("bce", 1.0), ("wgan-gp", 1e-6), ("wgan-gp", 1.0)]
    # The losses turned NaN/inf: train.stop_on (divergence) ended each such trial as failed, and the sweep went on.
    for ratio in (1.0, 1e-6):
        failed = trials["wgan-gp", ratio]
        assert (
            failed["status"] == "failed"
            and failed["error"].startswith("Training stopped at step 10: divergence (train.stop_on")
            and not failed["best_fid"]
        )
        assert (failed["n_critic"], failed["betas_d"]) == ("5", "0 0.9")  # wgan-gp's resolved settings
    # D frozen (lr_d ≈ 0): G cannot learn, it scored worse than the learning trial, ASHA stopped it early.
    learning, frozen = trials["bce", 1.0], trials["bce", 1e-6]
    assert learning["status"] == "completed" and int(learning["steps_run"]) == 120
    assert frozen["status"] == "stopped" and int(frozen["steps_run"]) == 60  # ASHA's one rung: 60 steps
    assert float(learning["fid@60"]) < float(frozen["fid@60"])
    # The counts and the trial-steps ASHA spent are in the metrics.
    assert (metrics["completed"], metrics["stopped"], metrics["failed"]) == (1, 1, 2)
    assert metrics["trial_steps"] == sum(int(row["steps_run"]) for row in rows) < metrics["trial_steps_full"] == 4 * 120
    # Every resolved setting and the seed are recorded.
    assert (learning["betas_d"], learning["n_critic"], float(learning["lr_d"])) == (
        "0.5 0.999",
        "1",
        pytest.approx(2e-4),
    )
    assert float(frozen["lr_d"]) == pytest.approx(2e-10)
    assert {row["seed"] for row in rows} == {str(params.gan.train.seed)}


def test_the_winner_is_the_trial_with_the_lowest_last_report_in_the_table(asha_sweep):
    params, metrics, rows = asha_sweep
    completed = [row for row in rows if row["status"] == "completed" and row["score"]]
    best_row = min(completed, key=lambda row: float(row["score"]))
    assert rows[0]["trial"] == best_row["trial"]  # the table lists the winner first
    winner = yaml.safe_load(Path(params.paths.sweep_best).read_text())
    assert best_row["trial"] == metrics["best"]["trial"] and best_row["trial"].endswith(
        f"_{winner['trial']['number']:05d}"
    )
    assert winner["trial"]["label"] == f"{best_row['loss']} ×{float(best_row['ttur_ratio']):g}"
    assert winner["loss"] == {"name": best_row["loss"]}
    assert winner["optim"]["lr_d"] == pytest.approx(float(best_row["lr_d"]))
    assert metrics["metric"] == "fid" and metrics["best_score"] == pytest.approx(float(best_row["score"]), abs=1e-3)
    assert (
        winner["trial"]["fid"]
        == pytest.approx(float(best_row["final_fid"]), abs=0.01)
        == pytest.approx(metrics["best_fid"], abs=0.01)
    )
    # Each report carries its bootstrap noise; the margin over the runner-up is stated against it.
    assert float(best_row["score_std"]) > 0 and metrics["best_noise"] == pytest.approx(float(best_row["score_std"]))
    assert metrics["margin"] >= 0 and metrics["margin_noise"] > 0 and isinstance(metrics["margin_resolved"], bool)
    # The winner's values pass the config checks as train will apply them.
    parse_params({**TINY_GAN, **{k: v for k, v in winner.items() if k != "trial"}})
    # Plots: curves and heat map as PNG, curves as CSV for dvc plots (one row per report of a scored trial).
    plots = Path(params.paths.sweep_plots)
    assert all((plots / name).stat().st_size > 5000 for name in ("fid_curves.png", "fid_heatmap.png"))
    with open(plots / "fid_curves.csv") as f:
        curve = list(csv.DictReader(f))
    assert len(curve) == sum(len([k for k in row if k.startswith("fid@") and row[k]]) for row in rows)


def test_an_interrupted_sweep_resumes_without_rerunning_ended_trials(tmp_path, faces):
    """SIGINT the stage after the first trial ended; `sweep.resume: true` finishes the rest only."""
    params_file = tmp_path / "params.yaml"

    def write_params(resume: bool) -> None:
        raw = {
            **_tiny_gan(FEW_SAMPLES),
            "sweep": {
                "losses": ["bce", "hinge"],
                "ttur_ratios": [1],
                "steps": 60,
                "fid_every": 20,
                "grace_steps": 20,
                "scheduler": "fifo",
                "max_concurrent": 1,
                "resume": resume,
            },
            "paths": {"prepared": faces[0], "reference": faces[1]},
        }
        params_file.write_text(yaml.safe_dump(raw))

    env = {**os.environ, "PYTHONPATH": str(REPO)}
    write_params(resume=False)
    process = subprocess.Popen(
        [sys.executable, "-m", "pipeline.sweep"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines = []
    for line in process.stdout:  # the stage prints "ended at step" when a trial ends
        lines.append(line)
        if "ended at step 60" in line:
            process.send_signal(signal.SIGINT)
            break
    out = "".join(lines) + process.communicate(timeout=300)[0]
    assert process.returncode == 1, out
    assert "The sweep stopped before all 2 trials ended; set sweep.resume: true to continue it" in out
    first = next(line for line in lines if "ended at step 60" in line).split("(")[1].split(")")[0]
    assert not (tmp_path / "sweep/best.yaml").exists()  # nothing written for a half sweep

    write_params(resume=True)
    resumed = subprocess.run(
        [sys.executable, "-m", "pipeline.sweep"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600
    )
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    assert "resuming the sweep" in resumed.stdout
    assert f"({first}): step" not in resumed.stdout  # the ended trial reported nothing again, the other one did
    assert (
        resumed.stdout.count("ended at step 60") == 1 and first not in resumed.stdout.split("ended at step 60")[0][-40:]
    )
    rows = list(csv.DictReader(open(tmp_path / "sweep/trials.csv")))
    assert sorted(row["status"] for row in rows) == ["completed", "completed"] and first in {
        row["trial"] for row in rows
    }
