"""What the model server accepts: a request's JSON body and the latents it asks for, or ``BadRequest``.

A body is ``{"instances": [[z…], …]}`` or ``{"seed": s, "n": k}`` (``pipeline.serving.http_api`` lists the
routes); anything else is refused with an HTTP status and one sentence, before any model runs.
"""

from __future__ import annotations

import json
from typing import Any, Optional

import numpy as np
import torch
from fastapi import Request


class BadRequest(Exception):
    """A request the server refuses: an HTTP error status (4xx; 503 while a replica starts) and one sentence."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def seeded_latents(seed: int, n: int, z_dim: int) -> torch.Tensor:
    """[n, z_dim] standard-normal latents of ``seed`` (``torch.Generator``: the same on every machine)."""
    return torch.randn(n, z_dim, generator=torch.Generator().manual_seed(seed))


def _integer(body: dict, key: str, low: int, high: int, default: Optional[int] = None) -> int:
    value = body.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        shown = json.dumps(value)
        shown = shown if len(shown) <= 40 else shown[:37] + "..."
        raise BadRequest(400, f"'{key}' must be an integer from {low} to {high}, not {shown}.")
    return value


def latents_from_body(body: Any, z_dim: int, max_n: int) -> np.ndarray:
    """The request's z as float32 [n, z_dim], or ``BadRequest`` naming what is wrong."""
    if not isinstance(body, dict) or ("instances" in body) == ("seed" in body):
        raise BadRequest(400, 'The body must be a JSON object with either "instances" or "seed" (and "n").')
    if "seed" in body:
        n = _integer(body, "n", 1, max_n, default=1)
        return seeded_latents(_integer(body, "seed", 0, 2**63 - 1), n, z_dim).numpy()
    instances = body["instances"]
    if not isinstance(instances, list) or not instances:
        raise BadRequest(400, f'"instances" must be a non-empty list of z vectors of {z_dim} numbers.')
    if len(instances) > max_n:
        raise BadRequest(400, f'"instances" holds {len(instances)} z vectors; at most {max_n} per request.')
    for row in instances:
        if not isinstance(row, list) or len(row) != z_dim:
            got = f"a list of {len(row)}" if isinstance(row, list) else f"a value of type {type(row).__name__}"
            raise BadRequest(400, f"Each instance must be a list of {z_dim} numbers (z_dim); got {got}.")
        if not all(type(x) in (int, float) for x in row):
            raise BadRequest(400, "Each z value must be a number (no strings, booleans or nulls).")
    try:
        with np.errstate(over="ignore"):
            z = np.asarray(instances, dtype=np.float32)
    except OverflowError:  # an integer beyond any float
        z = np.full((1,), np.inf, np.float32)
    if not np.isfinite(z).all():
        raise BadRequest(400, "Every z value must be finite (no NaN or Infinity, and within float32's range).")
    return z


async def read_json(request: Request, max_bytes: int) -> Any:
    """The JSON body of ``request``, refusing a wrong content type, an oversized body and malformed JSON."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != "application/json":
        raise BadRequest(415, f"The body must be sent as application/json (got {content_type or 'no Content-Type'}).")
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > max_bytes:
        raise BadRequest(413, f"The body is {int(declared)} bytes; at most {max_bytes} are accepted.")
    body = await request.body()
    if len(body) > max_bytes:
        raise BadRequest(413, f"The body is {len(body)} bytes; at most {max_bytes} are accepted.")
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError) as error:
        raise BadRequest(400, f"The body is not valid JSON ({error}).") from None
    except RecursionError:
        raise BadRequest(400, "The body nests JSON arrays or objects too deeply.") from None
