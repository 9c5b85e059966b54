"""Held-out evaluation: the draws that choose weights and the draws that are reported never share a seed."""

from __future__ import annotations

import pytest

from gans.config import IN_TRAINING_FID_SEED, ConfigError, EvalConfig
from pipeline import evaluate, worker


def test_selection_in_training_and_reported_draws_never_share_a_seed():
    cfg = EvalConfig(fid_draws=3)
    seeds = evaluate.seeds_used(cfg)
    drawn = [seeds["selection"], seeds["in_training_fid"], *seeds["reported"]]
    assert len(set(drawn)) == len(drawn) == 5
    assert seeds["in_training_fid"] == worker.IN_TRAINING_FID_SEED == IN_TRAINING_FID_SEED  # what training draws
    assert seeds["standing_stats"] == seeds["selection"]  # BatchNorm statistics from latents never reported on
    assert evaluate.standing_settings(cfg)["seed"] == cfg.selection_seed


@pytest.mark.parametrize(
    "settings, message",
    [
        (
            {"seed": IN_TRAINING_FID_SEED - 1, "fid_draws": 2},
            f"reuses seed {IN_TRAINING_FID_SEED}, which draws the in-training FID",
        ),
        ({"selection_seed": 2027, "fid_draws": 2}, "reuses seed 2027, which draws eval.selection_seed's samples"),
        ({"selection_seed": IN_TRAINING_FID_SEED}, "is the in-training FID's seed"),
    ],
)
def test_an_overlapping_seed_is_refused_in_one_sentence(settings, message):
    with pytest.raises(ConfigError, match=message):
        EvalConfig(**settings)


def test_a_standard_protocol_sets_the_sample_count_and_a_bad_one_is_refused():
    assert EvalConfig(n_fake=300).samples == 300
    assert EvalConfig(protocol="fid10k_full").samples == 10_000
    assert EvalConfig(protocol="fid50k_full", n_fake=300).samples == 50_000
    with pytest.raises(ConfigError, match=r"^eval\.protocol='fid50k' is not valid; allowed values: custom, "):
        EvalConfig(protocol="fid50k")
