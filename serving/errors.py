"""TF Serving's error contract: a canonical status code, and how REST renders it.

REST answers ``{"error": "<message>"}`` with the HTTP status TF Serving maps the code to; gRPC aborts with
the same code. Messages follow TF Serving's wording where clients are known to match on them.
"""

from __future__ import annotations

HTTP_STATUS = {
    "INVALID_ARGUMENT": 400,
    "FAILED_PRECONDITION": 400,
    "OUT_OF_RANGE": 400,
    "NOT_FOUND": 404,
    "ALREADY_EXISTS": 409,
    "RESOURCE_EXHAUSTED": 429,
    "UNIMPLEMENTED": 501,
    "UNAVAILABLE": 503,
    "DEADLINE_EXCEEDED": 504,
    "INTERNAL": 500,
    "UNKNOWN": 500,
}


class ServingError(Exception):
    """A request the server refuses: ``code`` is a canonical status name (``INVALID_ARGUMENT``, …)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    @property
    def http_status(self) -> int:
        return HTTP_STATUS.get(self.code, 500)


def invalid(message: str) -> ServingError:
    return ServingError("INVALID_ARGUMENT", message)


def not_found(message: str) -> ServingError:
    return ServingError("NOT_FOUND", message)


class SettingError(Exception):
    """A server setting the operator passed that cannot work: the flag, the problem, the fix (the CLI shows
    them as its one screen)."""

    def __init__(self, where: str, problem: str, fix: str) -> None:
        super().__init__(f"{where}: {problem} ({fix})")
        self.where, self.problem, self.fix = where, problem, fix
