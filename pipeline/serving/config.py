"""How the model server runs (``ServeConfig``) and the name it serves its model under.

Light on purpose: ``python -m pipeline.serving.serve`` parses its flags into a ``ServeConfig`` before anything
starts; the API (``pipeline.serving.http_api``) and Ray Serve (``pipeline.ray_runtime.serving``) read it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from gans.export import BACKENDS
from pipeline.serving.model_store import POLICIES

MODEL_NAME = "generator"


@dataclass(frozen=True)
class ServeConfig:
    """How the server runs (``python -m pipeline.serving.serve`` flags, ``serve run … key=value`` arguments)."""

    model_base_path: str = "models/generator"
    """Root of the exported versions (params.yaml ``paths.models``)."""
    policy: str = "latest"
    """latest (the newest version only) | all | specific (``versions``)."""
    versions: tuple[int, ...] = ()
    """The versions the ``specific`` policy serves."""
    backend: str = "onnx"
    """onnx (ONNX Runtime) | torchscript. ONNX Runtime measured faster at every batch size (docs/benchmarks.md)."""
    threads: int = 1
    """Inference threads per replica."""
    host: str = "127.0.0.1"
    port: int = 8000
    num_replicas: int = 1
    poll_interval_s: float = 0.5
    """How often each replica looks for new version directories."""
    max_n: int = 64
    """Most images one request may ask for (``n`` or the number of instances)."""
    max_body_bytes: int = 1 << 20
    max_batch_size: int = 16
    """Requests that ``@serve.batch`` runs through the model together."""
    batch_wait_timeout_s: float = 0.002
    address: Optional[str] = None
    """A Ray cluster to join; null starts a private local Ray."""

    def __post_init__(self) -> None:
        for key in ("threads", "num_replicas", "max_n", "max_body_bytes", "max_batch_size"):
            if getattr(self, key) < 1:
                raise ValueError(f"serve {key} must be at least 1, not {getattr(self, key)}.")
        if self.poll_interval_s <= 0 or self.batch_wait_timeout_s < 0:
            raise ValueError("serve poll_interval_s must be > 0 and batch_wait_timeout_s ≥ 0.")
        if self.policy == "specific" and not self.versions:
            raise ValueError("The 'specific' version policy needs the versions to serve (e.g. --versions 1 3).")
        if self.policy not in POLICIES:
            raise ValueError(f"serve policy must be one of {', '.join(POLICIES)}, not {self.policy!r}.")
        if self.backend not in BACKENDS:
            raise ValueError(f"serve backend must be one of {', '.join(BACKENDS)}, not {self.backend!r}.")
        object.__setattr__(self, "versions", tuple(int(v) for v in self.versions))
