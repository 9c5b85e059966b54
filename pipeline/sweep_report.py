"""The sweep stage's outputs, from its trials' outcomes: the trials table, the DVC metrics, the plots, the winner.

``summarize`` turns ``tuning.TrialOutcome`` records into one row per trial (best first); ``write_table``
(``trials.csv``), ``sweep_metrics``, ``write_plots`` (FID curves, the best-FID heat map, the curves as CSV) and
``winner_overrides``/``write_winner`` (``best.yaml``, a params file of the train stage) write them.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any, Optional

import yaml

from gans.atomic import atomic_file
from gans.plots import save_heatmap, save_lines
from pipeline.params import Params
from pipeline.ray_runtime.tuning import LOSS, MODEL, RATIO, TrialOutcome
from pipeline.sweep_trial import trial_config

METRIC = "fid"
"""What the trials report and the sweep minimises."""
CURVES_PNG, HEATMAP_PNG, CURVES_CSV = "fid_curves.png", "fid_heatmap.png", "fid_curves.csv"
STATUSES = ("completed", "stopped", "failed")


def label(point: dict[str, Any]) -> str:
    """A trial's short name: "hinge ×4" (with the model when models are searched)."""
    text = f"{point[LOSS]} ×{float(point[RATIO]):g}"
    return f"{point[MODEL]} {text}" if MODEL in point else text


def summarize(outcomes: list[TrialOutcome], params: Params) -> list[dict[str, Any]]:
    """One row per trial, best first: swept and resolved values, status, the FID at every report."""
    rows = []
    for outcome in outcomes:
        cfg = trial_config(params.gan, params.sweep, outcome.point)
        scored = [
            (int(r["step"]), float(r[METRIC])) for r in outcome.reports if METRIC in r and r.get("step") is not None
        ]
        finite = [fid for _, fid in scored if math.isfinite(fid)]
        steps_run = max((step for step, _ in scored), default=0)
        status = "failed" if outcome.error else "completed" if steps_run >= params.sweep.steps else "stopped"
        last = outcome.reports[-1] if outcome.reports else {}
        row = {
            "trial": outcome.trial_id,
            "number": _trial_number(outcome.trial_id),
            "status": status,
            "model": cfg.model.name,
            "loss": cfg.loss.name,
            "ttur_ratio": float(outcome.point[RATIO]),
            "lr_g": cfg.optim.lr_g,
            "lr_d": cfg.optim.lr_d,
            "betas_g": list(cfg.optim.betas_g),
            "betas_d": list(cfg.optim.betas_d),
            "n_critic": cfg.n_critic,
            "seed": cfg.train.seed,
            "steps_run": steps_run,
            "best_fid": min(finite) if finite else None,
            "final_fid": finite[-1] if finite and status != "failed" else None,
            "wall_s": round(float(last.get("time_total_s", 0.0)), 1),
            "error": outcome.error or "",
            "fids": {step: fid for step, fid in scored if math.isfinite(fid)},
        }
        rows.append(row)
    rows.sort(key=lambda row: (row["best_fid"] is None, row["best_fid"] or 0.0, row["trial"]))
    return rows


def _trial_number(trial_id: str) -> Optional[int]:
    """Tune's trial ids end in the trial's number (its place in the generated order): stable across reruns."""
    tail = trial_id.rsplit("_", 1)[-1]
    return int(tail) if tail.isdigit() else None


def write_table(rows: list[dict[str, Any]], path: str | Path) -> Path:
    """``trials.csv``: the rows with one ``fid@<step>`` column per report step."""
    report_steps = sorted({step for row in rows for step in row["fids"]})
    columns = (
        [key for key in rows[0] if key != "fids"] + [f"fid@{step}" for step in report_steps] if rows else ["trial"]
    )
    with atomic_file(path) as tmp, open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        for row in rows:
            flat = {key: _cell(value) for key, value in row.items() if key != "fids"}
            flat.update({f"fid@{step}": _cell(row["fids"].get(step)) for step in report_steps})
            writer.writerow(flat)
    return Path(path)


def _cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, list):
        return " ".join(f"{v:g}" for v in value)
    return value


def sweep_metrics(rows: list[dict[str, Any]], params: Params) -> dict[str, Any]:
    """The DVC metrics of a sweep: the winner, the trials by status and the trial-steps ASHA spent."""
    sweep = params.sweep
    winner = rows[0]
    used, full = sum(row["steps_run"] for row in rows), len(rows) * sweep.steps
    return {
        "best_fid": winner["best_fid"],
        "best": {
            key: winner[key]
            for key in (
                "trial",
                "number",
                "model",
                "loss",
                "ttur_ratio",
                "lr_g",
                "lr_d",
                "betas_g",
                "betas_d",
                "n_critic",
            )
        },
        "trials": len(rows),
        **{status: sum(row["status"] == status for row in rows) for status in STATUSES},
        "trial_steps": used,
        "trial_steps_full": full,
        "trial_steps_saved": round(1 - used / full, 4) if full else 0.0,
        "meta": {
            "search": sweep.search,
            "scheduler": sweep.scheduler,
            "steps": sweep.steps,
            "fid_every": sweep.fid_every,
            "fid_samples": params.gan.train.fid_samples,
            "fid_extractor_mode": "fast",
        },
    }


def winner_overrides(winner: dict[str, Any], params: Params) -> dict[str, Any]:
    """``best.yaml``: the winner's values for the searched and resolved keys, and where they came from."""
    overrides: dict[str, Any] = {
        "loss": {"name": winner["loss"]},
        "optim": {
            "lr_g": winner["lr_g"],
            "lr_d": winner["lr_d"],
            "betas_g": winner["betas_g"],
            "betas_d": winner["betas_d"],
        },
        "train": {"n_critic": winner["n_critic"]},
    }
    if params.sweep.models is not None:
        overrides = {"model": {"name": winner["model"]}, **overrides}
    # Only what a rerun of the same sweep reproduces (Tune's trial ids are random; the number is not), so an
    # unchanged winner leaves this params file, and so train, unchanged. metrics/sweep.json has the Tune id.
    overrides["trial"] = {
        "number": winner["number"],
        "label": label(_point(winner, params)),
        "ttur_ratio": winner["ttur_ratio"],
        "fid": round(winner["best_fid"], 2),
        "steps": winner["steps_run"],
    }
    return overrides


def write_winner(overrides: dict[str, Any], path: str | Path) -> Path:
    header = (
        "# Written by the sweep stage (pipeline/sweep.py): the winning trial's values. The train stage applies\n"
        "# them over params.yaml; `dvc params diff` and `dvc exp show` list them. Empty: no sweep.\n"
    )
    with atomic_file(path) as tmp:
        tmp.write_text(header + (yaml.safe_dump(overrides, sort_keys=False) if overrides else "{}\n"))
    return Path(path)


def write_plots(rows: list[dict[str, Any]], params: Params, directory: str | Path) -> None:
    """FID curves (stopped trials end in a cross), the best-FID heat map, and the curves as CSV for dvc plots."""
    directory = Path(directory)
    series = [
        {
            "label": f"{label(_point(row, params))} ({row['status']})",
            "x": list(row["fids"]),
            "y": list(row["fids"].values()),
            "ended_early": row["status"] != "completed",
        }
        for row in sorted(rows, key=lambda row: row["trial"])
    ]
    if not rows:
        save_lines([], directory / CURVES_PNG, xlabel="step", ylabel="FID", title="sweep disabled")
        save_heatmap([[None]], ["–"], ["–"], directory / HEATMAP_PNG, xlabel="", ylabel="", title="sweep disabled")
    else:
        save_lines(
            series,
            directory / CURVES_PNG,
            xlabel="step",
            ylabel="FID (in-training, fast)",
            title=f"sweep: {len(rows)} trials, {params.sweep.scheduler}",
        )
        _save_best_fid_map(rows, directory / HEATMAP_PNG)
    with atomic_file(directory / CURVES_CSV) as tmp, open(tmp, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["trial", "status", "step", "fid"])
        for row in rows:
            for step, fid in row["fids"].items():
                writer.writerow([label(_point(row, params)), row["status"], step, f"{fid:.6g}"])


def _save_best_fid_map(rows: list[dict[str, Any]], path: Path) -> None:
    """The best FID of each (loss, ratio) cell and how its trial ended; several per cell (models, draws): the best."""
    losses = sorted({row["loss"] for row in rows})
    ratios = sorted({row["ttur_ratio"] for row in rows})
    best: dict[tuple[str, float], dict[str, Any]] = {}
    for row in rows:
        key, current = (row["loss"], row["ttur_ratio"]), best.get((row["loss"], row["ttur_ratio"]))
        if current is None or (
            row["best_fid"] is not None and (current["best_fid"] is None or row["best_fid"] < current["best_fid"])
        ):
            best[key] = row

    def note(row: Optional[dict[str, Any]]) -> str:
        if row is None:
            return ""
        return row["status"] if row["status"] != "stopped" else f"stopped @{row['steps_run']}"

    save_heatmap(
        [[(best.get((loss, ratio)) or {}).get("best_fid") for ratio in ratios] for loss in losses],
        losses,
        [f"{r:g}" for r in ratios],
        path,
        xlabel="TTUR ratio lr_d / lr_g",
        ylabel="loss",
        title="best in-training FID per cell",
        notes=[[note(best.get((loss, ratio))) for ratio in ratios] for loss in losses],
    )


def _point(row: dict[str, Any], params: Params) -> dict[str, Any]:
    return {LOSS: row["loss"], RATIO: row["ttur_ratio"], **({MODEL: row["model"]} if params.sweep.models else {})}
