"""gans/ is a plain library: importing it never pulls in Ray, DVC or DVCLive."""

import pkgutil
import subprocess
import sys

import gans


def test_gans_never_imports_ray_or_dvc():
    modules = [m.name for m in pkgutil.walk_packages(gans.__path__, "gans.")]
    code = (
        "import importlib, sys\n"
        f"for name in {modules!r}: importlib.import_module(name)\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('ray', 'dvc', 'dvclive'))\n"
        "assert not bad, bad\n"
        "print(len(sys.modules))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert len(modules) >= 15
