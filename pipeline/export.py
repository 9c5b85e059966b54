"""Stage ``export``: the generator evaluate selected, as TorchScript + ONNX + signature in ``paths.models/<version>/``.

The signature records where the weights came from: their step and FIDs (exact, and in-training), the
loss and TTUR ratio they were trained with, and the sweep trial that chose those settings.
"""

from __future__ import annotations

import json
from pathlib import Path

from gans import checkpoint
from gans.ema import standing_statistics
from gans.errors import UserError
from gans.export import SIGNATURE_FILE, export_generator
from pipeline.params import TRAIN_RUN_FILE, load_params, print_config, run_stage


def main() -> None:
    params = load_params()
    print_config("export", params.export)
    state = checkpoint.load(Path(params.paths.train) / checkpoint.FILENAME)
    metrics_file = Path(params.paths.eval_metrics)
    if not metrics_file.is_file():
        raise UserError(f"No {metrics_file}; run the evaluate stage first (it selects the generator to export).")
    evaluation = json.loads(metrics_file.read_text())
    selected = evaluation.get("selected") or {"weights": "G_ema", "step": int(state["step"])}
    run_file = Path(params.paths.train) / TRAIN_RUN_FILE
    run_info = json.loads(run_file.read_text()) if run_file.is_file() else {}
    cfg = state["config"]
    generator = checkpoint.load_generator(state, selected["weights"])
    if selected.get("standing_stats"):  # the BatchNorm statistics evaluate scored with
        standing_statistics(generator, cfg.model.z_dim, **selected["standing_stats"])
    target = export_generator(
        generator,
        cfg=cfg,
        root=params.paths.models,
        version=params.export.version,
        atol=params.export.parity_atol,
        extra={
            "step": int(selected["step"]),
            "weights": selected["weights"],
            "fid": evaluation.get("fid"),
            "fid_in_training": selected.get("fid_in_training"),
            "fid_initial": evaluation.get("fid_initial"),
            "fid_std": evaluation.get("fid_std"),
            "standing_stats": selected.get("standing_stats"),
            "loss": cfg.loss.name,
            "ttur_ratio": cfg.optim.lr_d / cfg.optim.lr_g,
            "lr_g": cfg.optim.lr_g,
            "lr_d": cfg.optim.lr_d,
            "sweep_trial": run_info.get("sweep_trial") or None,
            "training_precision": state.get("precision"),
        },
    )
    signature = json.loads((target / SIGNATURE_FILE).read_text())
    files, diffs = " + ".join(signature["files"].values()), signature["parity"]
    print(
        f"[export] generator ({selected['weights']}, step {selected['step']}, FID {evaluation.get('fid', float('nan')):.2f}) "
        f"→ {target}: {files} (max |Δ| vs eager: TorchScript {diffs['torchscript']:.1e}, ONNX {diffs['onnx']:.1e})",
        flush=True,
    )


if __name__ == "__main__":
    run_stage("export", main)
