"""Joining a running cluster: a real two-node Ray cluster on this machine, one DDP worker per node."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from gans import checkpoint, dist
from tests.helpers import free_port
from tests.test_ray_train import stage_params

pytestmark = pytest.mark.slow  # real Ray, DVC, servers or browsers: `make test-fast` leaves it out

RAY = str(Path(sys.executable).parent / "ray")


@pytest.fixture
def two_node_cluster(monkeypatch):
    port = free_port()
    # Every process of one cluster must agree on auth; this private test cluster uses none.
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    monkeypatch.setenv("RAY_USAGE_STATS_ENABLED", "0")
    common = ["--num-cpus=1", "--object-store-memory=100000000", "--disable-usage-stats"]
    env = {**os.environ}
    try:
        subprocess.run(
            [RAY, "start", "--head", f"--port={port}", "--include-dashboard=false", *common],
            check=True,
            capture_output=True,
            env=env,
            timeout=120,
        )
        subprocess.run(
            [RAY, "start", f"--address=127.0.0.1:{port}", *common],
            check=True,
            capture_output=True,
            env=env,
            timeout=120,
        )
        yield f"127.0.0.1:{port}"
    finally:
        subprocess.run([RAY, "stop", "--force"], capture_output=True, env=env, timeout=120)


def test_train_joins_a_two_node_cluster_with_one_worker_per_node(tmp_path, tiny_dataset, two_node_cluster):
    import dataclasses

    import ray

    from pipeline.train import run

    params = stage_params(tmp_path, tiny_dataset)
    params = dataclasses.replace(
        params, ray=dataclasses.replace(params.ray, address=two_node_cluster, placement_strategy="STRICT_SPREAD")
    )
    state = checkpoint.load(run(params))
    assert not ray.is_initialized()  # the stage disconnects when done

    assert state["step"] == 4 and state["world_size"] == 2
    import json

    run_info = json.loads((tmp_path / "train" / "run.json").read_text())
    assert run_info["workers"] == 2 and len(set(run_info["replica_fingerprints"])) == 1
    assert run_info["replica_fingerprints"][0] == dist.fingerprint(state["G"])


def test_prepare_on_the_cluster_matches_serial(tmp_path, two_node_cluster):
    """Images processed by Ray's Pool across two nodes give the same bytes as a serial run."""
    from gans.data import IMAGES_FILE
    from gans.prepare.stream import iter_outcomes, write_prepared_stream
    from pipeline.ray_runtime.cluster import cluster_pool
    from tests.test_sources import _cfg, _write_folder

    cfg = _cfg("folder", _write_folder(tmp_path / "photos"))
    serial = write_prepared_stream(tmp_path / "serial", iter_outcomes(cfg, progress=False), {})
    with cluster_pool(two_node_cluster) as pool:
        assert pool is not None
        clustered = write_prepared_stream(tmp_path / "cluster", iter_outcomes(cfg, progress=False, pool=pool), {})
    assert clustered == serial
    assert (tmp_path / "cluster" / IMAGES_FILE).read_bytes() == (tmp_path / "serial" / IMAGES_FILE).read_bytes()
