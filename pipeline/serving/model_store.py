"""The versions a model server holds: TF Serving's version policy, loaded new-before-old, swapped by reference.

Exported generators live in ``base/<int version>/`` (``gans.export``; each directory appears whole, by
rename). A ``ModelStore`` loads the versions its policy names and keeps them in one immutable mapping;
``refresh()`` (called by a watcher thread) loads any new version *beside* the served ones, warms it up,
and only then replaces the mapping in one assignment, so a request in flight keeps the model it started
with and no request ever waits for a load. Versions the policy no longer names are dropped afterwards.

No Ray and no HTTP here: the Ray Serve deployment (``pipeline.ray_runtime.serving``) holds one store per replica.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from pathlib import Path
from types import MappingProxyType
from typing import Any, Callable, Mapping, Optional

import numpy as np

from gans.errors import UserError
from gans.export import BACKENDS, SIGNATURE_FILE, load_backend

POLICIES = ("latest", "all", "specific")


log = logging.getLogger(__name__)


class UnknownVersion(UserError):
    """A request named a version the server does not serve."""


@dataclasses.dataclass(frozen=True)
class ServedVersion:
    """One loaded version: its generator (z [N, z_dim] float32 → images [N, C, R, R] float32) and signature."""

    version: int
    generate: Callable[[np.ndarray], np.ndarray]
    signature: Mapping[str, Any]

    @property
    def z_dim(self) -> int:
        return int(self.signature["z_dim"])


def is_version_name(name: str) -> bool:
    """A version directory's name: ASCII digits ("²" is a digit to Python, and int() refuses it)."""
    return name.isascii() and name.isdigit() and len(name) <= 18


def versions_on_disk(base: Path) -> list[int]:
    """Integer-named version directories under ``base`` that hold a signature, ascending."""
    if not base.is_dir():
        return []
    return sorted(int(p.name) for p in base.iterdir() if is_version_name(p.name) and (p / SIGNATURE_FILE).is_file())


def _contents(directory: Path) -> tuple:
    """What a version directory holds now (names, sizes, mtimes): a failed load is retried when it changes."""
    try:
        return tuple(sorted((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in directory.iterdir()))
    except OSError:
        return ()


def wanted_versions(available: list[int], policy: str, specific: tuple[int, ...] = ()) -> list[int]:
    """The versions ``policy`` serves out of ``available`` (TF Serving's ``latest`` serves the newest one)."""
    if policy == "latest":
        return available[-1:]
    if policy == "all":
        return list(available)
    if policy == "specific":
        return [v for v in available if v in set(specific)]
    raise UserError(f"Unknown version policy {policy!r}; choose one of {', '.join(POLICIES)}.")


class ModelStore:
    """The served versions of the generators under ``base``, kept current by ``refresh()``."""

    def __init__(
        self,
        base: str | Path,
        policy: str = "latest",
        specific: tuple[int, ...] = (),
        backend: str = "onnx",
        threads: Optional[int] = None,
    ) -> None:
        if policy not in POLICIES:
            raise UserError(f"Unknown version policy {policy!r}; choose one of {', '.join(POLICIES)}.")
        if policy == "specific" and not specific:
            raise UserError("The 'specific' version policy needs the versions to serve (e.g. --versions 1 3).")
        if backend not in BACKENDS:
            raise UserError(f"Unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}.")
        self.base, self.policy, self.specific = Path(base), policy, tuple(int(v) for v in specific)
        self.backend, self.threads = backend, threads
        self._served: Mapping[int, ServedVersion] = MappingProxyType({})
        self._failed: dict[int, tuple[tuple, str]] = {}  # version → (its directory's contents, why it failed)
        self._lock = threading.Lock()  # one refresh at a time; readers never take it
        self.swaps = 0

    # Reading (any thread, lock-free: the mapping is replaced, never mutated).

    @property
    def served(self) -> Mapping[int, ServedVersion]:
        return self._served

    def get(self, version: Optional[int] = None) -> ServedVersion:
        """The requested version, or the default (the newest served) when ``version`` is None."""
        served = self._served
        if not served:
            raise UnknownVersion(f"No version is loaded from {self.base} yet.")
        if version is None:
            return served[max(served)]
        if version not in served:
            listed = ", ".join(str(v) for v in sorted(served))
            raise UnknownVersion(f"Version {version} is not served (policy {self.policy} serves {listed}).")
        return served[version]

    def status(self) -> list[dict[str, Any]]:
        """TF Serving's ``model_version_status``: each served version AVAILABLE, each failed load with its error."""
        rows = [
            {"version": str(v), "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}
            for v in sorted(self._served, reverse=True)
        ]
        rows += [
            {"version": str(v), "state": "END", "status": {"error_code": "UNKNOWN", "error_message": why}}
            for v, (_, why) in sorted(self._failed.items(), reverse=True)
            if v not in self._served
        ]
        return rows

    # Loading (the watcher thread).

    def refresh(self) -> bool:
        """Load newly wanted versions, then swap them in and drop unwanted ones; True when anything changed."""
        with self._lock:
            wanted = wanted_versions(versions_on_disk(self.base), self.policy, self.specific)
            current = self._served
            loaded = {v: current[v] for v in wanted if v in current}
            for version in wanted:
                failed = self._failed.get(version)
                if version not in loaded and (failed is None or failed[0] != _contents(self.base / str(version))):
                    served = self._load(version)
                    if served is not None:
                        loaded[version] = served
            if not loaded and current:  # never go empty because the new version failed to load
                return False
            if loaded.keys() == current.keys():
                return False
            self._served = MappingProxyType(dict(sorted(loaded.items())))
            self.swaps += 1
            log.info("serving versions %s (policy %s)", sorted(loaded), self.policy)
            return True

    def _load(self, version: int) -> Optional[ServedVersion]:
        try:
            generate, signature = load_backend(self.base / str(version), self.backend, threads=self.threads)
            served = ServedVersion(version, generate, MappingProxyType(dict(signature)))
            generate(np.zeros((1, served.z_dim), np.float32))  # warm up before any request can reach it
        except Exception as error:  # a broken version must not take the served ones down
            # Retried once its files change (e.g. `dvc checkout` writing them one by one).
            self._failed[version] = (_contents(self.base / str(version)), f"{type(error).__name__}: {error}")
            log.warning("version %s could not be loaded: %s", version, error)
            return None
        self._failed.pop(version, None)
        return served


class Watcher:
    """A daemon thread that calls ``store.refresh()`` every ``interval_s`` seconds until ``stop()``."""

    def __init__(self, store: ModelStore, interval_s: float = 0.5) -> None:
        self.store, self.interval_s = store, interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="model-watcher", daemon=True)

    def start(self) -> Watcher:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.store.refresh()
            except Exception:  # keep watching: the next export may be fine
                log.exception("refreshing %s failed", self.store.base)
