"""Full-state checkpoints: written atomically, read with ``weights_only=True``.

A checkpoint is a dict ``format, config, step, world_size, G, D, G_ema, G_init, opt_g, opt_d, scalers, rng,
fixed_z, history``. In memory ``config`` is the run's ``GANConfig``; on disk it is stored as a plain dict
(so loading executes no pickled code) and ``load`` turns it back into a ``GANConfig``, the one place where
that happens.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from gans.atomic import atomic_file
from gans.config import ConfigError, GANConfig
from gans.errors import UserError

FORMAT = "gans-checkpoint/1"
FILENAME = "checkpoint.pt"


class CheckpointError(UserError):
    """A checkpoint file is missing, unreadable or of another format."""


def save(state: dict[str, Any], path: str | os.PathLike) -> Path:
    """Write ``state`` to ``path`` through a temporary file and an atomic rename; equal states give equal bytes."""
    stored = {"format": FORMAT, **state, "config": state["config"].to_dict()}
    with atomic_file(path) as tmp, open(tmp, "wb") as file:
        # Through a file object torch names the archive "archive"; given a path it would use the (temp) file name.
        torch.save(stored, file)
    return Path(path)


def load(path: str | os.PathLike) -> dict[str, Any]:
    """Read a checkpoint written by ``save`` onto the CPU (no pickled code is executed)."""
    path = Path(path)
    if path.is_dir():
        path = path / FILENAME
    if not path.is_file():
        raise CheckpointError(f"No checkpoint at {path}; run the train stage first.")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises several types for corrupt files
        raise CheckpointError(f"Checkpoint {path} could not be read ({error}); delete it and retrain.") from error
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a {FORMAT} checkpoint.")
    state["config"] = stored_config(state["config"], path)
    return state


def stored_config(stored: dict[str, Any], path: str | os.PathLike = "the checkpoint") -> GANConfig:
    """The ``GANConfig`` of a config stored in a checkpoint (its sections as plain dicts)."""
    try:
        return GANConfig.from_dict(stored)
    except ConfigError as error:
        raise CheckpointError(
            f"{path} holds a config this code no longer accepts ({str(error).rstrip('.')}); retrain."
        ) from error


GENERATOR_WEIGHTS = ("G_ema", "G", "G_init", "best")


def load_generator(state: dict[str, Any], key: str = "G_ema") -> torch.nn.Module:
    """Rebuild a generator from a checkpoint dict, in eval mode.

    ``key``: ``G_ema`` (default), ``G``, ``G_init``, or ``best`` (the G_ema weights with the best in-training FID).
    """
    from gans.models import build_models

    if key not in GENERATOR_WEIGHTS:
        raise CheckpointError(f"Unknown generator weights {key!r}; allowed values: {', '.join(GENERATOR_WEIGHTS)}.")
    weights = state[key] if key != "best" else (state.get("best") or {}).get("G_ema")
    if weights is None:
        raise CheckpointError(
            f"The checkpoint holds no {key!r} generator (train.fid_every was 0 or no score was taken)."
        )
    generator, _ = build_models(state["config"])
    generator.load_state_dict(weights)
    return generator.eval()
