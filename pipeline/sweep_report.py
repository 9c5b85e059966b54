"""The sweep stage's outputs, from its trials' outcomes: the trials table, the DVC metrics, the plots, the winner.

``summarize`` turns ``sweep_space.TrialOutcome`` records into one row per trial; ``rank_configurations`` groups the
rows by configuration (the same values over ``sweep.seeds``) and ranks them by ``sweep.metric`` at the last step
all their trials reached, averaged over the seeds (a configuration that ASHA stopped ranks below those that
trained longer), each with its noise: the bootstrap std of that report, or with several seeds the standard
error of their mean.
``sweep_metrics`` states the winner's margin over the runner-up against that noise, at the runner-up's step
when ASHA stopped it earlier; ``write_table`` (``trials.csv``), ``write_plots`` (FID curves, the heat map of the ranking figure, the curves as CSV) and
``winner_overrides``/``write_winner`` (``best.yaml``, a params file of the train stage) write the rest.
"""

from __future__ import annotations

import csv
import math
import statistics
from pathlib import Path
from typing import Any, Optional

import yaml

from gans.atomic import atomic_file
from gans.plots import save_heatmap, save_lines
from pipeline.params import Params
from pipeline.sweep_space import LOSS, MODEL, RATIO, SEED, TrialOutcome, trial_config

CURVES_PNG, HEATMAP_PNG, CURVES_CSV = "fid_curves.png", "fid_heatmap.png", "fid_curves.csv"
STATUSES = ("completed", "stopped", "failed")
RESOLVING_SIGMAS = 2.0
"""A margin is resolved when it exceeds this many standard deviations of the difference (about 95 %)."""


def label(point: dict[str, Any]) -> str:
    """A trial's short name: "hinge ×4" (with the model when models are searched, the seed when seeds are)."""
    text = f"{point[LOSS]} ×{float(point[RATIO]):g}"
    text = f"{point[MODEL]} {text}" if MODEL in point else text
    return f"{text} seed {point[SEED]}" if SEED in point else text


def summarize(outcomes: list[TrialOutcome], params: Params) -> list[dict[str, Any]]:
    """One row per trial, the winner's first: swept and resolved values, status, the FID at every report, its
    ranking figure ``score`` (``sweep.metric`` at its last report) with that report's bootstrap noise
    ``score_std``, and its configuration's ``rank``, ``config_score`` (mean over seeds at the last step all of
    them reached) and ``config_noise``.
    ``fids`` and ``scores`` (``sweep.metric`` and its noise at every report, by step) are not columns of the
    table."""
    metric, rows = params.sweep.metric, []
    for outcome in outcomes:
        cfg = trial_config(params.gan, params.sweep, outcome.point)
        reports = [r for r in outcome.reports if "fid" in r and r.get("step") is not None]
        scored = [(int(r["step"]), float(r["fid"])) for r in reports]
        figures = {int(r["step"]): (float(r[metric]), _finite(r.get(f"{metric}_std"))) for r in reports if metric in r}
        finite = [fid for _, fid in scored if math.isfinite(fid)]
        steps_run = max((step for step, _ in scored), default=0)
        status = "failed" if outcome.error else "completed" if steps_run >= params.sweep.steps else "stopped"
        last = outcome.reports[-1] if outcome.reports else {}
        final = reports[-1] if reports and status != "failed" else {}
        score = final.get(metric)
        rows.append(
            {
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
                "score": float(score) if score is not None and math.isfinite(score) else None,
                "score_std": final.get(f"{metric}_std"),
                "best_fid": min(finite) if finite else None,
                "final_fid": finite[-1] if finite and status != "failed" else None,
                "wall_s": round(float(last.get("time_total_s", 0.0)), 1),
                "error": outcome.error or "",
                "fids": {step: fid for step, fid in scored if math.isfinite(fid)},
                "scores": {step: figure for step, figure in figures.items() if math.isfinite(figure[0])},
            }
        )
    for rank, configuration in enumerate(rank_configurations(rows), start=1):
        for row in configuration["rows"]:
            row.update(rank=rank, config_score=configuration["score"], config_noise=configuration["noise"])
    rows.sort(key=lambda row: (row["rank"], *_row_order(row), row["trial"]))
    return rows


def configuration_key(row: dict[str, Any]) -> tuple:
    """What a configuration is: everything a trial's row says about it except its seed."""
    return (row["model"], row["loss"], row["ttur_ratio"], row["lr_g"], tuple(row["betas_g"]), row["n_critic"])


def rank_configurations(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The configurations, best first: ``steps`` (the fewest any of its scored trials ran), ``score`` (the mean
    over its seeds of each trial's report at ``steps``, so seeds that ASHA stopped at different rungs are
    compared at one step), ``noise`` (one seed: that report's bootstrap std; several: their standard error) and
    its ``rows`` (the longest-trained and lowest first). Longer-trained configurations rank first (ASHA stopped
    the others on an earlier rung), then the lower score; a configuration without a score ranks last."""
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault(configuration_key(row), []).append(row)
    configurations = []
    for members in groups.values():
        scored = [row for row in members if row["score"] is not None]
        steps = min((row["steps_run"] for row in scored), default=0)
        reports = _reports_at(scored, steps)
        score, noise = _figure(reports)
        configurations.append(
            {
                "rows": sorted(members, key=_row_order),
                "score": score,
                "noise": noise,
                "seeds": len(reports),
                "steps": steps,
            }
        )
    configurations.sort(key=lambda c: (c["score"] is None, -c["steps"], c["score"] or 0.0))
    return configurations


def _reports_at(rows: list[dict[str, Any]], step: int) -> list[tuple[float, Optional[float]]]:
    """The (value, bootstrap std) of each scored row's last report at or before ``step``; rows without one are
    left out."""
    reports = [_at(row["scores"], step) for row in rows if row["score"] is not None]
    return [report for report in reports if report is not None]


def _figure(reports: list[tuple[float, Optional[float]]]) -> tuple[Optional[float], Optional[float]]:
    """A configuration's figure from its seeds' reports (value, bootstrap std): their mean, and as its noise the
    one report's std, or with several seeds their standard error."""
    if not reports:
        return None, None
    values = [value for value, _ in reports]
    if len(values) > 1:
        return statistics.mean(values), statistics.stdev(values) / math.sqrt(len(values))
    return values[0], reports[0][1]


def _figure_at(configuration: dict[str, Any], step: int) -> tuple[Optional[float], Optional[float]]:
    """The configuration's figure and noise from its scored trials' last reports at or before ``step``."""
    return _figure(_reports_at(configuration["rows"], step))


def _finite(value: Any) -> Optional[float]:
    """``value`` as a float when it is a finite number, else None (a missing or NaN noise)."""
    return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else None


def _at(by_step: dict[int, Any], step: int) -> Any:
    """The value of the last report at or before ``step`` (a trial reports at the same steps as the others)."""
    earlier = [s for s in by_step if s <= step]
    return by_step[max(earlier)] if earlier else None


def _row_order(row: dict[str, Any]) -> tuple:
    """Scored before unscored, longer-trained first, then the lower last report."""
    return (row["score"] is None, -row["steps_run"], row["score"] or 0.0)


def _trial_number(trial_id: str) -> Optional[int]:
    """Tune's trial ids end in the trial's number (its place in the generated order): stable across reruns."""
    tail = trial_id.rsplit("_", 1)[-1]
    return int(tail) if tail.isdigit() else None


def write_table(rows: list[dict[str, Any]], path: str | Path) -> Path:
    """``trials.csv``: the rows with one ``fid@<step>`` column per report step."""
    report_steps = sorted({step for row in rows for step in row["fids"]})
    columns = (
        [key for key in rows[0] if key not in ("fids", "scores")] + [f"fid@{step}" for step in report_steps]
        if rows
        else ["trial"]
    )
    with atomic_file(path) as tmp, open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        for row in rows:
            flat = {key: _cell(value) for key, value in row.items() if key not in ("fids", "scores")}
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


def margin(configurations: list[dict[str, Any]], params: Params) -> dict[str, Any]:
    """The winner's lead over the runner-up against the noise of that difference (``resolved`` beyond 2σ).

    Both are compared at the same step, ``margin_step``: the runner-up's ``steps``. When ASHA stopped the
    runner-up on an earlier rung, that is the winner's report at that rung, not its last one; without a winner's
    report there, the margin is None."""
    unknown = {"margin": None, "margin_noise": None, "margin_step": None, "margin_resolved": None}
    if len(configurations) < 2 or configurations[1]["score"] is None:
        return {"runner_up": None, **unknown}
    winner, runner_up = configurations[0], configurations[1]
    step = runner_up["steps"]
    score, winner_noise = (winner["score"], winner["noise"]) if step >= winner["steps"] else _figure_at(winner, step)
    about = {
        "label": _configuration_label(runner_up, params),
        "score": runner_up["score"],
        "noise": runner_up["noise"],
        "steps": runner_up["steps"],
    }
    if score is None:
        return {"runner_up": about, **unknown}
    lead = runner_up["score"] - score
    noise = math.hypot(winner_noise or 0.0, runner_up["noise"] or 0.0)
    return {
        "runner_up": about,
        "margin": lead,
        "margin_noise": noise,
        "margin_step": step,
        "margin_resolved": bool(lead > RESOLVING_SIGMAS * noise),
    }


def margin_sentence(metrics: dict[str, Any]) -> Optional[str]:
    """One sentence when the winner's margin over the runner-up is not resolved (within the noise, or the winner
    behind where they were compared), else None."""
    if metrics.get("margin_resolved") is not False:
        return None
    runner_up, name, lead = metrics["runner_up"], metrics["metric"].upper(), metrics["margin"]
    where = f" at step {metrics['margin_step']}" if metrics["margin_step"] < metrics["best"]["steps"] else ""
    noise = f"(±{metrics['margin_noise']:.2g} for the difference, {RESOLVING_SIGMAS:g}σ needed)"
    if lead < -RESOLVING_SIGMAS * metrics["margin_noise"]:
        verdict = f"beyond the noise {noise}: it ranks first only because it trained longer"
    else:
        verdict = f"within the noise {noise}: the sweep cannot tell them apart"
    return (
        f"The winner {'leads' if lead >= 0 else 'trails'} {runner_up['label']} by {abs(lead):.4g} {name}{where}, "
        f"{verdict}; repeat each over sweep.seeds or raise sweep.steps before trusting the order."
    )


def sweep_metrics(rows: list[dict[str, Any]], params: Params) -> dict[str, Any]:
    """The DVC metrics of a sweep: the winner with its noise and margin, the trials by status, the trial-steps
    ASHA spent."""
    sweep = params.sweep
    configurations = rank_configurations(rows)
    best, winner = configurations[0], configurations[0]["rows"][0]
    used, full = sum(row["steps_run"] for row in rows), len(rows) * sweep.steps
    at_steps = [_at(row["fids"], best["steps"]) for row in best["rows"] if row["score"] is not None]
    fids = [fid for fid in at_steps if fid is not None]
    return {
        "metric": sweep.metric,
        "best_score": best["score"],
        "best_noise": best["noise"],
        "best_fid": statistics.mean(fids) if fids else None,
        "best": {
            **{
                key: winner[key]
                for key in ("trial", "number", "model", "loss", "ttur_ratio", "lr_g", "lr_d", "betas_g", "betas_d")
            },
            "n_critic": winner["n_critic"],
            "label": _configuration_label(best, params),
            "seeds": best["seeds"],
            "steps": best["steps"],
        },
        **margin(configurations, params),
        "configurations": len(configurations),
        "ranking": [
            {
                "label": _configuration_label(c, params),
                "score": c["score"],
                "noise": c["noise"],
                "seeds": c["seeds"],
                "steps": c["steps"],
            }
            for c in configurations
        ],
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
            "report_steps": list(sweep.report_steps()),
            "fid_samples": params.gan.train.fid_samples,
            "fid_extractor_mode": "fast",
            "ranking": f"mean over seeds of their {sweep.metric} at the last step all of them reached",
            "noise": "one seed: the report's bootstrap std (real and generated features); several: standard error",
            "seeds": list(sweep.seeds or (params.gan.train.seed,)),
        },
    }


def _configuration_label(configuration: dict[str, Any], params: Params) -> str:
    """ "hinge ×4": the configuration's label (without a seed)."""
    return label(_point(configuration["rows"][0], params))


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
        "fid": None if winner["final_fid"] is None else round(winner["final_fid"], 2),
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
    """FID curves (stopped trials end in a cross), the ranking figure's heat map, and the curves as CSV for dvc plots."""
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
        _save_score_map(rows, params, directory / HEATMAP_PNG)
    with atomic_file(directory / CURVES_CSV) as tmp, open(tmp, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["trial", "status", "step", "fid"])
        for row in rows:
            for step, fid in row["fids"].items():
                writer.writerow([label(_point(row, params)), row["status"], step, f"{fid:.6g}"])


def _save_score_map(rows: list[dict[str, Any]], params: Params, path: Path) -> None:
    """Each (loss, ratio) cell's ranking figure (``rank_configurations``) and how its trials ended; with several
    models, the cell's best."""
    losses = sorted({row["loss"] for row in rows})
    ratios = sorted({row["ttur_ratio"] for row in rows})
    cells: dict[tuple[str, float], dict[str, Any]] = {}
    for configuration in reversed(rank_configurations(rows)):  # the better-ranked configuration of a cell wins
        row = configuration["rows"][0]
        cells[(row["loss"], row["ttur_ratio"])] = configuration

    def note(configuration: Optional[dict[str, Any]]) -> str:
        if configuration is None:
            return ""
        statuses = sorted({row["status"] for row in configuration["rows"]})
        return " ".join(s if s != "stopped" else f"stopped @{configuration['steps']}" for s in statuses)

    save_heatmap(
        [[(cells.get((loss, ratio)) or {}).get("score") for ratio in ratios] for loss in losses],
        losses,
        [f"{r:g}" for r in ratios],
        path,
        xlabel="TTUR ratio lr_d / lr_g",
        ylabel="loss",
        title=f"{params.sweep.metric.upper()} at the last step (mean over seeds)",
        notes=[[note(cells.get((loss, ratio))) for ratio in ratios] for loss in losses],
    )


def _point(row: dict[str, Any], params: Params) -> dict[str, Any]:
    return {LOSS: row["loss"], RATIO: row["ttur_ratio"], **({MODEL: row["model"]} if params.sweep.models else {})}
