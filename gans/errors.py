"""The two exceptions every layer shares, kept in a leaf module so no import circle is needed to raise them.

- ``UserError``: bad input a person can fix (a params typo, a missing file, a stage run out of order). Each
  module subclasses it (``ConfigError``, ``DatasetError``, ...); a stage prints it as one line and exits 1.
- ``Rejected``: one source image was skipped during preparation; its ``reason`` is counted, nothing is raised
  to the user.
"""

from __future__ import annotations


class UserError(Exception):
    """Bad input a person can fix; its message is one sentence saying what was wrong and what to do."""


class Rejected(Exception):
    """An image was skipped; ``reason`` is a short label counted in the manifest (e.g. "no face")."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason
