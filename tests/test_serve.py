"""The model server as a client sees it: a real ``python -m pipeline.serving.serve`` (Ray Serve) on 127.0.0.1, real HTTP.

One server serves the tests that do not change its models; the version swap gets a server of its own.
"""

from __future__ import annotations

import concurrent.futures
import io
import json
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

import numpy as np
import pytest
import torch
from PIL import Image

from gans.export import export_generator, load_backend
from pipeline.serving.validation import seeded_latents
from tests.helpers import server_process, tiny_generators

pytestmark = pytest.mark.slow  # real Ray, DVC, servers or browsers: `make test-fast` leaves it out

Z_DIM = 8  # tiny_config's


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """models/1 and models/2 of two tiny generators (different weights); the server starts on models/1 only."""
    work = tmp_path_factory.mktemp("serve")
    generators, cfg = tiny_generators(work, steps=2)
    root = work / "models"
    export_generator(generators[0], cfg=cfg, root=root)
    spare = export_generator(generators[1], cfg=cfg, root=work / "spare", version="2")
    return root, spare


@pytest.fixture(scope="module")
def server(exported):
    with server_process(exported[0], "--poll-interval-s", "0.2") as url:
        yield url


def call(url, body=None, *, raw=None, content_type="application/json", method=None):
    """(status, headers, body bytes) of one request; never raises on an HTTP error status."""
    data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
    headers = {"Content-Type": content_type} if data is not None and content_type else {}
    request = urllib.request.Request(url, data=data, headers=headers, method=method)
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers, error.read()


def predict(url, body, version=None):
    path = f"{url}/v1/models/generator" + (f"/versions/{version}" if version else "") + ":predict"
    status, _, data = call(path, body)
    return status, json.loads(data)


def local_images(version_dir, z):
    generate, _ = load_backend(version_dir, "torchscript")
    return generate(np.asarray(z, np.float32))


def test_status_and_metadata_follow_tf_serving(server, exported):
    status, _, data = call(f"{server}/v1/models/generator")
    assert status == 200
    assert json.loads(data)["model_version_status"] == [
        {"version": "1", "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}
    ]
    status, _, data = call(f"{server}/v1/models/generator/metadata")
    on_disk = json.loads((exported[0] / "1" / "signature.json").read_text())
    assert status == 200 and json.loads(data) == {
        "model_spec": {"name": "generator", "version": "1"},
        "metadata": {"signature": on_disk},
    }
    assert on_disk["files"]["onnx"] == "generator.onnx"


def test_predict_matches_the_exported_model(server, exported):
    z = torch.randn(5, Z_DIM, generator=torch.Generator().manual_seed(7)).numpy()
    status, answer = predict(server, {"instances": z.tolist()})
    assert status == 200 and answer["model_version"] == "1"
    served = np.asarray(answer["predictions"], np.float32)
    assert served.shape == (5, 1, 32, 32)
    assert np.abs(served - local_images(exported[0] / "1", z)).max() < 2e-6  # ONNX Runtime vs TorchScript, 6 decimals

    status, by_seed = predict(server, {"seed": 3, "n": 4}, version=1)
    assert status == 200
    expected = local_images(exported[0] / "1", seeded_latents(3, 4, Z_DIM).numpy())
    assert np.abs(np.asarray(by_seed["predictions"]) - expected).max() < 2e-6


def test_concurrent_requests_are_batched_and_each_gets_its_own_images(server, exported):
    zs = [torch.randn(1 + i % 3, Z_DIM, generator=torch.Generator().manual_seed(i)).numpy() for i in range(24)]
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda z: predict(server, {"instances": z.tolist()}), zs))
    for z, (status, answer) in zip(zs, answers):
        assert status == 200
        assert np.abs(np.asarray(answer["predictions"]) - local_images(exported[0] / "1", z)).max() < 2e-6


BIG = b"[" + b"0," * 600_000 + b"0]"
BAD_REQUESTS = {
    "wrong z shape": ({"instances": [[0.0] * (Z_DIM - 1)]}, None, "application/json", 400, "list of 8 numbers"),
    "ragged z": ({"instances": [[0.0] * Z_DIM, [0.0]]}, None, "application/json", 400, "list of 8 numbers"),
    "string in z": ({"instances": [["0"] * Z_DIM]}, None, "application/json", 400, "must be a number"),
    "boolean in z": ({"instances": [[True] * Z_DIM]}, None, "application/json", 400, "must be a number"),
    "NaN in z": (None, b'{"instances": [[NaN, 0, 0, 0, 0, 0, 0, 0]]}', "application/json", 400, "finite"),
    "overflowing z": ({"instances": [[1e39] + [0.0] * (Z_DIM - 1)]}, None, "application/json", 400, "finite"),
    "integer beyond float": (
        None,
        b'{"instances": [[1' + b"0" * 400 + b", 0, 0, 0, 0, 0, 0, 0]]}",
        "application/json",
        400,
        "finite",
    ),
    "deeply nested JSON": (None, b"[" * 100_000 + b"]" * 100_000, "application/json", 400, "too deeply"),
    "n over the limit": ({"seed": 0, "n": 65}, None, "application/json", 400, "'n' must be an integer from 1 to 64"),
    "too many instances": ({"instances": [[0.0] * Z_DIM] * 65}, None, "application/json", 400, "at most 64"),
    "negative seed": ({"seed": -1}, None, "application/json", 400, "'seed' must be an integer"),
    "neither key": ({"z": [0.0]}, None, "application/json", 400, 'either "instances" or "seed"'),
    "malformed JSON": (None, b'{"seed": ', "application/json", 400, "not valid JSON"),
    "not UTF-8": (None, b"\xff\xfe", "application/json", 400, "not valid JSON"),
    "oversized body": (None, BIG, "application/json", 413, "at most 1048576"),
    "wrong content type": ({"seed": 0}, None, "text/plain", 415, "application/json"),
    "no content type": ({"seed": 0}, None, None, 415, "application/json"),
}


@pytest.mark.parametrize("kind", list(BAD_REQUESTS))
def test_bad_predict_requests_get_a_4xx_and_one_sentence(server, kind):
    body, raw, content_type, expected_status, phrase = BAD_REQUESTS[kind]
    status, headers, data = call(f"{server}/v1/models/generator:predict", body, raw=raw, content_type=content_type)
    error = json.loads(data)["error"]
    assert status == expected_status, error
    assert phrase in error and error.endswith(".") and "\n" not in error
    assert headers["content-type"] == "application/json"


@pytest.mark.parametrize(
    "path, expected_status, phrase",
    [
        ("/v1/models/generator/versions/9:predict", 404, "Version 9 is not served (policy latest serves 1)."),
        ("/v1/models/generator/versions/one:predict", 404, "Unknown version 'one'"),
        ("/v1/models/generator/versions/%C2%B2:predict", 404, "Unknown version"),  # "²": a digit to str.isdigit()
        ("/v1/models/generator/versions/" + "9" * 400 + ":predict", 404, "Unknown version"),
        ("/v1/models/other:predict", 404, "Unknown model 'other'"),
        ("/v1/nothing", 404, "No such endpoint"),
    ],
)
def test_unknown_versions_models_and_paths_are_404(server, path, expected_status, phrase):
    status, _, data = call(server + path, {"seed": 0})
    assert status == expected_status and phrase in json.loads(data)["error"]


def test_grid_and_interpolation_pngs(server):
    def png(path):
        status, headers, data = call(server + path)
        assert status == 200 and headers["content-type"] == "image/png"
        return np.asarray(Image.open(io.BytesIO(data)))

    grid = png("/v1/models/generator/grid.png?seed=5&n=9")
    assert grid.shape[:2] == (3 * 64 + 4 * 2, 3 * 64 + 4 * 2)  # 3×3 images of 32 px, upscaled 2×, 2 px padding
    assert np.array_equal(grid, png("/v1/models/generator/versions/1/grid.png?seed=5&n=9"))
    assert not np.array_equal(grid, png("/v1/models/generator/grid.png?seed=6&n=9"))
    strip = png("/v1/models/generator/interpolation.png?seed_a=1&seed_b=2&steps=6")
    assert strip.shape[:2] == (64 + 2 * 2, 6 * 64 + 7 * 2)
    status, _, data = call(f"{server}/v1/models/generator/grid.png?n=500")
    assert status == 400 and "at most" in json.loads(data)["error"]
    status, _, data = call(f"{server}/v1/models/generator/interpolation.png?steps=1")
    assert status == 400 and "steps" in json.loads(data)["error"]


def test_no_memory_growth_over_many_requests(server):
    def rss():
        return json.loads(call(f"{server}/v1/server")[2])["rss_bytes"]

    def burst(count):
        bodies = [{"seed": i, "n": 4} if i % 10 else {"instances": [[0.0]]} for i in range(count)]
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            return [status for status, _ in pool.map(lambda b: predict(server, b), bodies)]

    burst(300)  # warm up: allocator pools, batch queues
    before = rss()
    statuses = burst(1500)
    grown = rss() - before
    assert statuses.count(200) == 1350 and statuses.count(400) == 150
    assert grown < 32 * 2**20, f"the replica grew by {grown / 2**20:.1f} MiB over 1500 requests"


def test_client_lists_samples_and_interpolates(server, tmp_path):
    def client(*args):
        return subprocess.run(
            [sys.executable, "-m", "pipeline.serving.client", "--url", server, *args],
            capture_output=True,
            text=True,
            timeout=120,
        )

    listed = client("versions")
    assert listed.returncode == 0 and listed.stdout.strip() == "version 1: AVAILABLE"
    sampled = client("sample", "--n", "3", "--seed", "4", "--out", str(tmp_path / "s"))
    assert sampled.returncode == 0, sampled.stderr
    files = sorted(p.name for p in (tmp_path / "s").iterdir())
    assert files == ["grid.png", "seed4_000.png", "seed4_001.png", "seed4_002.png"]
    assert Image.open(tmp_path / "s" / "seed4_000.png").size == (32, 32)
    walk = client("interpolate", "--seed-a", "0", "--seed-b", "1", "--steps", "4", "--out", str(tmp_path / "w.png"))
    assert walk.returncode == 0 and Image.open(tmp_path / "w.png").size == (4 * 64 + 5 * 2, 64 + 4)
    refused = client("--version", "9", "sample", "--out", str(tmp_path / "none"))
    assert refused.returncode == 1
    assert refused.stderr.strip() == "error: The server answered 404: Version 9 is not served (policy latest serves 1)."
    unreachable = subprocess.run(
        [sys.executable, "-m", "pipeline.serving.client", "--url", "http://127.0.0.1:9", "versions"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert unreachable.returncode == 1 and "Cannot reach the model server" in unreachable.stderr


def test_the_page_draws_faces_and_follows_the_seed(server):
    """In a real headless Chromium (Debian's, driven by Playwright): images load, the seed box redraws the grid."""
    from playwright.sync_api import sync_playwright

    from tests.test_plots_offline import chromium

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium(), args=["--no-sandbox", "--disable-gpu"])
        try:
            page = browser.new_page(viewport={"width": 1000, "height": 900})
            page.goto(server + "/")
            page.wait_for_selector("body[data-state=ready]", timeout=60_000)
            for image in ("#grid", "#strip"):
                assert page.eval_on_selector(image, "img => img.complete && img.naturalWidth > 0")
            assert page.locator("#version option").all_inner_texts() == ["version 1"]
            assert "version 1" in page.inner_text("#meta") and page.inner_text("#error") == ""
            shot = np.asarray(Image.open(io.BytesIO(page.screenshot())).convert("L"))
            assert shot.std() > 10  # not a blank page

            before = page.locator("#grid").screenshot()
            source = page.get_attribute("#grid", "src")
            page.fill("#seed", "41")
            page.dispatch_event("#seed", "change")
            page.wait_for_function(f"document.getElementById('grid').src !== {json.dumps(server + source)}")
            page.wait_for_selector("body[data-state=ready]", timeout=60_000)
            assert "seed=41" in page.get_attribute("#grid", "src")
            after = page.locator("#grid").screenshot()
            assert (
                np.asarray(Image.open(io.BytesIO(after))).tolist()
                != np.asarray(Image.open(io.BytesIO(before))).tolist()
            )
        finally:
            browser.close()


def test_a_new_version_is_swapped_in_under_load_without_a_failed_request(server, exported):
    """The module's server gets version 2 while 4 clients keep asking. Last in this module: it changes what the
    shared server serves."""
    import shutil

    root, spare = exported
    z = torch.randn(2, Z_DIM, generator=torch.Generator().manual_seed(1)).numpy()
    results, stop = [], threading.Event()

    def load():
        while not stop.is_set():
            try:
                status, answer = predict(server, {"instances": z.tolist()})
                results.append((status, answer.get("model_version")))
            except Exception as error:  # a non-JSON answer (a 5xx page) or no answer: a failed request
                results.append((repr(error), None))

    threads = [threading.Thread(target=load) for _ in range(4)]
    for thread in threads:
        thread.start()
    time.sleep(2)
    shutil.copytree(spare, root / ".incoming-2")
    (root / ".incoming-2").rename(root / "2")  # a version appears whole, as the export stage writes it
    deadline = time.time() + 60
    while time.time() < deadline and not any(v == "2" for _, v in results[-20:]):
        time.sleep(0.2)
    time.sleep(2)
    stop.set()
    for thread in threads:
        thread.join()
    status, _, data = call(f"{server}/v1/models/generator")
    statuses = [s for s, _ in results]
    versions = [v for _, v in results]
    assert statuses.count(200) == len(statuses) > 50  # not one failed request across the swap
    first_new = versions.index("2")
    assert set(versions[:first_new]) == {"1"} and versions[-10:] == ["2"] * 10
    assert [row["version"] for row in json.loads(data)["model_version_status"]] == ["2"]  # latest: 1 unloaded
