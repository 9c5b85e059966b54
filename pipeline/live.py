"""Rank 0's view of a training run: DVCLive metrics (for `dvc plots`) and one progress line per log step."""

from __future__ import annotations

import time
from typing import Optional


class LiveLog:
    """The ``log`` callback of ``gans.loop.fit`` on the main rank; each value lands at its own step."""

    def __init__(self, live_dir: str, total_steps: int, resume: bool) -> None:
        from dvclive import Live

        self.live = Live(dir=live_dir, resume=resume, save_dvc_exp=False, dvcyaml=None)
        self.total_steps = total_steps
        self.started = time.perf_counter()
        self.first_step: Optional[int] = None

    def __call__(self, metrics: dict[str, float], step: int) -> None:
        self.live.step = step  # before logging: DVCLive stamps each value with the current step
        for name, value in metrics.items():
            self.live.log_metric(name, value)
        self.live.next_step()
        if self.first_step is None:
            self.first_step, self.started = step, time.perf_counter()
        rate = (step - self.first_step) / max(time.perf_counter() - self.started, 1e-9)
        print(
            f"[train] step {step}/{self.total_steps} ({100 * step / self.total_steps:.0f}%) "
            f"d_loss={metrics['d_loss']:.3f} g_loss={metrics['g_loss']:.3f} "
            f"acc_real={metrics['d_acc_real']:.2f} acc_fake={metrics['d_acc_fake']:.2f}"
            + (f" fid={metrics['fid']:.1f}" if "fid" in metrics else "")
            + f" {rate:.1f} step/s",
            flush=True,
        )

    def close(self) -> None:
        self.live.end()
