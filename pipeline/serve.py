"""Stage-less entry point of the model server: ``python -m pipeline.serve`` serves the exported generators.

    python -m pipeline.serve                       # params.yaml's paths.models, policy latest, http://127.0.0.1:8000/
    python -m pipeline.serve --policy all --port 8080
    python -m pipeline.serve --policy specific --versions 2 3 --backend torchscript
    serve run pipeline.serve:app_builder model_base_path=models/generator policy=latest

It serves ``model_base_path/<int version>/`` as the export stage writes them (``generator.onnx``,
``generator.pt``, ``signature.json``). The API is in ``pipeline.http_api``, the version rules in
``pipeline.model_store``, Ray Serve in ``pipeline.ray_runtime.serving``. A new version directory is loaded
beside the served ones and swapped in by reference: no request fails or stalls while versions change.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from typing import Iterator, Optional

from gans.export import BACKENDS
from pipeline.http_api import MODEL_NAME, ServeConfig
from pipeline.model_store import POLICIES
from pipeline.ray_runtime.serving import app_builder, serve_forever  # noqa: F401 (app_builder: for `serve run`)


def parse_args(argv: Optional[list[str]] = None) -> ServeConfig:
    defaults = ServeConfig(model_base_path=_models_path())
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-base-path", default=defaults.model_base_path)
    parser.add_argument("--policy", choices=POLICIES, default=defaults.policy)
    parser.add_argument("--versions", type=int, nargs="*", default=list(defaults.versions), help="for --policy specific")
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


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextlib.contextmanager
def server_process(model_base_path: str | os.PathLike, *flags: str, port: Optional[int] = None,
                   timeout_s: float = 180) -> Iterator[str]:
    """Run ``python -m pipeline.serve`` in a child process until the block ends; yields its base URL.

    Ready means ``GET /v1/models/generator`` lists an AVAILABLE version. The child (and its private Ray)
    is stopped with SIGINT, then killed if it has not ended within 30 s.
    """
    port = port or free_port()
    url = f"http://127.0.0.1:{port}"
    command = [sys.executable, "-m", "pipeline.serve", "--model-base-path", str(model_base_path), "--port", str(port), *flags]
    child = subprocess.Popen(command, env={**os.environ, "RAY_USAGE_STATS_ENABLED": "0"})
    try:
        deadline = time.time() + timeout_s
        while True:
            if child.poll() is not None:
                raise RuntimeError(f"The model server exited with code {child.returncode} before it was ready.")
            try:
                with urllib.request.urlopen(f"{url}/v1/models/{MODEL_NAME}", timeout=5) as response:
                    rows = json.loads(response.read())["model_version_status"]
                if any(row["state"] == "AVAILABLE" for row in rows):
                    break
            except (OSError, ValueError, KeyError, http.client.HTTPException):  # not up yet
                pass
            if time.time() > deadline:
                raise RuntimeError(f"The model server was not ready within {timeout_s:.0f} s.")
            time.sleep(0.5)
        yield url
    finally:
        if child.poll() is None:
            child.send_signal(signal.SIGINT)
            try:
                child.wait(timeout=30)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()


if __name__ == "__main__":
    main()
