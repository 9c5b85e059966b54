"""Command-line client of the model server (``python -m pipeline.serving.serve``): versions, samples, interpolations.

    python -m pipeline.serving.client versions
    python -m pipeline.serving.client sample --n 8 --seed 3 --out samples/        # one PNG per image + grid.png
    python -m pipeline.serving.client interpolate --seed-a 0 --seed-b 7 --steps 10 --out walk.png
    python -m pipeline.serving.client --url http://host:8000 --version 2 sample ...

Standard library, numpy and Pillow only: it runs where torch is not installed.
"""

from __future__ import annotations

import argparse
import json
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Optional

import numpy as np
from PIL import Image

MODEL = "generator"


class ClientError(Exception):
    """The server refused a request or could not be reached (one sentence)."""


class Client:
    """Thin HTTP client of one server; ``version=None`` asks for the server's default (newest) version."""

    def __init__(
        self, url: str = "http://127.0.0.1:8000", version: Optional[int] = None, timeout_s: float = 60
    ) -> None:
        self.url, self.version, self.timeout_s = url.rstrip("/"), version, timeout_s

    def _model_url(self, versioned: bool = True) -> str:
        path = f"{self.url}/v1/models/{MODEL}"
        return f"{path}/versions/{self.version}" if versioned and self.version is not None else path

    def _call(self, url: str, body: Optional[dict] = None) -> bytes:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"} if data else {})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                return response.read()
        except urllib.error.HTTPError as error:
            try:
                message = json.loads(error.read())["error"]
            except (ValueError, KeyError, TypeError):
                message = error.reason
            raise ClientError(f"The server answered {error.code}: {message}") from None
        except (urllib.error.URLError, OSError) as error:
            raise ClientError(
                f"Cannot reach the model server at {self.url} ({getattr(error, 'reason', error)}); "
                "start it with `python -m pipeline.serving.serve`."
            ) from None

    def versions(self) -> list[dict[str, Any]]:
        """TF Serving's ``model_version_status`` rows."""
        return json.loads(self._call(self._model_url(versioned=False)))["model_version_status"]

    def metadata(self) -> dict[str, Any]:
        return json.loads(self._call(self._model_url() + "/metadata"))

    def predict(
        self, *, z: Optional[np.ndarray] = None, seed: Optional[int] = None, n: int = 1
    ) -> tuple[np.ndarray, str]:
        """(images float32 [N, C, R, R] in [-1, 1], the version that made them) for latents ``z`` or a seed."""
        body = {"instances": np.asarray(z, np.float32).tolist()} if z is not None else {"seed": seed, "n": n}
        answer = json.loads(self._call(self._model_url() + ":predict", body))
        return np.asarray(answer["predictions"], np.float32), answer["model_version"]

    def interpolation_png(self, seed_a: int, seed_b: int, steps: int) -> bytes:
        return self._call(f"{self._model_url()}/interpolation.png?seed_a={seed_a}&seed_b={seed_b}&steps={steps}")

    def grid_png(self, seed: int, n: int) -> bytes:
        return self._call(f"{self._model_url()}/grid.png?seed={seed}&n={n}")


def to_pil(image: np.ndarray) -> Image.Image:
    """One [C, R, R] image in [-1, 1] as an 8-bit PIL image (gray or RGB)."""
    pixels = np.clip((image + 1) * 127.5 + 0.5, 0, 255).astype(np.uint8)
    return Image.fromarray(pixels[0] if pixels.shape[0] == 1 else pixels.transpose(1, 2, 0))


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--version", type=int, default=None, help="a served version (default: the newest)")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("versions", help="list the served versions")
    sample = commands.add_parser("sample", help="generate n images from a seed into PNGs")
    sample.add_argument("--n", type=int, default=16)
    sample.add_argument("--seed", type=int, default=0)
    sample.add_argument("--out", type=Path, default=Path("samples"))
    walk = commands.add_parser("interpolate", help="a slerp strip between two seeds, as one PNG")
    walk.add_argument("--seed-a", type=int, default=0)
    walk.add_argument("--seed-b", type=int, default=1)
    walk.add_argument("--steps", type=int, default=8)
    walk.add_argument("--out", type=Path, default=Path("interpolation.png"))
    args = parser.parse_args(argv)
    client = Client(args.url, args.version)
    try:
        if args.command == "versions":
            for row in client.versions():
                print(f"version {row['version']}: {row['state']} {row['status']['error_message']}".rstrip())
        elif args.command == "sample":
            images, version = client.predict(seed=args.seed, n=args.n)
            args.out.mkdir(parents=True, exist_ok=True)
            for i, image in enumerate(images):
                to_pil(image).save(args.out / f"seed{args.seed}_{i:03d}.png")
            (args.out / "grid.png").write_bytes(client.grid_png(args.seed, args.n))
            print(f"{len(images)} images of version {version} → {args.out}/ (and grid.png)")
        else:
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_bytes(client.interpolation_png(args.seed_a, args.seed_b, args.steps))
            print(f"seed {args.seed_a} → {args.seed_b} in {args.steps} steps → {args.out}")
    except ClientError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
