"""Fault tolerance on a real local Ray cluster: a Ray Train worker SIGKILLed mid-run (``ray.max_failures: 1``).

The train stage's run restarts from Ray's latest checkpoint, recomputes less than one snapshot interval and
ends bit-identical to an uninterrupted run; a sweep whose trial loses its process retries it from its
checkpoint and completes. The victim is a real process, found by PID: in the train stage through a recording
wrapper around the worker function (each attempt writes its rank, PID and resume step), in the sweep among this
test process's descendants (``ray::ImplicitFunc``, the trial). The kill comes once Ray has registered a
snapshot (in the train stage its checkpoint manager's state file under the run's storage names it; in the
sweep Tune's ``on_checkpoint`` callback does).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import signal
import threading
import time
from pathlib import Path
from typing import Callable, Optional

import psutil
import pytest
from ray.train.v2._internal.constants import CHECKPOINT_MANAGER_SNAPSHOT_FILENAME

from gans import checkpoint, dist
from gans.atomic import atomic_file
from pipeline import sweep as sweep_stage
from pipeline import train as train_stage
from pipeline.ray_runtime import tuning
from pipeline.ray_runtime.cluster import RUN_NAME
from tests.helpers import local_ray
from tests.test_ray_train import stage_params
from tests.test_sweep import FEW_SAMPLES, _sweep_params, _table

pytestmark = pytest.mark.slow  # real Ray, DVC, servers or browsers: `make test-fast` leaves it out


@pytest.fixture(scope="module", autouse=True)
def one_local_ray():
    """One local Ray instance for the module's runs (a stage uses the Ray its process already runs).

    Ray registers a reported checkpoint when its Train controller next polls the workers; the kill must land
    2–5 steps after a registration, so the controller polls every 0.1 s here (1 s in the project)."""
    with local_ray(RAY_TRAIN_HEALTH_CHECK_INTERVAL_S="0.1"):  # the controller reads it from Ray's environment
        yield


WAIT_S = 240
"""Longest wait for a kill point (the run then fails the test instead of hanging it)."""


def _recording_worker(config: dict, record_dir: str) -> None:
    """``train_func_per_worker``, after writing ``<pid>.json``: this attempt's rank, PID and resume step."""
    from pipeline.ray_runtime import training as ray_training
    from pipeline.worker import train_func_per_worker

    with ray_training.restored_checkpoint() as directory:
        resumed_from = None if directory is None else int(checkpoint.load(directory)["step"])
    record = {"rank": ray_training.worker_rank(), "pid": os.getpid(), "resumed_from": resumed_from}
    with atomic_file(Path(record_dir, f"{os.getpid()}.json")) as tmp:  # the killer thread polls these files
        tmp.write_text(json.dumps(record))
    train_func_per_worker(config)


def _registered_step(run_dir: Path) -> Optional[int]:
    """The step of the latest checkpoint Ray Train has registered for the run at ``run_dir`` (None: none yet)."""
    try:
        state = json.loads((run_dir / CHECKPOINT_MANAGER_SNAPSHOT_FILENAME).read_text())
    except (FileNotFoundError, json.JSONDecodeError):  # not written yet, or caught mid-write
        return None
    latest = state.get("latest_checkpoint_result")
    return None if latest is None else int(latest["metrics"]["step"])


def _logged_steps(live_dir: Path) -> list[int]:
    """The steps rank 0 logged with DVCLive, in the order written (a restart appends its own)."""
    path = live_dir / "plots" / "metrics" / "d_loss.tsv"
    if not path.is_file():
        return []
    complete_rows = path.read_text().split("\n")[1:-1]  # after the header; the last piece is empty or being written
    return [int(row.split("\t")[0]) for row in complete_rows]


class Killer(threading.Thread):
    """Polls ``find_victim()`` (a PID, or None while it is not time yet) and SIGKILLs the first PID it returns."""

    def __init__(self, find_victim: Callable[[], Optional[int]]) -> None:
        super().__init__(daemon=True)
        self.find_victim = find_victim
        self.victim: Optional[int] = None
        self.stopped = threading.Event()

    def run(self) -> None:
        deadline = time.monotonic() + WAIT_S
        while not self.stopped.is_set() and time.monotonic() < deadline:
            pid = self.find_victim()
            if pid is not None:
                os.kill(pid, signal.SIGKILL)
                self.victim = pid
                return
            time.sleep(0.01)

    def __enter__(self) -> Killer:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stopped.set()
        self.join(10)


def test_a_killed_worker_resumes_from_the_latest_snapshot_bit_identically(tmp_path, tiny_dataset, monkeypatch):
    """SIGKILL rank 1 mid-interval after a registered snapshot: the run completes, recomputes < snapshot_every
    steps, and its final G, G_ema and D equal an uninterrupted run's bit for bit (2 DDP workers on CPU)."""
    snapshot_every, steps = 10, 60
    train = {"steps": steps, "log_every": 1, "snapshot_every": snapshot_every}
    # The controller polls every 0.1 s (one_local_ray), and the models are wide enough that a step takes a good
    # part of a poll interval.
    model = {"g_width": 32, "d_width": 32}
    straight = checkpoint.load(
        train_stage.run(stage_params(tmp_path / "straight", tiny_dataset, train=train, model=model))
    )

    params = stage_params(tmp_path / "killed", tiny_dataset, train=train, model=model)
    params = dataclasses.replace(params, ray=dataclasses.replace(params.ray, max_failures=1))
    records = tmp_path / "records"
    records.mkdir()
    monkeypatch.setattr(
        train_stage, "train_func_per_worker", functools.partial(_recording_worker, record_dir=str(records))
    )
    run_dir, live_dir = Path(params.ray.storage_path) / RUN_NAME, Path(params.paths.train_live)
    kill_point = {}

    def rank_1_mid_interval() -> Optional[int]:
        """Rank 1 of the first attempt, once rank 0 logged 2–5 steps past the latest registered snapshot."""
        registered, logged = _registered_step(run_dir), _logged_steps(live_dir)
        first_attempt = [json.loads(p.read_text()) for p in records.glob("*.json") if not p.name.startswith(".")]
        rank_1 = [r["pid"] for r in first_attempt if r["rank"] == 1 and r["resumed_from"] is None]
        if registered is None or not logged or not rank_1 or not registered + 2 <= logged[-1] <= registered + 5:
            return None
        kill_point.update(registered=registered, logged=logged[-1])
        return rank_1[0]

    with Killer(rank_1_mid_interval) as killer:
        state = checkpoint.load(train_stage.run(params))
    assert killer.victim is not None, "no kill point was found: the run ended first"
    assert not psutil.pid_exists(killer.victim)

    # Two attempts of two ranks each; the second resumed both ranks from the snapshot registered at the kill.
    attempts = [json.loads(p.read_text()) for p in records.glob("*.json") if not p.name.startswith(".")]
    first = sorted((r["rank"], r["resumed_from"]) for r in attempts if r["resumed_from"] is None)
    second = sorted((r["rank"], r["resumed_from"]) for r in attempts if r["resumed_from"] is not None)
    resumed_from = kill_point["registered"]
    assert first == [(0, None), (1, None)] and second == [(0, resumed_from), (1, resumed_from)], attempts
    assert resumed_from >= snapshot_every and resumed_from % snapshot_every == 0

    # Rank 0 logged every step: steps 1..K before the kill, then resumed_from+1..60. Recomputed: K - resumed_from.
    logged = _logged_steps(live_dir)
    last_before_kill = len(logged) - (steps - resumed_from)
    assert logged == list(range(1, last_before_kill + 1)) + list(range(resumed_from + 1, steps + 1))
    recomputed = last_before_kill - resumed_from
    assert kill_point["logged"] - resumed_from <= recomputed < snapshot_every
    print(
        f"[killed worker] rank 1 (pid {killer.victim}) killed at logged step {kill_point['logged']}; "
        f"resumed from step {resumed_from}; {recomputed} steps recomputed"
    )

    # The restarted run is the uninterrupted run, bit for bit.
    assert state["step"] == straight["step"] == steps and state["world_size"] == 2
    for key in ("G", "G_ema", "D"):
        assert dist.fingerprint(state[key]) == dist.fingerprint(straight[key]), key
    assert [row["step"] for row in state["history"]] == list(range(1, steps + 1))
    run_info = json.loads((tmp_path / "killed" / "train" / "run.json").read_text())
    assert run_info["replica_fingerprints"] == [dist.fingerprint(straight["G"])] * 2


def _trial_processes() -> list[psutil.Process]:
    """This test process's Tune trial processes (a one-worker trial trains in its own ``ray::ImplicitFunc`` actor)."""
    found = []
    for process in psutil.Process().children(recursive=True):
        try:
            if process.cmdline()[:1] and process.cmdline()[0].startswith("ray::ImplicitFunc"):
                found.append(process)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return found


def test_a_sweep_trial_whose_process_is_killed_retries_from_its_checkpoint_and_the_sweep_completes(
    tmp_path, faces, monkeypatch, capfd
):
    """2 trials, one at a time; the first trial's process is SIGKILLed once Tune has registered its step-20
    checkpoint: Tune restarts it from there, and the sweep completes."""
    params = _sweep_params(
        tmp_path,
        faces,
        fid_samples=FEW_SAMPLES,
        losses=["bce", "hinge"],
        ttur_ratios=[1],
        steps=40,
        fid_every=20,
        grace_steps=20,
        scheduler="fifo",
        max_concurrent=1,
    )
    params = dataclasses.replace(params, ray=dataclasses.replace(params.ray, max_failures=1))
    registered: dict[str, int] = {}  # trial id → step of its latest checkpoint Tune registered

    def on_checkpoint(self, iteration, trials, trial, checkpoint, **info) -> None:
        registered[trial.trial_id] = int(trial.last_result["step"])

    monkeypatch.setattr(tuning._Progress, "on_checkpoint", on_checkpoint, raising=False)
    killed = {}

    def first_trials_process() -> Optional[int]:
        if not registered:
            return None
        processes = _trial_processes()
        if len(processes) != 1:
            return None
        killed.update(trial=next(iter(registered)), at_step=next(iter(registered.values())))
        return processes[0].pid

    with Killer(first_trials_process) as killer:
        metrics = sweep_stage.run(params)
    assert killer.victim is not None, "no kill point was found: the sweep ended first"
    assert not psutil.pid_exists(killer.victim)
    assert killed["at_step"] == 20
    print(f"[killed worker] trial {killed['trial']}: process {killer.victim} killed after its step-20 checkpoint")

    rows = {row["trial"]: row for row in _table(params)}
    assert killed["trial"] in rows and len(rows) == 2
    # With ray.max_failures: 0 the killed trial would have failed; it retried and finished.
    assert [(row["status"], int(row["steps_run"]), row["error"]) for row in rows.values()] == [
        ("completed", 40, "")
    ] * 2
    assert all(row[f"fid@{step}"] for row in rows.values() for step in (20, 40))
    assert (metrics["completed"], metrics["stopped"], metrics["failed"]) == (2, 0, 0)
    # It resumed from its checkpoint (Ray forwards the trial's console), not from scratch.
    assert "[train] resuming from step 20" in capfd.readouterr().out
