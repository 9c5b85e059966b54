"""The model server (not a DVC stage): serves the export stage's generators over HTTP, and its client.

- ``serve``: the entry point, ``python -m pipeline.serving.serve`` (flags → ``ServeConfig``);
- ``config``: ``ServeConfig``, how the server runs, and the served model's name;
- ``http_api``: the HTTP API (FastAPI, modelled on TF Serving's REST API) over a ``GeneratorService``;
- ``validation``: what a request may hold: its JSON body and latents, refused in one sentence (``BadRequest``);
- ``model_store``: the versions a replica serves (TF Serving's version policies, swapped in by reference);
- ``client``: ``python -m pipeline.serving.client``, standard library + numpy + Pillow;
- ``serve_page.html``: the page at ``GET /`` (package data).

Ray Serve, which hosts the API, is in ``pipeline.ray_runtime.serving`` (everything that imports ray is there).
This file imports nothing: ``python -m pipeline.serving.client`` loads neither torch nor the server.
"""
