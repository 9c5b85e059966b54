"""Stage ``export``: the EMA generator as TorchScript + signature in ``paths.models/<version>/``."""

from __future__ import annotations

from pathlib import Path

from gans import checkpoint
from gans.export import export_generator
from pipeline.params import load_params, print_config, run_stage


def main() -> None:
    params = load_params()
    print_config("export", params.export)
    state = checkpoint.load(Path(params.paths.train) / checkpoint.FILENAME)
    target = export_generator(
        checkpoint.load_generator(state, "G_ema"),
        cfg=state["config"],
        root=params.paths.models,
        version=params.export.version,
        atol=params.export.parity_atol,
        extra={"step": int(state["step"]), "weights": "G_ema"},
    )
    print(f"[export] generator → {target}", flush=True)


if __name__ == "__main__":
    run_stage("export", main)
