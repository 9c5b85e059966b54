"""Stage-less entry point of the model server: ``python -m pipeline.serving.serve`` serves the exported generators.

    python -m pipeline.serving.serve               # params.yaml's paths.models, policy latest, http://127.0.0.1:8000/
    python -m pipeline.serving.serve --policy all --port 8080
    python -m pipeline.serving.serve --policy specific --versions 2 3 --backend torchscript
    serve run pipeline.serving.serve:app_builder model_base_path=models/generator policy=latest

It serves ``model_base_path/<int version>/`` as the export stage writes them (``generator.onnx``,
``generator.pt``, ``signature.json``). The API is in ``pipeline.serving.http_api``, the version rules in
``pipeline.serving.model_store``, Ray Serve in ``pipeline.ray_runtime.serving``. A new version directory is
loaded beside the served ones and swapped in by reference: no request fails or stalls while versions change.
"""

from __future__ import annotations

import argparse
from typing import Optional

from gans.export import BACKENDS
from pipeline.ray_runtime.serving import app_builder, serve_forever  # noqa: F401 (app_builder: for `serve run`)
from pipeline.serving.config import ServeConfig
from pipeline.serving.model_store import POLICIES


def parse_args(argv: Optional[list[str]] = None) -> ServeConfig:
    defaults = ServeConfig(model_base_path=_models_path())
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-base-path", default=defaults.model_base_path)
    parser.add_argument("--policy", choices=POLICIES, default=defaults.policy)
    parser.add_argument(
        "--versions", type=int, nargs="*", default=list(defaults.versions), help="for --policy specific"
    )
    parser.add_argument("--backend", choices=BACKENDS, default=defaults.backend)
    parser.add_argument("--threads", type=int, default=defaults.threads)
    parser.add_argument("--host", default=defaults.host)
    parser.add_argument("--port", type=int, default=defaults.port)
    parser.add_argument("--num-replicas", type=int, default=defaults.num_replicas)
    parser.add_argument("--poll-interval-s", type=float, default=defaults.poll_interval_s)
    parser.add_argument("--max-n", type=int, default=defaults.max_n)
    parser.add_argument("--address", default=None, help="Ray cluster to join (default: a private local Ray)")
    args = parser.parse_args(argv)
    return ServeConfig(**{k: (tuple(v) if k == "versions" else v) for k, v in vars(args).items()})


def _models_path() -> str:
    """params.yaml's ``paths.models`` when run from the project; the built-in default elsewhere."""
    from gans.errors import UserError
    from pipeline.params import load_params

    try:
        return load_params().paths.models
    except UserError:  # no params.yaml here
        return ServeConfig.model_base_path


def main(argv: Optional[list[str]] = None) -> None:
    serve_forever(parse_args(argv))


if __name__ == "__main__":
    main()
