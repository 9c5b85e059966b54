"""End to end: a copy of this repo, `dvc repro` with tiny params, then a param change tracked by DVC."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
import yaml
from PIL import Image

from gans.export import load_exported
from tests.helpers import REPO, TINY, command_output, copy_ignore, run_command, set_params, tool_env

pytestmark = pytest.mark.slow  # real Ray, DVC, servers or browsers: `make test-fast` leaves it out


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    root = tmp_path_factory.mktemp("e2e") / "repo"
    shutil.copytree(REPO, root, ignore=copy_ignore)
    env = tool_env()
    set_params(root, TINY)
    run_command(["git", "init", "-q"], root, env)
    run_command(["git", "add", "-A"], root, env)
    run_command(["git", "commit", "-qm", "tiny"], root, env)
    first = command_output(["dvc", "repro"], root, env)
    return root, env, first


def test_repro_produces_every_stage_output(repo):
    root, env, log = repo
    for stage in ("prepare", "reference", "sweep", "train", "evaluate", "export"):
        assert f"Running stage '{stage}'" in log

    manifest = json.loads((root / "data/prepared/manifest.json").read_text())
    assert manifest["count"] == 40 and manifest["shape"] == [1, 32, 32] and manifest["value_range"] == [-1.0, 1.0]
    assert Image.open(root / "data/prepared/preview.png").size[0] > 64

    metrics = json.loads((root / "metrics/eval.json").read_text())
    assert 0 < metrics["fid"] < float("inf") and metrics["fid_initial"] > 0
    assert metrics["meta"]["n_real"] == 40 and metrics["meta"]["n_fake"] == 40
    assert metrics["meta"]["extractor"] == "inception-v3-tf2015-offline"
    # Honest numbers: held-out draws (no selection or in-training FID drew their latents) with a bootstrap
    # noise over real and generated features, KID ± std, precision/recall at equal counts (generated first),
    # what two halves of the real set score, the standing BatchNorm statistics' effect, and the failure modes
    # found (each with a step range, evidence and a hint).
    seeds = metrics["meta"]["seeds"]
    assert seeds["selection"] == 2025 and seeds["reported"] == [2026, 2027]
    assert len({seeds["selection"], seeds["in_training_fid"], *seeds["reported"]}) == 4
    assert metrics["fid_std"] > 0 and metrics["meta"]["fid_noise"]["resampled"] == "real and generated"
    assert metrics["fid_draws_std"] >= 0 and metrics["kid_std"] > 0
    assert 0 <= metrics["precision"] <= 1 and 0 <= metrics["recall"] <= 1 and metrics["precision_std"] >= 0
    assert metrics["meta"]["precision_recall"]["input_order"] == "generated first, real second"
    assert metrics["meta"]["precision_recall"]["count_each"] == 40
    assert 0 < metrics["fid_real_halves"] < metrics["fid_generated_vs_half"]
    assert metrics["fid_training_bn_stats"] > 0 and metrics["selected"]["standing_stats"]["samples"] == 1024
    assert all(set(found) == {"start", "end", "evidence", "hint"} for found in metrics["diagnosis"].values())
    assert set(metrics["diagnosis"]) <= {"convergence_failure", "divergence", "mode_collapse"}
    assert (root / "dvclive/train/plots/metrics/diagnosis/divergence.tsv").read_text().count("\n") == 1 + 40 // 10
    grid = Image.open(root / "plots/eval/samples.png")
    assert grid.size == (4 * 64 + 5 * 2, 4 * 64 + 5 * 2)  # 16 images of 32 px upscaled ×2 in a 4×4 grid, 2 px padding
    assert Image.open(root / "plots/eval/losses.png").size[0] > 500
    assert (root / "dvclive/train/plots/metrics/g_loss.tsv").read_text().count("\n") == 1 + 40 // 10

    run = json.loads((root / "artifacts/train/run.json").read_text())
    assert run["workers"] == 1 and len(set(run["replica_fingerprints"])) == 1  # ray.num_workers: auto on local Ray
    # The precision and layout chosen on this machine are printed and recorded wherever the numbers go.
    decision = run["precision"]
    assert (
        decision["how"] in ("measured", "cached")
        and decision["machine"]
        and decision["dtype"] in ("float32", "bfloat16")
    )
    assert "[train] precision " in log
    assert metrics["meta"]["training_precision"] == decision and metrics["meta"]["extractor_precision"]["amp"] is False

    version = (root / "models/generator/LATEST").read_text().strip()
    model, signature = load_exported(root / "models/generator" / version)
    assert signature["z_dim"] == 16 and signature["outputs"][0]["shape"] == [-1, 1, 32, 32]
    # The sweep's winner was trained, and the exported signature names it, with the exported weights' FID.
    winner = yaml.safe_load((root / "sweep/best.yaml").read_text())
    sweep = json.loads((root / "metrics/sweep.json").read_text())
    assert sweep["trials"] == 2 and winner["trial"]["number"] == sweep["best"]["number"]
    assert f"[train] from the sweep winner (sweep/best.yaml): loss.name={winner['loss']['name']}" in log
    assert signature["sweep_trial"] == winner["trial"] and signature["loss"] == winner["loss"]["name"]
    assert signature["ttur_ratio"] == pytest.approx(winner["trial"]["ttur_ratio"])
    assert signature["fid"] == metrics["fid"] and signature["step"] == metrics["selected"]["step"]
    assert signature["standing_stats"] == metrics["selected"]["standing_stats"]  # exported with what was scored
    assert signature["weights"] == metrics["selected"]["weights"] in ("G_ema", "best")
    assert signature["training_precision"] == decision
    with torch.no_grad():
        images = model(torch.randn(3, 16))
    assert images.shape == (3, 1, 32, 32) and images.min() >= -1 and images.max() <= 1


def test_second_repro_is_a_no_op(repo):
    root, env, _ = repo
    log = command_output(["dvc", "repro"], root, env)
    assert "Running stage" not in log
    assert "Data and pipelines are up to date" in log


def test_param_change_is_tracked_by_dvc_metrics_diff(repo):
    root, env, _ = repo
    run_command(["git", "add", "-A"], root, env)
    run_command(["git", "commit", "-qm", "first run"], root, env)
    winner = yaml.safe_load((root / "sweep/best.yaml").read_text())
    # Scored once in training and on one held-out draw, without the extra BatchNorm pass the first run made.
    lighter_eval = {"eval": {"fid_draws": 1, "training_stats_fid": False}}
    set_params(root, {"train": {"steps": 60, "fid_every": 60}, "sweep": {"enabled": False}, **lighter_eval})
    log = command_output(["dvc", "repro"], root, env)
    assert "Stage 'prepare' didn't change" in log and "Stage 'reference' didn't change" in log
    assert "Running stage 'sweep'" in log and "[train] no sweep winner: params.yaml as it is" in log
    assert "Running stage 'train'" in log
    assert "[evaluate] initial generator (G_init): FID" in log and "(cached: these weights" in log  # same step-0 G
    diff = json.loads(command_output(["dvc", "metrics", "diff", "--json"], root, env))
    eval_diff = diff["metrics/eval.json"]
    assert eval_diff["step"] == {"old": 40, "new": 60, "diff": 20}
    params_diff = json.loads(command_output(["dvc", "params", "diff", "--json"], root, env))
    assert (
        params_diff["params.yaml"]["train.steps"]["old"] == 40
        and params_diff["params.yaml"]["train.steps"]["new"] == 60
    )
    # The winner's values were params of train: DVC shows them leaving with the sweep turned off.
    assert params_diff["sweep/best.yaml"]["loss.name"] == {"old": winner["loss"]["name"], "new": None}
    assert params_diff["sweep/best.yaml"]["trial.label"]["old"] == winner["trial"]["label"]
    assert (root / "models/generator/LATEST").read_text().strip() == "2"  # a new version beside the first

    # A commit that changes only the evaluation seeds moves the FID within the noise evaluate reports.
    run_command(["git", "add", "-A"], root, env)
    run_command(["git", "commit", "-qm", "second run"], root, env)
    set_params(root, {"eval": {"seed": 3026}})
    log = command_output(["dvc", "repro"], root, env)
    assert "Stage 'train' didn't change" in log and "Running stage 'evaluate'" in log
    eval_diff = json.loads(command_output(["dvc", "metrics", "diff", "--json"], root, env))["metrics/eval.json"]
    noise = eval_diff["fid_std"]["old"]
    assert eval_diff["fid"]["old"] != eval_diff["fid"]["new"]  # other samples …
    assert abs(eval_diff["fid"]["diff"]) < 3 * noise  # … the same generator, within its noise

    # The plots a reviewer compares across commits are in git: a fresh clone (no DVC cache, no remote) draws them.
    run_command(["git", "add", "-A"], root, env)
    run_command(["git", "commit", "-qm", "third run"], root, env)
    clone = root.parent / "fresh-clone"
    run_command(["git", "clone", "-q", str(root), str(clone)], root.parent, env)
    assert not (clone / ".dvc" / "cache").exists()
    run_command(["dvc", "plots", "diff", "HEAD~2", "HEAD", "-o", "page"], clone, env)  # with and without a sweep
    page = (clone / "page" / "index.html").read_text()
    for drawn in ("fid_curves.csv", "fid_heatmap.png", "samples.png", "losses.png", "g_loss.tsv"):
        assert drawn in page, drawn
