"""A real 2-worker Ray Train DDP run on CPU."""

import ray
import torch

from gans import checkpoint, dist
from pipeline.ray_train import init_ray, latest_checkpoint_file, make_trainer
from tests.conftest import tiny_config


def test_two_worker_ddp_run_keeps_replicas_identical(tmp_path, tiny_dataset):
    cfg = tiny_config(train={"steps": 6, "log_every": 3, "snapshot_every": 3, "batch_size": 4})
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
    assert not torch.equal(state["G"]["project.0.weight"], state["G_init"]["project.0.weight"])
    # Rank 0 logged every 3 steps with DVCLive.
    assert (tmp_path / "live" / "plots" / "metrics" / "d_loss.tsv").read_text().count("\n") == 3
