"""Rank, world size and collectives: single-process fallbacks, and a real 2-process gloo group on CPU."""

from __future__ import annotations

import json
import traceback
from datetime import timedelta
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from gans import dist

WORLD = 2
JOIN_TIMEOUT_S = 90


def test_without_a_process_group_everything_is_single_process():
    assert not dist.is_distributed()
    assert (dist.rank(), dist.world_size(), dist.is_main()) == (0, 1, True)
    module = nn.Linear(2, 2)
    assert dist.wrap(module, torch.device("cpu")) is module
    assert dist.unwrap(module) is module
    values = {"a": 1.5, "b": -2.0}
    assert dist.mean_over_ranks(values) == {"a": 1.5, "b": -2.0}
    assert dist.gather("x") == ["x"]


def test_average_buffers_leaves_buffers_alone_in_one_process():
    bn = nn.BatchNorm1d(3)
    bn.running_mean.copy_(torch.tensor([1.0, 2.0, 3.0]))
    dist.average_buffers(bn)
    assert bn.running_mean.tolist() == [1.0, 2.0, 3.0]


def test_fingerprint_is_equal_for_equal_states_and_changes_with_one_element():
    torch.manual_seed(0)
    state = nn.Linear(3, 2).state_dict()
    copy = {key: value.clone() for key, value in state.items()}
    assert dist.fingerprint(state) == dist.fingerprint(copy)
    copy["weight"][1, 2] += 1e-6
    assert dist.fingerprint(state) != dist.fingerprint(copy)


def _worker(rank: int, init_method: str, out_dir: str) -> None:
    """One rank of the group: run the collectives and write what it saw to ``out_dir/rank<rank>.json``."""
    import torch.distributed as torch_dist

    torch.set_num_threads(1)
    result: dict = {}
    try:
        torch_dist.init_process_group(
            "gloo", init_method=init_method, rank=rank, world_size=WORLD, timeout=timedelta(seconds=30)
        )
        try:
            result["rank"], result["world_size"], result["is_main"] = dist.rank(), dist.world_size(), dist.is_main()

            bn = nn.BatchNorm1d(3)
            bn.running_mean.copy_(torch.tensor([1.0, 2.0, 3.0]) * (rank + 1))
            bn.running_var.fill_(1.0 + rank)
            bn.num_batches_tracked.fill_(10 + rank)  # integer buffers take rank 0's value
            dist.average_buffers(bn)
            result["running_mean"] = bn.running_mean.tolist()
            result["running_var"] = bn.running_var.tolist()
            result["num_batches_tracked"] = int(bn.num_batches_tracked)

            result["mean"] = dist.mean_over_ranks({"a": float(rank)})
            result["gathered"] = dist.gather(rank)

            torch.manual_seed(0)
            module = nn.Linear(2, 2)
            wrapped = dist.wrap(module, torch.device("cpu"))
            result["is_ddp"] = isinstance(wrapped, DistributedDataParallel)
            result["unwraps"] = dist.unwrap(wrapped) is module
            result["fingerprints"] = dist.gather(dist.fingerprint(module.state_dict()))

            # SyncBatchNorm asked for on the CPU: torch has no CPU kernel, so BatchNorm stays per rank, and the
            # GAN pattern (two forwards through DDP, one backward) trains.
            torch.manual_seed(0)
            critic = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.Flatten(), nn.Linear(72, 1))
            wrapped = dist.wrap(critic, torch.device("cpu"), sync_batchnorm=True)
            result["cpu_norms"] = sorted({type(m).__name__ for m in critic.modules() if "Norm" in type(m).__name__})
            torch.manual_seed(rank)
            real, fake = torch.randn(4, 1, 8, 8), torch.randn(4, 1, 8, 8)
            (wrapped(real).mean() - wrapped(fake).mean()).backward()
            result["grad_fingerprints"] = dist.gather(
                dist.fingerprint({n: p.grad for n, p in critic.named_parameters()})
            )
            result["own_running_mean"] = critic[1].running_mean.tolist()  # per rank: its own batches
        finally:
            torch_dist.destroy_process_group()
    except BaseException:
        result["error"] = traceback.format_exc()
    Path(out_dir, f"rank{rank}.json").write_text(json.dumps(result))


@pytest.fixture(scope="module")
def group_results(tmp_path_factory) -> list[dict]:
    """Run ``_worker`` on two spawned processes and return each rank's results."""
    import torch.multiprocessing as mp

    tmp = tmp_path_factory.mktemp("gloo")
    init_method = f"file://{tmp / 'store'}"
    context = mp.get_context("spawn")
    processes = [context.Process(target=_worker, args=(rank, init_method, str(tmp))) for rank in range(WORLD)]
    for process in processes:
        process.start()
    try:
        for process in processes:
            process.join(JOIN_TIMEOUT_S)
    finally:
        for process in processes:
            if process.is_alive():
                process.kill()
                process.join(5)
    assert [process.exitcode for process in processes] == [0] * WORLD
    results = [json.loads((tmp / f"rank{rank}.json").read_text()) for rank in range(WORLD)]
    for result in results:
        assert "error" not in result, result["error"]
    return results


def test_group_ranks_and_world_size(group_results):
    assert [(r["rank"], r["world_size"], r["is_main"]) for r in group_results] == [(0, 2, True), (1, 2, False)]


def test_average_buffers_makes_batchnorm_stats_the_mean_over_ranks(group_results):
    for result in group_results:
        assert result["running_mean"] == [1.5, 3.0, 4.5]
        assert result["running_var"] == [1.5, 1.5, 1.5]
        assert result["num_batches_tracked"] == 10


def test_mean_over_ranks_and_gather_in_a_group(group_results):
    assert [r["mean"] for r in group_results] == [{"a": 0.5}, {"a": 0.5}]
    assert [r["gathered"] for r in group_results] == [[0, 1], [0, 1]]


def test_wrap_gives_ddp_with_equal_replicas_in_a_group(group_results):
    assert [r["is_ddp"] for r in group_results] == [True, True]
    assert [r["unwraps"] for r in group_results] == [True, True]
    fingerprints = group_results[0]["fingerprints"]
    assert len(fingerprints) == 2 and fingerprints[0] == fingerprints[1]
    assert group_results[1]["fingerprints"] == fingerprints


def test_sync_batchnorm_is_asked_for_on_the_cpu_but_batchnorm_stays_per_rank(group_results):
    """torch 2.14 has no SyncBatchNorm on CPU tensors (measured: ValueError "expected input tensor to be on GPU",
    and no CPU ``batch_norm_stats``), so ``wrap`` keeps BatchNorm there; DDP still averages the gradients."""
    assert not dist.syncs_batchnorm(torch.device("cpu")) and dist.syncs_batchnorm(torch.device("cuda", 0))
    assert [r["cpu_norms"] for r in group_results] == [["BatchNorm2d"], ["BatchNorm2d"]]
    grads = group_results[0]["grad_fingerprints"]
    assert grads[0] == grads[1] and group_results[1]["grad_fingerprints"] == grads
    assert group_results[0]["own_running_mean"] != group_results[1]["own_running_mean"]


def test_the_sync_batchnorm_conversion_keeps_the_modules_parameters_and_state_keys():
    """What the loop relies on when ``wrap`` converts on CUDA: G's children are replaced in place, its
    parameters (held by the optimizer) and its state-dict (checkpoints) stay."""
    from gans.models import build_models
    from tests.helpers import tiny_config

    G, _ = build_models(tiny_config())
    parameters, state = list(G.parameters()), {k: v.clone() for k, v in G.state_dict().items()}
    converted = nn.SyncBatchNorm.convert_sync_batchnorm(G)
    assert converted is G and any(isinstance(m, nn.SyncBatchNorm) for m in G.modules())
    assert not any(type(m) is nn.BatchNorm2d for m in G.modules())
    assert all(a is b for a, b in zip(G.parameters(), parameters)) and len(list(G.parameters())) == len(parameters)
    assert dist.fingerprint(G.state_dict()) == dist.fingerprint(state)


def _sync_batchnorm_worker(rank: int, init_method: str, out_dir: str) -> None:
    """One CUDA rank: a BatchNorm critic wrapped with sync_batchnorm, two forwards, one backward (the GAN step)."""
    import torch.distributed as torch_dist

    result: dict = {}
    try:
        torch.cuda.set_device(rank)
        torch_dist.init_process_group(
            "nccl", init_method=init_method, rank=rank, world_size=WORLD, timeout=timedelta(seconds=60)
        )
        try:
            device = torch.device("cuda", rank)
            torch.manual_seed(0)
            critic = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.Flatten(), nn.Linear(72, 1)).to(device)
            wrapped = dist.wrap(critic, device, sync_batchnorm=True)
            result["norms"] = sorted({type(m).__name__ for m in critic.modules() if "Norm" in type(m).__name__})
            torch.manual_seed(1)
            batches = torch.randn(2, WORLD * 4, 1, 8, 8)  # the same global batches on every rank; each takes its half
            real, fake = (b[rank * 4 : (rank + 1) * 4].to(device) for b in batches)
            (wrapped(real).mean() - wrapped(fake).mean()).backward()
            result["running_mean"] = critic[1].running_mean.tolist()
            result["grad_fingerprints"] = dist.gather(
                dist.fingerprint({n: p.grad for n, p in critic.named_parameters()})
            )
            # One process with plain BatchNorm over the whole global batch: the same statistics.
            torch.manual_seed(0)
            whole = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.Flatten(), nn.Linear(72, 1)).to(device)
            whole(batches[0].to(device)), whole(batches[1].to(device))
            result["whole_batch_running_mean"] = whole[1].running_mean.tolist()
        finally:
            torch_dist.destroy_process_group()
    except BaseException:
        result["error"] = traceback.format_exc()
    Path(out_dir, f"rank{rank}.json").write_text(json.dumps(result))


@pytest.mark.gpu
@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs 2 CUDA devices (NCCL: one GPU per rank)")
def test_sync_batchnorm_on_cuda_normalises_over_the_global_batch(tmp_path):
    import torch.multiprocessing as mp

    context = mp.get_context("spawn")
    processes = [
        context.Process(target=_sync_batchnorm_worker, args=(rank, f"file://{tmp_path / 'store'}", str(tmp_path)))
        for rank in range(WORLD)
    ]
    for process in processes:
        process.start()
    for process in processes:
        process.join(JOIN_TIMEOUT_S)
    results = [json.loads((tmp_path / f"rank{rank}.json").read_text()) for rank in range(WORLD)]
    for result in results:
        assert "error" not in result, result["error"]
        assert result["norms"] == ["SyncBatchNorm"]
        assert result["running_mean"] == pytest.approx(result["whole_batch_running_mean"], abs=1e-5)
    assert results[0]["running_mean"] == results[1]["running_mean"]
    assert len(set(results[0]["grad_fingerprints"])) == 1
