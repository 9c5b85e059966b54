"""A small per-user cache of results that depend only on the machine and their inputs (timings, scores).

Entries live in JSON files under ``cache_dir()``, one file per kind, keyed by a digest of everything the
result depends on (``digest``). A missing or unreadable cache is a miss, and a cache that cannot be written
is skipped: nothing here can fail a run.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Optional

from gans.atomic import atomic_file

CACHE_ENV = "GAN_PIPELINE_CACHE"
"""Environment variable naming the cache directory (default ``$XDG_CACHE_HOME/gan-pipeline``)."""


def cache_dir() -> Path:
    """``$GAN_PIPELINE_CACHE``, else ``$XDG_CACHE_HOME/gan-pipeline``, else ``~/.cache/gan-pipeline``."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "gan-pipeline"


def digest(what: Any) -> str:
    """A short stable digest of a JSON-able description (other values by their ``str``)."""
    return hashlib.sha256(json.dumps(what, sort_keys=True, default=str).encode()).hexdigest()[:20]


def read_entry(filename: str, key: str) -> Optional[Any]:
    """The value stored under ``key`` in ``filename``, or None."""
    try:
        return json.loads((cache_dir() / filename).read_text())[key]["value"]
    except (OSError, ValueError, KeyError, TypeError):
        return None


def write_entry(filename: str, key: str, value: Any, description: str) -> None:
    """Store ``value`` (JSON-able) under ``key`` in ``filename``, with a description for people reading the file."""
    path = cache_dir() / filename
    try:
        entries = json.loads(path.read_text()) if path.is_file() else {}
    except (OSError, ValueError):
        entries = {}
    entries[key] = {"what": description, "value": value}
    try:
        with atomic_file(path) as tmp:
            tmp.write_text(json.dumps(entries, indent=1))
    except OSError:
        pass
