"""A real 2-worker Ray Train DDP run on CPU."""

import pytest
import ray
import torch

from gans import checkpoint, dist
from pipeline.ray_train import init_ray, latest_checkpoint_file, make_trainer
from tests.conftest import tiny_config


@pytest.mark.parametrize("model, loss", [("dcgan", "bce"), ("sagan", "wgan-gp")])
def test_two_worker_ddp_run_keeps_replicas_identical(tmp_path, tiny_dataset, model, loss):
    """DDP averages gradients (the WGAN-GP penalty's double backward included), so replicas stay bit-identical."""
    cfg = tiny_config(model={"name": model}, loss={"name": loss}, train={"steps": 6, "log_every": 3, "snapshot_every": 3, "batch_size": 4})
    init_ray(None, num_cpus=2)
    try:
        result = make_trainer(
            cfg.to_dict(),
            prepared=str(tiny_dataset.path),
            live_dir=str(tmp_path / "live"),
            storage_path=str(tmp_path / "ray"),
            num_workers=2,
        ).fit()
        path = latest_checkpoint_file(result)
    finally:
        ray.shutdown()

    fingerprints = result.metrics["replica_fingerprints"]
    assert len(fingerprints) == 2 and fingerprints[0] == fingerprints[1]
    state = checkpoint.load(path)
    assert state["step"] == 6 and state["world_size"] == 2
    assert dist.fingerprint(state["G"]) == fingerprints[0]
    assert any(not torch.equal(state["G"][k], state["G_init"][k]) for k in state["G"] if state["G"][k].is_floating_point())
    # Rank 0 logged every 3 steps with DVCLive.
    assert (tmp_path / "live" / "plots" / "metrics" / "d_loss.tsv").read_text().count("\n") == 3


def _params(tmp_path, tiny_dataset, steps: int, resume: bool):
    from pipeline.params import parse_params

    cfg = tiny_config(train={"steps": steps, "log_every": 2, "snapshot_every": 2, "batch_size": 4, "resume": resume})
    raw = {**cfg.to_dict(), "ray": {"num_workers": 2, "storage_path": str(tmp_path / "ray")}}
    raw["paths"] = {
        "prepared": str(tiny_dataset.path),
        "train": str(tmp_path / "train"),
        "train_live": str(tmp_path / "live"),
    }
    return parse_params(raw)


def test_train_stage_resumes_a_run_through_ray_checkpoints(tmp_path, tiny_dataset):
    """4 steps, then `train.resume: true` to 8 steps == 8 steps straight (bit-identical generator)."""
    from pipeline.train import run

    straight = checkpoint.load(run(_params(tmp_path / "a", tiny_dataset, steps=8, resume=False)))
    run(_params(tmp_path / "b", tiny_dataset, steps=4, resume=False))
    resumed = checkpoint.load(run(_params(tmp_path / "b", tiny_dataset, steps=8, resume=True)))

    assert resumed["step"] == straight["step"] == 8
    assert [row["step"] for row in resumed["history"]] == [2, 4, 6, 8]
    assert dist.fingerprint(resumed["G"]) == dist.fingerprint(straight["G"])
    assert dist.fingerprint(resumed["G_ema"]) == dist.fingerprint(straight["G_ema"])
    # DVCLive kept the first half's rows and appended the second half's.
    assert (tmp_path / "b" / "live" / "plots" / "metrics" / "g_loss.tsv").read_text().count("\n") == 1 + 4
