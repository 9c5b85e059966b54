import pytest
import torch

from gans import checkpoint
from gans.loop import fit
from tests.helpers import tiny_config


def _assert_same_tensors(a: dict, b: dict):
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_round_trip_is_weights_only_and_complete(tmp_path, tiny_dataset):
    cfg = tiny_config(train={"steps": 2})
    state = fit(cfg, tiny_dataset, work_dir=tmp_path / "work")
    path = checkpoint.save(state, tmp_path / "ckpt" / "checkpoint.pt")
    assert [p.name for p in path.parent.iterdir()] == ["checkpoint.pt"]  # no temp file left behind
    loaded = checkpoint.load(path.parent)
    for key in ("G", "D", "G_ema", "G_init", "opt_g", "opt_d", "rng", "fixed_z", "history", "config", "step"):
        assert key in loaded
    assert loaded["step"] == 2 and loaded["config"] == cfg  # stored as a dict, loaded back as the GANConfig
    _assert_same_tensors(loaded["G_ema"], state["G_ema"])
    assert torch.equal(loaded["fixed_z"], state["fixed_z"])
    G = checkpoint.load_generator(loaded)
    assert not G.training and G(torch.randn(2, 8)).shape == (2, 1, 32, 32)
    # The bytes depend on the state only (not on the file name, the temp name or the process): DVC can skip.
    again = checkpoint.save(state, tmp_path / "elsewhere" / "other-name.pt")
    assert again.read_bytes() == path.read_bytes()


def test_corrupt_or_missing_checkpoint_is_a_clear_error(tmp_path):
    with pytest.raises(checkpoint.CheckpointError, match="run the train stage first"):
        checkpoint.load(tmp_path / "missing.pt")
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(checkpoint.CheckpointError, match="could not be read"):
        checkpoint.load(bad)


def test_snapshots_are_reported_with_a_checkpoint_dir(tmp_path, tiny_dataset):
    reports, logs = [], []
    fit(
        tiny_config(train={"steps": 4, "snapshot_every": 2, "log_every": 1}),
        tiny_dataset,
        work_dir=tmp_path / "work",
        log=lambda metrics, step: logs.append(step),
        report=lambda metrics, step, ckpt_dir: reports.append(
            (step, checkpoint.load(ckpt_dir)["step"], len(metrics["replica_fingerprints"]))
        ),
    )
    assert logs == [1, 2, 3, 4]
    assert reports == [(2, 2, 1), (4, 4, 1)]
    assert [p.name for p in (tmp_path / "work").iterdir()] == ["snapshot-0000004"]  # only the latest is kept


def test_resume_continues_the_same_run(tmp_path, tiny_dataset):
    """N steps straight == N/2 steps, save, load, N/2 more: bit-identical weights and optimizer state."""
    cfg = tiny_config(train={"steps": 6, "snapshot_every": 3, "log_every": 3}, loss={"label_flip_prob": 0.2})
    straight = fit(cfg, tiny_dataset, work_dir=tmp_path / "a")

    half = fit(
        tiny_config(train={"steps": 3, "snapshot_every": 3, "log_every": 3}, loss={"label_flip_prob": 0.2}),
        tiny_dataset,
        work_dir=tmp_path / "b",
    )
    saved = checkpoint.load(checkpoint.save(half, tmp_path / "half.pt"))
    resumed = fit(cfg, tiny_dataset, work_dir=tmp_path / "c", resume=saved)

    assert resumed["step"] == straight["step"] == 6
    for key in ("G", "D", "G_ema", "G_init"):
        _assert_same_tensors(resumed[key], straight[key])
    assert [row["step"] for row in resumed["history"]] == [3, 6]
    assert resumed["history"] == straight["history"]


def test_resume_refuses_a_different_model(tmp_path, tiny_dataset):
    from gans.config import ConfigError

    state = fit(tiny_config(train={"steps": 1}), tiny_dataset, work_dir=tmp_path / "a")
    with pytest.raises(ConfigError, match="model"):
        fit(tiny_config(model={"g_width": 16}), tiny_dataset, work_dir=tmp_path / "b", resume=state)
