"""Print where a run's results are (``make run`` ends with this)."""

from __future__ import annotations

import json
from pathlib import Path

from gans.export import LATEST_FILE
from pipeline.params import EVAL_CURVES_FILE, EVAL_GRID_FILE, load_params


def main() -> None:
    paths = load_params().paths
    metrics_path = Path(paths.eval_metrics)
    latest = Path(paths.models) / LATEST_FILE
    print("\nResults")
    if metrics_path.is_file():
        metrics = json.loads(metrics_path.read_text())
        print(f"  metrics      {metrics_path}  (FID {metrics['fid']:.2f}, initial {metrics['fid_initial']:.2f})")
    sweep_path = Path(paths.sweep_metrics)
    if sweep_path.is_file() and json.loads(sweep_path.read_text()).get("trials"):
        sweep = json.loads(sweep_path.read_text())
        best = sweep["best"]
        print(
            f"  sweep        {paths.sweep_trials}, {paths.sweep_plots}/  ({sweep['trials']} trials, "
            f"{sweep['stopped']} stopped early, {sweep['failed']} failed; winner {best['loss']} ×{best['ttur_ratio']:g})"
        )
    print(f"  sample grid  {Path(paths.eval_plots) / EVAL_GRID_FILE}")
    print(f"  loss curves  {Path(paths.eval_plots) / EVAL_CURVES_FILE}")
    print(f"  dataset      {Path(paths.prepared) / 'preview.png'}")
    if latest.is_file():
        print(
            f"  generator    {Path(paths.models) / latest.read_text().strip()}  (TorchScript + ONNX + signature.json)"
        )
        print(
            "  serve it:    python -m pipeline.serving.serve   (http://127.0.0.1:8000/; README: Serving the generator)"
        )
    print("  compare runs: dvc metrics diff | dvc exp show | dvc plots diff")


if __name__ == "__main__":
    main()
