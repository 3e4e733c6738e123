"""User-facing errors.

A ``SluiceError`` is something the *user* can fix (a config key, a data file, a request). The CLI renders it
as one short message and exits non-zero without a traceback; every other exception is a bug in sluice or in
a library and keeps its traceback.
"""

from __future__ import annotations


class SluiceError(Exception):
    """An error the user caused and can fix.

    ``where`` names the config key path, file or field; ``problem`` says what is wrong; ``fix`` says what to do.
    """

    exit_code = 1

    def __init__(self, where: str, problem: str, fix: str = "") -> None:
        self.where = where
        self.problem = problem
        self.fix = fix
        super().__init__(self.render())

    def render(self) -> str:
        text = f"{self.where}: {self.problem}"
        if self.fix:
            text += f" ({self.fix})"
        return text


class ConfigError(SluiceError):
    """The pipeline config is invalid: wrong key, wrong value, or inconsistent settings."""


class DataError(SluiceError):
    """The input data does not match what the config and schema promise."""


class GateFailed(SluiceError):
    """A gate (blessing, data validation, parity) said no; nothing was pushed. The message is preformatted."""

    exit_code = 3

    def __init__(self, message: str) -> None:
        self.message = message
        super().__init__("gate", message)

    def render(self) -> str:
        return getattr(self, "message", "") or super().render()
