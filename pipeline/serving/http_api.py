"""The model server's HTTP API (FastAPI), modelled on TF Serving's REST API; Ray Serve hosts it.

REST API (model name ``generator``; ``/versions/N`` may follow it on every route below):
- ``GET  /v1/models/generator``                the served versions and their state
- ``GET  /v1/models/generator/metadata``       the signature
- ``POST /v1/models/generator:predict``        ``{"instances": [[z…], …]}`` or ``{"seed": s, "n": k}`` →
  ``{"predictions": [[C][R][R] images in [-1, 1]], "model_version": "N"}`` (float32 values)
- ``GET  /v1/models/generator/grid.png?seed=s&n=k``, ``…/interpolation.png?seed_a=a&seed_b=b&steps=k``
- ``GET  /``  a page (no build step, no CDN); ``GET /v1/server`` the process (pid, memory, swaps)
Bad requests get a 4xx and ``{"error": "<one sentence>"}``; no input makes a 5xx.

``GeneratorService`` does the work over a ``ModelStore``; the routes are free functions over the process's
service; ``pipeline.ray_runtime.serving`` hosts them as a Ray Serve deployment with ``@serve.batch``. What a
request may hold is checked in ``pipeline.serving.validation``; how the server runs is ``ServeConfig``
(``pipeline.serving.config``).
"""

# No ``from __future__ import annotations`` here: FastAPI reads the route methods' annotations (``Request``)
# through Ray Serve's ingress wrapper, which cannot resolve them from strings.
import io
import math
import os
import time
from pathlib import Path
from typing import Any, Awaitable, Callable, Optional

import numpy as np
import orjson
import torch
from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from torchvision.utils import save_image

from gans.latent import interpolation_latents
from gans.plots import grid_image
from pipeline.serving.config import MODEL_NAME, ServeConfig
from pipeline.serving.model_store import ModelStore, ServedVersion, UnknownVersion, Watcher, is_version_name
from pipeline.serving.validation import BadRequest, latents_from_body, read_json, seeded_latents

PAGE = Path(__file__).with_name("serve_page.html")


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def _sentence(detail: Any) -> str:
    text = str(detail).strip() or "Request refused"
    return text if text.endswith(".") else text + "."


def png_bytes(images: np.ndarray, nrow: int, upscale: int = 2) -> bytes:
    """Images in [-1, 1] ([N, C, H, W]) as one PNG grid, nearest-upscaled so small faces stay visible."""
    buffer = io.BytesIO()
    save_image(grid_image(torch.from_numpy(np.ascontiguousarray(images)), nrow, upscale), buffer, format="png")
    return buffer.getvalue()


def _png(data: bytes) -> Response:
    return Response(data, media_type="image/png", headers={"Cache-Control": "no-store"})


# The HTTP app.

api = FastAPI(title="GAN generator server", docs_url=None, redoc_url=None, openapi_url=None)


@api.exception_handler(BadRequest)
async def _bad_request(request: Request, error: BadRequest) -> JSONResponse:
    return _error(error.status, str(error))


@api.exception_handler(StarletteHTTPException)
async def _http_error(request: Request, error: StarletteHTTPException) -> JSONResponse:
    if error.status_code == 404:
        return _error(404, f"No such endpoint: {request.method} {request.url.path} (see GET / for the API).")
    return _error(error.status_code, _sentence(error.detail))


@api.exception_handler(RequestValidationError)
async def _invalid_query(request: Request, error: RequestValidationError) -> JSONResponse:
    problems = "; ".join(
        f"{'.'.join(str(p) for p in e.get('loc', ())[1:]) or 'request'}: {e.get('msg')}" for e in error.errors()
    )
    return _error(400, _sentence(f"Invalid request ({problems})"))


def _version(model: str, version: Optional[str]) -> Optional[int]:
    if model != MODEL_NAME:
        raise BadRequest(404, f"Unknown model {model!r}; this server serves {MODEL_NAME!r}.")
    if version is None:
        return None
    if not is_version_name(version):
        shown = version if len(version) <= 20 else version[:17] + "..."
        raise BadRequest(404, f"Unknown version {shown!r}; versions are integers (GET /v1/models/{MODEL_NAME}).")
    return int(version)


Job = tuple[ServedVersion, np.ndarray]
"""One request's work: the version to run and its latents [n, z_dim]."""


def run_jobs(jobs: list[Job]) -> list[np.ndarray]:
    """Each job's images, running each version's model once over all of its jobs' latents together."""
    results: list[Optional[np.ndarray]] = [None] * len(jobs)
    for served in {id(s): s for s, _ in jobs}.values():
        members = [i for i, (s, _) in enumerate(jobs) if s is served]
        images = served.generate(np.concatenate([jobs[i][1] for i in members]))
        bounds = np.cumsum([0] + [len(jobs[i][1]) for i in members])
        for i, start, stop in zip(members, bounds[:-1], bounds[1:]):
            results[i] = images[start:stop]
    return results


class GeneratorService:
    """What the routes do, over one ``ModelStore`` kept current by a watcher thread (one per server replica).

    ``run_job`` turns one request's work into its images; the Ray Serve deployment passes its
    ``@serve.batch`` method, so requests that arrive together run through the model in one call.
    """

    def __init__(self, config: ServeConfig, run_job: Optional[Callable[[Job], Awaitable[np.ndarray]]] = None) -> None:
        self.config = config
        torch.set_num_threads(config.threads)
        self.store = ModelStore(config.model_base_path, config.policy, config.versions, config.backend, config.threads)
        self.store.refresh()
        self.watcher = Watcher(self.store, config.poll_interval_s).start()
        self.page_html = PAGE.read_text()
        self.started = time.time()
        self._run_job = run_job

    def close(self) -> None:
        self.watcher.stop()

    def served(self, model: str, version: Optional[str]) -> ServedVersion:
        try:
            return self.store.get(_version(model, version))
        except UnknownVersion as error:
            raise BadRequest(404, str(error)) from None

    async def generate(self, served: ServedVersion, z: np.ndarray) -> np.ndarray:
        if self._run_job is not None:
            return await self._run_job((served, z))
        return run_jobs([(served, z)])[0]

    def process(self) -> dict[str, Any]:
        import psutil

        return {
            "pid": os.getpid(),
            "rss_bytes": psutil.Process().memory_info().rss,
            "swaps": self.store.swaps,
            "backend": self.config.backend,
            "policy": self.config.policy,
            "uptime_s": round(time.time() - self.started, 1),
        }

    def status(self, model: str, version: Optional[str] = None) -> dict[str, Any]:
        if version is None:
            _version(model, None)
            return {"model_version_status": self.store.status(), "policy": self.config.policy}
        served = self.served(model, version)
        return {"model_version_status": [row for row in self.store.status() if row["version"] == str(served.version)]}

    def metadata(self, model: str, version: Optional[str]) -> dict[str, Any]:
        served = self.served(model, version)
        return {
            "model_spec": {"name": MODEL_NAME, "version": str(served.version)},
            "metadata": {"signature": dict(served.signature)},
        }

    async def predict(self, model: str, version: Optional[str], request: Request) -> Response:
        served = self.served(model, version)
        z = latents_from_body(await read_json(request, self.config.max_body_bytes), served.z_dim, self.config.max_n)
        images = await self.generate(served, z)
        # orjson writes the float32 array directly (shortest round-trip digits), faster than json over tolist()
        # (docs/benchmarks.md); a dict returned to FastAPI would also walk every float through jsonable_encoder.
        body = orjson.dumps(
            {"predictions": images, "model_version": str(served.version)}, option=orjson.OPT_SERIALIZE_NUMPY
        )
        return Response(body, media_type="application/json")

    async def grid(self, model: str, version: Optional[str], seed: int, n: int) -> Response:
        served = self.served(model, version)
        if n > self.config.max_n:
            raise BadRequest(400, f"'n' is {n}; at most {self.config.max_n} images per request.")
        images = await self.generate(served, seeded_latents(seed, n, served.z_dim).numpy())
        return _png(png_bytes(images, nrow=max(1, math.ceil(math.sqrt(n)))))

    async def interpolation(self, model: str, version: Optional[str], seed_a: int, seed_b: int, steps: int) -> Response:
        served = self.served(model, version)
        ends = [seeded_latents(seed, 1, served.z_dim) for seed in (seed_a, seed_b)]
        z = interpolation_latents(*ends, steps=steps, mode="slerp").numpy()
        return _png(png_bytes(await self.generate(served, z), nrow=steps))


# Routes: free functions over the process's service. (Route methods on the Serve deployment class would
# need Ray Serve's class-based-view rewrite, which a class imported from another module does not survive.)

_service: Optional[GeneratorService] = None


def install(service: GeneratorService) -> None:
    """Make ``service`` the one this process's routes use (the server replica calls this on start)."""
    global _service
    _service = service


def current() -> GeneratorService:
    if _service is None:
        raise BadRequest(503, "The server is starting; try again in a few seconds.")
    return _service


SEED = Query(0, ge=0, le=2**63 - 1)
N_IMAGES = Query(16, ge=1)
SEED_A, SEED_B, STEPS = Query(0, ge=0, le=2**63 - 1), Query(1, ge=0, le=2**63 - 1), Query(8, ge=2, le=64)


@api.get("/", response_class=HTMLResponse)
async def page() -> HTMLResponse:
    return HTMLResponse(current().page_html)


@api.get("/v1/server")
async def process() -> dict[str, Any]:
    return current().process()


@api.get("/v1/models/{model}")
async def status(model: str) -> dict[str, Any]:
    return current().status(model)


@api.get("/v1/models/{model}/versions/{version}")
async def version_status(model: str, version: str) -> dict[str, Any]:
    return current().status(model, version)


@api.get("/v1/models/{model}/metadata")
async def metadata(model: str) -> dict[str, Any]:
    return current().metadata(model, None)


@api.get("/v1/models/{model}/versions/{version}/metadata")
async def version_metadata(model: str, version: str) -> dict[str, Any]:
    return current().metadata(model, version)


@api.post("/v1/models/{model}:predict")
async def predict(model: str, request: Request) -> Response:
    return await current().predict(model, None, request)


@api.post("/v1/models/{model}/versions/{version}:predict")
async def version_predict(model: str, version: str, request: Request) -> Response:
    return await current().predict(model, version, request)


@api.get("/v1/models/{model}/grid.png")
async def grid(model: str, seed: int = SEED, n: int = N_IMAGES) -> Response:
    return await current().grid(model, None, seed, n)


@api.get("/v1/models/{model}/versions/{version}/grid.png")
async def version_grid(model: str, version: str, seed: int = SEED, n: int = N_IMAGES) -> Response:
    return await current().grid(model, version, seed, n)


@api.get("/v1/models/{model}/interpolation.png")
async def interpolation(model: str, seed_a: int = SEED_A, seed_b: int = SEED_B, steps: int = STEPS) -> Response:
    return await current().interpolation(model, None, seed_a, seed_b, steps)


@api.get("/v1/models/{model}/versions/{version}/interpolation.png")
async def version_interpolation(
    model: str, version: str, seed_a: int = SEED_A, seed_b: int = SEED_B, steps: int = STEPS
) -> Response:
    return await current().interpolation(model, version, seed_a, seed_b, steps)
