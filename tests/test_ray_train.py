"""The train stage on a real local Ray cluster: 2-worker DDP on CPU, resume and fresh runs on any storage."""

from __future__ import annotations

import dataclasses
import json

import pytest

from gans import checkpoint, dist
from gans.config import ConfigError
from pipeline.params import Params, PathsConfig, RayConfig
from tests.helpers import local_ray, tiny_config, write_tiny_dataset

pytestmark = pytest.mark.slow  # real Ray, DVC, servers or browsers: `make test-fast` leaves it out


@pytest.fixture(scope="module", autouse=True)
def one_local_ray():
    """One local Ray instance for every run of this module: a stage uses the Ray its process already runs."""
    with local_ray():
        yield


def stage_params(tmp_path, tiny_dataset, storage: str | None = None, workers: int = 2, **sections) -> Params:
    """Params of a tiny 2-worker train stage writing under ``tmp_path`` (``sections`` override the config)."""
    train = {"steps": 4, "log_every": 2, "snapshot_every": 2, "batch_size": 4, **sections.pop("train", {})}
    paths = PathsConfig(
        prepared=str(tiny_dataset.path), train=str(tmp_path / "train"), train_live=str(tmp_path / "live")
    )
    return Params(
        gan=tiny_config(train=train, **sections),
        ray=RayConfig(num_workers=workers, storage_path=storage or str(tmp_path / "ray")),
        paths=paths,
    )


def _run(params: Params) -> dict:
    from pipeline.train import run

    return checkpoint.load(run(params))


STRAIGHT = {"steps": 8, "batch_size": 8}
"""The 2-worker DCGAN run that several tests read: 8 steps straight, a global batch of 8 (4 images per worker)."""


@pytest.fixture(scope="module")
def straight_run(tmp_path_factory):
    """The ``STRAIGHT`` run on the 24 images of ``tiny_dataset``: its final state, its directory and its config."""
    root = tmp_path_factory.mktemp("straight")
    params = stage_params(root, write_tiny_dataset(root), train=STRAIGHT)
    return _run(params), root, params.gan


def _check_replicas(state: dict, root, params_gan) -> None:
    """Both replicas ended bit-identical, the run took ``params_gan``, and rank 0 logged at every ``log_every``."""
    run_info = json.loads((root / "train" / "run.json").read_text())
    fingerprints = run_info["replica_fingerprints"]
    assert len(fingerprints) == 2 and fingerprints[0] == fingerprints[1] == dist.fingerprint(state["G"])
    assert state["world_size"] == 2 and state["config"] == params_gan
    # run.json holds the resolved config, defaults included (not just the keys a params file spelled out).
    assert run_info["config"] == json.loads(json.dumps(params_gan.to_dict()))
    assert run_info["config"]["train"]["ema_decay"] == params_gan.train.ema_decay
    assert run_info["workers"] == 2 and run_info["precision"] == state["precision"]
    assert any(not (state["G"][k] == state["G_init"][k]).all() for k in state["G"] if state["G"][k].is_floating_point())
    # Rank 0 logged with DVCLive, each value at its own step.
    every = params_gan.train.log_every
    rows = (root / "live" / "plots" / "metrics" / "d_loss.tsv").read_text().splitlines()
    assert [row.split("\t")[0] for row in rows] == ["step", *map(str, range(every, state["step"] + 1, every))]


def test_two_worker_ddp_run_keeps_replicas_identical(straight_run):
    """DDP averages gradients, so replicas stay bit-identical (DCGAN, non-saturating BCE)."""
    state, root, config = straight_run
    assert state["step"] == 8 and (config.model.name, config.loss.name) == ("dcgan", "bce")
    _check_replicas(state, root, config)


def test_two_worker_wgan_gp_keeps_replicas_identical(tmp_path, tiny_dataset):
    """The WGAN-GP penalty's double backward goes through DDP too (SAGAN: spectral norm and attention)."""
    params = stage_params(
        tmp_path,
        tiny_dataset,
        model={"name": "sagan"},
        loss={"name": "wgan-gp"},
        train={"steps": 6, "log_every": 3, "snapshot_every": 3},
    )
    state = _run(params)
    assert state["step"] == 6
    _check_replicas(state, tmp_path, params.gan)


def test_the_global_batch_is_the_same_on_one_and_on_two_workers(tmp_path, tiny_dataset, straight_run):
    """train.batch_size is the global batch: 1 worker takes all 8 images per D update, 2 workers 4 each."""
    one = _run(stage_params(tmp_path, tiny_dataset, workers=1, train=STRAIGHT))
    two = straight_run[0]
    for workers, state in ((1, one), (2, two)):
        assert state["world_size"] == workers
        assert [row["global_batch"] for row in state["history"]] == [8.0] * 4  # real images counted on every rank


def test_train_stage_resumes_a_run_through_ray_checkpoints_and_a_fresh_run_starts_fresh(
    tmp_path, tiny_dataset, straight_run
):
    """4 steps, then `train.resume: true` to 8 steps == 8 steps straight (bit-identical generator), with Ray's
    checkpoints under a `file://` URI (any URI); then `train.resume: false` there must not reload that run."""
    storage = (tmp_path / "remote").as_uri()
    straight = straight_run[0]
    _run(stage_params(tmp_path, tiny_dataset, storage, train={**STRAIGHT, "steps": 4}))
    resumed = _run(stage_params(tmp_path, tiny_dataset, storage, train={**STRAIGHT, "resume": True}))

    assert resumed["step"] == straight["step"] == 8
    assert [row["step"] for row in resumed["history"]] == [2, 4, 6, 8]
    assert dist.fingerprint(resumed["G"]) == dist.fingerprint(straight["G"])
    assert dist.fingerprint(resumed["G_ema"]) == dist.fingerprint(straight["G_ema"])
    # DVCLive kept the first half's rows and appended the second half's, each at its own step.
    rows = (tmp_path / "live" / "plots" / "metrics" / "g_loss.tsv").read_text().splitlines()
    assert [row.split("\t")[0] for row in rows] == ["step", "2", "4", "6", "8"]

    # A resume that would change the noise streams is refused by the stage in one sentence (a worker raised it).
    with pytest.raises(ConfigError, match=r"^Cannot resume: the checkpoint's run differs \(train\.seed 0 → 1\)"):
        _run(stage_params(tmp_path, tiny_dataset, storage, train={**STRAIGHT, "steps": 10, "seed": 1, "resume": True}))

    # A different model under the same run name: reloading the old run would refuse it ("Cannot resume").
    fresh = _run(stage_params(tmp_path, tiny_dataset, storage, model={"g_width": 16}))
    assert fresh["step"] == 4 and [row["step"] for row in fresh["history"]] == [2, 4]
    assert fresh["config"].model.g_width == 16


def test_resume_refuses_a_changed_seed_or_worker_count(tmp_path, tiny_dataset):
    """A resume that would silently change the data order or the noise streams fails with one sentence."""
    from gans.loop import fit, resume_conflicts

    state = fit(tiny_config(train={"steps": 2}), tiny_dataset, work_dir=tmp_path / "a")
    saved = state["config"]
    changed = tiny_config(train={"steps": 4, "seed": 1, "batch_size": 2, "n_critic": 2})
    assert resume_conflicts(saved, 1, changed, 2) == [
        "train.seed 0 → 1",
        "train.batch_size 4 → 2",
        "train.n_critic 1 → 2",
        "world size (workers) 1 → 2",
    ]
    assert (
        resume_conflicts(saved, 1, dataclasses.replace(saved, train=dataclasses.replace(saved.train, steps=9)), 1) == []
    )
    with pytest.raises(
        ConfigError,
        match=r"^Cannot resume: the checkpoint's run differs \(train\.seed 0 → 1\); "
        r"set train\.resume: false to start fresh\.$",
    ):
        fit(tiny_config(train={"steps": 4, "seed": 1}), tiny_dataset, work_dir=tmp_path / "b", resume=state)
