"""`dvc plots show`/`diff` pages draw with no network: `.dvc/config` points dvc at a template that carries
Vega, Vega-Lite and Vega-Embed inline (pipeline/tools/plots_template.py).

The end-to-end tests use a real git+DVC repo in a temp dir with this repo's `plots.html_template` setting and
file, the venv's `dvc`, and a real headless Chromium whose DNS and proxy are shut, so a CDN could not load.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pipeline.tools.plots_template import LIBRARIES, configured_template, inlined, render, sha256

pytestmark = pytest.mark.slow  # real Ray, DVC, servers or browsers: `make test-fast` leaves it out

REPO = Path(__file__).resolve().parents[1]
DVC = str(Path(sys.executable).with_name("dvc"))
CDN_SCRIPT = re.compile(r"""<script\b[^>]*\bsrc\s*=\s*["']?(?:https?:)?//""", re.I)
# Vega draws each chart's marks into one <canvas class="marks"> (or <svg class="marks"> with the SVG renderer).
VEGA_MARKS = re.compile(r"""<(?:canvas|svg)\b[^>]*\bclass="marks\"""")
# Two plots (loss.tsv, fid.json); DVC draws each as one chart, over both revisions in a diff.
PLOTS_YAML = """\
plots:
  - loss.tsv:
      x: step
      y: loss
  - fid.json:
      x: step
      y: fid
"""


def _page_text(path: Path) -> str:
    return path.read_bytes().decode("utf-8")  # no newline translation: the bytes are compared exactly


# The template itself.


def test_pins_are_the_versions_dvc_render_loads_from_its_cdn():
    from dvc_render.vega import VegaRenderer

    cdn = dict(re.findall(r"cdn\.jsdelivr\.net/npm/(vega(?:-lite|-embed)?)@([\d.]+)", VegaRenderer.SCRIPTS))
    assert cdn == {library.name: library.version for library in LIBRARIES}


def test_the_configured_template_holds_exactly_the_pinned_libraries_with_their_licences():
    template = configured_template()
    assert template == REPO / ".dvc" / "plots" / "offline.html"
    page = _page_text(template)
    sources = inlined(page)
    assert list(sources) == [library.spec for library in LIBRARIES]
    for library in LIBRARIES:
        licence, js = sources[library.spec]
        assert sha256(js) == library.sha256, f"{library.spec} differs from its npm build; rerun the generator"
        assert "University of Washington Interactive Data Lab" in licence
        assert "Redistribution and use in source and binary forms" in licence
    assert render(sources) == page  # the committed file is the generator's output, byte for byte
    # dvc fills {plot_divs} and {refresh_tag}; without {scripts} it has nowhere to put its CDN tags.
    assert "{plot_divs}" in page and "{refresh_tag}" in page and "{scripts}" not in page
    assert not CDN_SCRIPT.search(page)


# Real dvc, real Chromium.


def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if found := shutil.which(name):
            return found
    pytest.fail(
        "Chromium is not installed (needed to check that dvc's plots pages draw offline); "
        "`make test` (or `make install-dev`) installs it (apt-get install chromium)."
    )


def browse(page: Path, work: Path) -> tuple[str, np.ndarray]:
    """The DOM of ``page`` after its scripts ran, and a screenshot as an RGB array, from offline headless Chromium."""
    flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--no-default-browser-check",
        "--disable-extensions",
        "--hide-scrollbars",
        "--window-size=1200,1000",
        # Offline: no host name resolves and every proxied request goes to a closed port.
        "--host-resolver-rules=MAP * ~NOTFOUND",
        "--proxy-server=127.0.0.1:9",
        "--virtual-time-budget=15000",
    ]
    screenshot = work / "page.png"
    outputs = {}
    for action in ("--dump-dom", f"--screenshot={screenshot}"):
        profile = work / f"profile{len(outputs)}"
        try:
            result = subprocess.run(
                [chromium(), *flags, f"--user-data-dir={profile}", action, page.as_uri()],
                capture_output=True,
                text=True,
                timeout=180,
            )
        except subprocess.TimeoutExpired:
            pytest.fail(f"headless Chromium did not finish {action} of {page} within 180 s")
        assert result.returncode == 0, f"chromium {action} failed:\n{result.stderr[-3000:]}"
        outputs[action] = result.stdout
    assert screenshot.is_file(), "chromium wrote no screenshot"
    return outputs["--dump-dom"], np.asarray(Image.open(screenshot).convert("RGB"))


def assert_draws_offline(page: Path, work: Path, n_plots: int) -> None:
    html = _page_text(page)
    assert not CDN_SCRIPT.search(html), "the page loads a script from the network"
    assert html.count("vegaEmbed(") == n_plots
    dom, pixels = browse(page, work)
    assert len(VEGA_MARKS.findall(dom)) == n_plots, "vega-embed did not draw every chart"
    gray = pixels.mean(axis=2)
    assert gray.std() > 5 and (gray < 250).mean() > 0.005, "the screenshot is blank"
    # DVC's line colours are saturated; titles and axes are gray. Lines drawn = many coloured pixels.
    chroma = pixels.max(axis=2).astype(int) - pixels.min(axis=2)
    assert (chroma > 60).sum() > 300, "no coloured lines in the screenshot"


def dvc(repo: Path, *args: str) -> str:
    env = {
        **os.environ,
        "DVC_NO_ANALYTICS": "1",
        "GIT_AUTHOR_NAME": "test",
        "GIT_AUTHOR_EMAIL": "t@example.org",
        "GIT_COMMITTER_NAME": "test",
        "GIT_COMMITTER_EMAIL": "t@example.org",
    }
    result = subprocess.run([DVC, *args], cwd=repo, capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 0, f"dvc {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout


def git(repo: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-c", "user.name=test", "-c", "user.email=t@example.org", *args],
        cwd=repo,
        check=True,
        capture_output=True,
        timeout=60,
    )


def write_curves(repo: Path, scale: float) -> None:
    steps = np.arange(0, 200, 10)
    losses = scale * np.exp(-steps / 80) + 0.1 * np.sin(steps / 7)
    (repo / "loss.tsv").write_text("step\tloss\n" + "".join(f"{s}\t{v:.4f}\n" for s, v in zip(steps, losses)))
    fids = [{"step": int(s), "fid": round(300 * scale / (1 + s / 50), 2)} for s in steps[::4]]
    (repo / "fid.json").write_text(json.dumps(fids))


@pytest.fixture
def plots_repo(tmp_path) -> Path:
    """A git+DVC repo with two commits of two plots, and this repo's `plots.html_template` setting and file."""
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q")
    dvc(repo, "init", "-q")
    template = configured_template()
    setting = template.relative_to(REPO / ".dvc").as_posix()
    (repo / ".dvc" / setting).parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(template, repo / ".dvc" / setting)
    dvc(repo, "config", "plots.html_template", setting)
    (repo / "dvc.yaml").write_text(PLOTS_YAML)
    for commit, scale in enumerate((1.0, 1.6)):
        write_curves(repo, scale)
        git(repo, "add", "-A")
        git(repo, "commit", "-q", "-m", f"curves {commit}")
    return repo


def test_dvc_plots_diff_draws_offline(plots_repo, tmp_path):
    dvc(plots_repo, "plots", "diff", "HEAD~1", "HEAD", "-o", str(tmp_path / "diff"))
    html = _page_text(tmp_path / "diff" / "index.html")
    # Both revisions are in the charts' data.
    assert '"rev": "HEAD~1"' in html and '"rev": "HEAD"' in html
    assert_draws_offline(tmp_path / "diff" / "index.html", tmp_path, n_plots=2)


def test_dvc_plots_show_draws_offline(plots_repo, tmp_path):
    dvc(plots_repo, "plots", "show", "-o", str(tmp_path / "show"))
    assert_draws_offline(tmp_path / "show" / "index.html", tmp_path, n_plots=2)


def test_dvc_default_page_stays_blank_offline(plots_repo, tmp_path):
    """The control: without the template, dvc's page needs the CDN, and the checks above see it blank."""
    dvc(plots_repo, "config", "--unset", "plots.html_template")
    dvc(plots_repo, "plots", "show", "-o", str(tmp_path / "show"))
    page = tmp_path / "show" / "index.html"
    assert CDN_SCRIPT.search(_page_text(page))
    dom, pixels = browse(page, tmp_path)
    assert VEGA_MARKS.findall(dom) == []
    chroma = pixels.max(axis=2).astype(int) - pixels.min(axis=2)
    assert (chroma > 60).sum() == 0
