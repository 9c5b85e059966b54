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
