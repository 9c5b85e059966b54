"""A real two-node Ray cluster on this machine, with its dashboard, shared by every test here.

Joining it: prepare's Pool spreads images over both nodes, sweep trials run at once on different nodes. A
cluster job that comes back as a DVC experiment: `cluster/submit.sh` against it, a real git repo holding this
project, a bare git repo as its remote and a local directory as its DVC remote. The job checks out the pushed
commit, `dvc pull`s, runs the DAG (its train stage DDP over the two nodes, one worker on each), `dvc exp
push`es; the user's repo gets it back with `dvc exp pull`, and the checkpoint from the DVC remote."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from gans import checkpoint, dist
from tests.helpers import REPO, TINY, copy_ignore, environment, free_port, run_command, set_params, tool_env

pytestmark = pytest.mark.slow  # real Ray, DVC, servers or browsers: `make test-fast` leaves it out

# Tiny and quick: no sweep, 20 steps of 2 DDP workers (one per node), one FID draw, no extra BatchNorm pass.
JOB_OVERRIDES = [
    *("-S", "sweep.enabled=false", "-S", "train.steps=20", "-S", "eval.fid_draws=1"),
    *("-S", "eval.training_stats_fid=false"),
]


@pytest.fixture(scope="module")
def env():
    # Every process of one cluster must agree on auth; this private test cluster uses none.
    return tool_env(RAY_AUTH_MODE="disabled")


@pytest.fixture(scope="module")
def cluster(env):
    """Two Ray nodes of 1 CPU on this machine, the head with the dashboard (jobs go through it): the dashboard's
    URL (``jobs``) and the cluster's address (``gcs``). This process joins it without auth, as its nodes do.

    The nodes are Ray's own processes (GCS, raylets, dashboard) started by ``ray.cluster_utils.Cluster``, as
    `ray start` would start them, in ``env`` (a job's entrypoint finds dvc and git there)."""
    from ray.cluster_utils import Cluster

    dashboard = free_port()
    node = {"num_cpus": 1, "object_store_memory": 100_000_000}
    nodes = None
    with environment(**env):
        try:
            head = {**node, "include_dashboard": True, "dashboard_host": "127.0.0.1", "dashboard_port": dashboard}
            nodes = Cluster(initialize_head=True, head_node_args=head)
            nodes.add_node(**node)
            yield SimpleNamespace(jobs=f"http://127.0.0.1:{dashboard}", gcs=nodes.address)
        finally:
            if nodes is not None:
                nodes.shutdown()


def test_prepare_on_the_cluster_matches_serial(tmp_path, cluster):
    """Images processed by Ray's Pool across two nodes give the same bytes as a serial run."""
    from gans.data import IMAGES_FILE
    from gans.prepare.stream import iter_outcomes, write_prepared_stream
    from pipeline.ray_runtime.cluster import cluster_pool
    from tests.test_sources import _cfg, _write_folder

    cfg = _cfg("folder", _write_folder(tmp_path / "photos"))
    serial = write_prepared_stream(tmp_path / "serial", iter_outcomes(cfg, progress=False), {})
    with cluster_pool(cluster.gcs) as pool:
        assert pool is not None
        clustered = write_prepared_stream(tmp_path / "cluster", iter_outcomes(cfg, progress=False, pool=pool), {})
    assert clustered == serial
    assert (tmp_path / "cluster" / IMAGES_FILE).read_bytes() == (tmp_path / "serial" / IMAGES_FILE).read_bytes()


@pytest.fixture(scope="module")
def repos(tmp_path_factory, env):
    """The user's repo (this project, tiny params, prepare and reference run and committed), its bare git
    remote `origin`, its DVC remote directory `storage`, and where the cluster checks jobs out."""
    base = tmp_path_factory.mktemp("cluster_job")
    user, bare, storage = base / "user", base / "remote.git", base / "dvc-remote"
    shutil.copytree(REPO, user, ignore=copy_ignore)
    set_params(user, TINY)
    run_command(["git", "init", "-q", "--bare", bare], None, env)
    for command in (
        ["git", "init", "-q"],
        ["git", "remote", "add", "origin", bare],
        ["dvc", "remote", "add", "--local", "--default", "storage", storage],
        ["dvc", "repro", "reference"],  # the data the job must get from the DVC remote, not recompute
        ["git", "add", "-A"],
        ["git", "commit", "-qm", "tiny project, prepared data"],
    ):
        run_command(command, user, env)
    return {"user": user, "bare": bare, "storage": storage, "jobs": base / "cluster-jobs"}


def _submit(repos, env, address, *args, check=True):
    return run_command(
        [repos["user"] / "cluster" / "submit.sh", "--job-dir", repos["jobs"], *args],
        repos["user"],
        {**env, "RAY_ADDRESS": address},
        check=check,
    )


def _job(cluster):
    from ray.job_submission import JobSubmissionClient

    return JobSubmissionClient(cluster.jobs)


def _exp_refs(bare: Path, env) -> list[str]:
    return run_command(["git", "for-each-ref", "--format=%(refname)", "refs/exps"], bare, env).stdout.split()


def test_bad_input_gets_one_sentence(repos, env):
    user = repos["user"]
    unreachable = f"http://127.0.0.1:{free_port()}"

    (user / "notes.txt").write_text("not committed")
    try:
        result = _submit(repos, env, unreachable, check=False)
    finally:
        (user / "notes.txt").unlink()
    assert result.returncode == 1 and "the working tree has uncommitted changes (?? notes.txt" in result.stderr

    result = _submit(repos, env, unreachable, "--git-remote", "upstream", check=False)
    assert result.returncode == 1
    assert result.stderr.strip() == (
        "submit.sh: no git remote 'upstream' is configured; add one the cluster can reach "
        "too: git remote add upstream URL (or pass --git-remote NAME)."
    )

    run_command(["dvc", "remote", "default", "--local", "--unset"], user, env)
    try:
        result = _submit(repos, env, unreachable, check=False)
    finally:
        run_command(["dvc", "remote", "default", "--local", "storage"], user, env)
    assert result.returncode == 1 and "submit.sh: no DVC remote is configured; add one" in result.stderr

    result = _submit(repos, env, unreachable, check=False)
    assert result.returncode == 1 and f"submit.sh: no Ray dashboard answers at {unreachable};" in result.stderr
    assert result.stderr.count("\n") == 1  # one sentence, no traceback
    assert run_command(["git", "for-each-ref"], repos["bare"], env).stdout == ""  # nothing was pushed


def test_a_failed_job_pushes_nothing(repos, env, cluster):
    before = _exp_refs(repos["bare"], env)
    result = _submit(
        repos,
        env,
        cluster.jobs,
        "--name",
        "cluster-bad",
        "--no-wait",
        "-S",
        "sweep.enabled=false",
        "-S",
        "optim.lr_g=-1",
    )
    assert "ray job status --address" in result.stdout and "dvc exp pull origin cluster-bad" in result.stdout

    from ray.job_submission import JobStatus

    deadline = time.monotonic() + 300
    while not (status := _job(cluster).get_job_status("cluster-bad")).is_terminal() and time.monotonic() < deadline:
        time.sleep(2)
    assert status == JobStatus.FAILED
    assert "optim.lr_g=-1.0 must be in (0, 1)" in _job(cluster).get_job_logs("cluster-bad")
    after = _exp_refs(repos["bare"], env)
    assert after == before and not any(ref.endswith("/cluster-bad") for ref in after)


def test_a_job_comes_back_as_a_dvc_experiment(repos, env, cluster):
    user = repos["user"]
    result = _submit(repos, env, cluster.jobs, "--name", "cluster-ok", *JOB_OVERRIDES)
    assert "submit.sh: job cluster-ok SUCCEEDED; fetch it: dvc exp pull origin cluster-ok" in result.stdout

    from ray.job_submission import JobStatus

    assert _job(cluster).get_job_status("cluster-ok") == JobStatus.SUCCEEDED
    logs = _job(cluster).get_job_logs("cluster-ok")
    # The fresh checkout on the cluster got the prepared data and reference statistics from the DVC remote.
    assert "Stage 'prepare' didn't change" in logs and "Stage 'reference' didn't change" in logs
    assert "Running stage 'train'" in logs and "[job] pushed experiment cluster-ok" in logs
    assert not (repos["jobs"] / "cluster-ok").exists()  # a pushed job leaves no checkout behind

    run_command(["dvc", "exp", "pull", "origin", "cluster-ok"], user, env)
    shown = json.loads(run_command(["dvc", "exp", "show", "--json"], user, env).stdout)
    (exp,) = [
        rev
        for baseline in shown
        for exp in baseline.get("experiments") or []
        for rev in exp["revs"]
        if rev["name"] == "cluster-ok"
    ]
    metrics = exp["data"]["metrics"]["metrics/eval.json"]["data"]
    assert 0 < metrics["fid"] < float("inf") and metrics["step"] == 20
    assert exp["data"]["params"]["params.yaml"]["data"]["train"]["steps"] == 20
    diff = json.loads(run_command(["dvc", "metrics", "diff", "HEAD", "cluster-ok", "--json"], user, env).stdout)
    assert diff["metrics/eval.json"]["fid"] == {"old": None, "new": metrics["fid"]}  # HEAD ran no evaluate

    run_command(["dvc", "exp", "apply", "cluster-ok"], user, env)
    try:
        _check_applied(repos, env, metrics)
    finally:  # back to the committed HEAD, for the tests after this one
        run_command(["git", "reset", "-q", "--hard"], user, env)
        run_command(["git", "clean", "-qfd"], user, env)


def _check_applied(repos, env, metrics):
    """The applied experiment's checkpoint is data in the DVC remote: with every local copy dropped,
    `dvc pull` brings it back, byte for byte what the remote holds, and it loads."""
    user = repos["user"]
    lock = yaml.safe_load((user / "dvc.lock").read_text())
    (out,) = [out for out in lock["stages"]["train"]["outs"] if out["path"] == "artifacts/train"]
    shutil.rmtree(user / ".dvc" / "cache")
    shutil.rmtree(user / "artifacts" / "train")
    run_command(["dvc", "pull", "train"], user, env)
    state = checkpoint.load(user / "artifacts/train/checkpoint.pt")
    # `ray.num_workers: auto` on the cluster: a worker of 1 CPU on each 1-CPU node, DDP across the two nodes, and
    # the replicas ended bit-identical.
    assert state["step"] == 20 and state["world_size"] == 2
    run_info = json.loads((user / "artifacts/train/run.json").read_text())
    assert run_info["workers"] == 2 and len(set(run_info["replica_fingerprints"])) == 1
    assert run_info["replica_fingerprints"][0] == dist.fingerprint(state["G"])
    directory = json.loads((repos["storage"] / "files" / "md5" / out["md5"][:2] / out["md5"][2:]).read_text())
    entry = next(e for e in directory if e["relpath"] == "checkpoint.pt")
    assert hashlib.md5((user / "artifacts/train/checkpoint.pt").read_bytes()).hexdigest() == entry["md5"]

    # Applied: the workspace holds the experiment's outputs, params and metrics, the baseline stays HEAD.
    assert yaml.safe_load((user / "params.yaml").read_text())["ray"]["address"] is None  # nothing to reset
    diff = json.loads(run_command(["dvc", "metrics", "diff", "--json"], user, env).stdout)
    assert diff["metrics/eval.json"]["fid"]["new"] == metrics["fid"]


def test_sweep_trials_run_at_once_on_different_nodes(tmp_path, faces, cluster, monkeypatch):
    """Two trials of one 1-CPU worker each on two 1-CPU nodes: Tune runs them together, one per node."""
    import ray

    from pipeline import sweep as sweep_stage
    from pipeline.ray_runtime import tuning
    from tests.test_sweep import FEW_SAMPLES, _sweep_params

    params = _sweep_params(
        tmp_path,
        faces,
        fid_samples=FEW_SAMPLES,
        losses=["bce", "hinge"],
        ttur_ratios=[1],
        steps=60,
        fid_every=30,  # two reports each, whose times must interleave
        scheduler="fifo",
        max_concurrent=2,
        workers_per_trial=1,
        cpus_per_worker=1,
    )
    params = dataclasses.replace(params, ray=dataclasses.replace(params.ray, address=cluster.gcs))
    outcomes = []
    run_sweep = tuning.run_sweep
    monkeypatch.setattr(
        tuning, "run_sweep", lambda *args, **kwargs: outcomes.extend(run_sweep(*args, **kwargs)) or outcomes
    )
    assert sweep_stage.run(params)["trials"] == 2
    assert not ray.is_initialized()  # the stage disconnects from the cluster when done

    assert len(outcomes) == 2 and all(outcome.error is None and outcome.reports for outcome in outcomes)
    nodes = [{report["node_id"] for report in outcome.reports} for outcome in outcomes]
    assert all(len(node) == 1 for node in nodes) and nodes[0] != nodes[1]  # each trial on one node, not the same
    spans = [(min(r["timestamp"] for r in o.reports), max(r["timestamp"] for r in o.reports)) for o in outcomes]
    assert spans[0][0] <= spans[1][1] and spans[1][0] <= spans[0][1]  # their reports interleave in time
