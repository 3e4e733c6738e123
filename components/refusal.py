"""A stage that refuses its input for a reason the user can fix.

``Refused`` carries the same three parts as the CLI's user errors (``pipeline/errors.SluiceError``): where
(the setting or data at fault), the problem with its numbers, and the fix. The runner finds it behind TFX's
wrapping and shows it as one screen, without a traceback; the run stops there, so nothing after the stage
(blessing, push) happens. Components cannot import ``pipeline``, hence this small type of their own.
"""

from __future__ import annotations


class Refused(Exception):
    def __init__(self, where: str, problem: str, fix: str) -> None:
        self.where, self.problem, self.fix = where, problem, fix
        super().__init__(f"{where}: {problem} ({fix})")
