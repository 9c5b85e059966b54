"""pipeline/ray_runtime: run storage on any file system, Tune trials that are Train runs, and one-worker trials
that share a process (real Ray)."""

from __future__ import annotations

import pytest

from pipeline.params import RAY_JOB_VARIABLE, RayConfig
from pipeline.ray_runtime import cluster, training, trial, tuning

pytestmark = pytest.mark.slow  # real Ray, DVC, servers or browsers: `make test-fast` leaves it out


@pytest.mark.parametrize("as_uri", [False, True], ids=["path", "file-uri"])
def test_clear_run_deletes_only_that_run_wherever_it_is_stored(tmp_path, as_uri):
    for name in ("train", "other"):
        (tmp_path / name / "checkpoint_000").mkdir(parents=True)
        (tmp_path / name / "checkpoint_000" / "checkpoint.pt").write_bytes(b"x")
    storage = tmp_path.as_uri() if as_uri else str(tmp_path)
    cluster.clear_run(storage, "train")
    assert not (tmp_path / "train").exists() and (tmp_path / "other" / "checkpoint_000" / "checkpoint.pt").is_file()
    cluster.clear_run(storage, "train")  # nothing there: nothing to do, no error


def test_a_ray_job_joins_its_cluster_without_an_address(monkeypatch):
    """ray.address: null is a local Ray, or, in a Ray job's entrypoint (Ray sets both variables), the job's cluster;
    a set address always wins. So `dvc exp apply` of a cluster experiment leaves nothing to reset."""
    monkeypatch.delenv(RAY_JOB_VARIABLE, raising=False)
    monkeypatch.setenv("RAY_ADDRESS", "http://127.0.0.1:8265")  # a user's shell, set up for cluster/submit.sh
    assert RayConfig().cluster_address is None
    monkeypatch.setenv(RAY_JOB_VARIABLE, "{}")
    monkeypatch.setenv("RAY_ADDRESS", "10.0.0.1:6379")
    assert RayConfig().cluster_address == "10.0.0.1:6379"
    assert RayConfig(address="127.0.0.1:6380").cluster_address == "127.0.0.1:6380"


def _worker(config):
    for step in (1, 2):
        training.report({"score": config["x"] ** 2 + 1 / step, "rank": training.worker_rank()}, step, None)


def _trial(config):
    trainer = trial.trial_trainer(_worker, {"x": config["x"]}, RayConfig(num_workers=1, storage_path=config["storage"]))
    trainer.fit()


def test_a_tune_sweep_whose_trials_are_train_runs(tmp_path):
    """Trials of several workers each build a TorchTrainer; rank 0's reports reach Tune, which ranks the trials."""
    ray_cfg = RayConfig(num_workers=2, storage_path=str(tmp_path))
    with cluster.ray_session(ray_cfg):
        tuner = tuning.make_tuner(
            _trial,
            {"x": __import__("ray").tune.grid_search([2, 1]), "storage": str(tmp_path)},
            ray_cfg,
            metric="score",
            mode="min",
            max_concurrent=2,
        )
        grid = tuner.fit()
    assert not grid.errors
    scores = sorted(
        (result.config["x"], result.metrics["score"], result.metrics["training_iteration"]) for result in grid
    )
    assert scores == [(1, 1.5, 2), (2, 4.5, 2)]  # the last of two reports each
    assert grid.get_best_result().config["x"] == 1
    # Each trial's Train run kept its own directory under the storage, named after the trial.
    assert len(list(tmp_path.glob("trial-*"))) == 2


def _trial_in_its_process(config):
    import ray.tune

    for step in (1, 2, 3, 4):
        ray.tune.report({"score": config["x"] + 1 / step, "step": step})


def test_one_worker_trials_share_a_process_and_a_stopped_one_ends_in_its_report(tmp_path):
    """A trial that trains in its own process (one worker) waits inside its report while ASHA decides: a stopped
    one ends there, and the next trial runs in the same process (Tune's ``reuse_actors``)."""
    import ray.tune

    ray_cfg = RayConfig(num_workers=1, cpus_per_worker=1, storage_path=str(tmp_path))
    with cluster.ray_session(ray_cfg):
        tuner = tuning.make_tuner(
            _trial_in_its_process,
            {"x": ray.tune.grid_search([0, 5, -1])},
            ray_cfg,
            metric="score",
            mode="min",
            max_concurrent=1,
            scheduler=tuning.asha(4, 1, 2),
        )
        grid = tuner.fit()
    assert not grid.errors
    runs = {result.config["x"]: result.metrics_dataframe for result in grid}
    # x=5 scored worse than x=0 at the first rung (step 1) and stopped there; x=-1, run next, went on to the end.
    assert [list(runs[x]["step"]) for x in (0, 5, -1)] == [[1, 2, 3, 4], [1], [1, 2, 3, 4]]
    assert len({pid for frame in runs.values() for pid in frame["pid"]}) == 1  # one process ran all three


def test_nothing_outside_ray_runtime_imports_ray():
    """Ray lives in one place: every other module of gans/ and pipeline/ is free of `import ray`."""
    import ast
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    offenders = []
    for path in [*root.glob("gans/**/*.py"), *root.glob("pipeline/**/*.py")]:
        if "ray_runtime" in path.parts:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else []
            )
            offenders += [f"{path.relative_to(root)}: {name}" for name in names if name.split(".")[0] == "ray"]
    assert offenders == []
