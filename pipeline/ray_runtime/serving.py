"""Ray Serve for the model server: the deployment (``pipeline.serving.http_api`` + ``@serve.batch``) and its start-up.

    serve run pipeline.serving.serve:app_builder model_base_path=models/generator policy=latest

Versions change inside each replica (``pipeline.serving.model_store``), never by a Serve redeploy: a redeploy with
1 replica stalls requests, and so does a ``user_config`` change (figures: docs/benchmarks.md, "Changing versions").
"""

from __future__ import annotations

import dataclasses
import signal
import time
from typing import Any

import numpy as np
from ray import serve

from pipeline.ray_runtime.cluster import init_ray
from pipeline.serving import http_api
from pipeline.serving.config import MODEL_NAME, ServeConfig
from pipeline.serving.http_api import GeneratorService, Job, api, run_jobs

# A log line per request costs the CPU the server answers with.
QUIET_LOGS = {"enable_access_log": False, "log_level": "WARNING"}


@serve.deployment(ray_actor_options={"num_cpus": 1}, health_check_period_s=2)
@serve.ingress(api)
class GeneratorServer:
    """One replica: the HTTP API over its own ``GeneratorService``; requests that arrive together run
    through each version's model in one call."""

    def __init__(self, config: ServeConfig) -> None:
        self.run_job.set_max_batch_size(config.max_batch_size)
        self.run_job.set_batch_wait_timeout_s(config.batch_wait_timeout_s)
        self.service = GeneratorService(config, run_job=self.run_job)
        http_api.install(self.service)

    def __del__(self) -> None:
        service = getattr(self, "service", None)
        if service is not None:
            service.close()

    @serve.batch(max_batch_size=16, batch_wait_timeout_s=0.002)
    async def run_job(self, jobs: list[Job]) -> list[np.ndarray]:
        return run_jobs(jobs)


def build_app(config: ServeConfig) -> serve.Application:
    """The Ray Serve application for ``config``."""
    return GeneratorServer.options(
        num_replicas=config.num_replicas, max_ongoing_requests=max(64, 4 * config.max_batch_size)
    ).bind(config)


def app_builder(args: dict[str, str]) -> serve.Application:
    """For ``serve run pipeline.serving.serve:app_builder key=value ...`` (keys: the fields of ``ServeConfig``)."""
    fields = {f.name for f in dataclasses.fields(ServeConfig)}
    unknown = sorted(set(args) - fields)
    if unknown:
        raise ValueError(f"Unknown serve option(s) {', '.join(unknown)}; valid: {', '.join(sorted(fields))}.")
    values: dict[str, Any] = {}
    for key, raw in args.items():
        default = getattr(ServeConfig, key)
        if key == "versions":
            values[key] = tuple(int(v) for v in str(raw).replace(",", " ").split())
        elif default is None:
            values[key] = raw
        else:
            values[key] = type(default)(raw)
    return build_app(ServeConfig(**values))


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def serve_forever(config: ServeConfig) -> None:
    """Start Ray (or join ``config.address``), Serve on ``host:port``, the app; block until Ctrl-C or SIGTERM."""
    init_ray(config.address)
    serve.start(http_options={"host": config.host, "port": config.port}, logging_config=QUIET_LOGS)
    serve.run(build_app(config), name=MODEL_NAME, route_prefix="/", blocking=False, logging_config=QUIET_LOGS)
    print(
        f"[serve] {config.model_base_path} (policy {config.policy}, backend {config.backend}) "
        f"on http://{config.host}:{config.port}/ — Ctrl-C stops",
        flush=True,
    )
    signal.signal(signal.SIGTERM, _interrupt)  # `kill` stops it as cleanly as Ctrl-C
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        serve.shutdown()
