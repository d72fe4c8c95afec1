"""Errors of the Globus simulator.

Hierarchy::

    SimulatorError                 root of everything raised by radical.orbit.simulator
    ├── WorldError (ValueError)    a world file or collection declaration is unusable
    ├── UnknownTask (KeyError)     a control call named a task the simulator never created
    └── ApiError                   a Transfer/Auth API request must be answered with an error
                                   document; carries the HTTP status and the Globus code

ApiError never reaches callers of the Python API: the HTTP shell turns it into the Globus error
shape ``{"code", "message", "request_id", "resource"}``.
"""

from __future__ import annotations

from typing import Any

__all__ = ["ApiError", "SimulatorError", "UnknownTask", "WorldError", "bad_request", "not_found"]


class SimulatorError(Exception):
    """Root of the simulator's exceptions."""


class WorldError(SimulatorError, ValueError):
    """A world file or a collection declaration cannot be used."""


class UnknownTask(SimulatorError, KeyError):
    """A control call named a task id the simulator does not know."""

    def __init__(self, task_id: str) -> None:
        super().__init__(task_id)
        self.task_id = task_id

    def __str__(self) -> str:
        return f"no task with id {self.task_id!r} in this simulator"


class ApiError(SimulatorError):
    """An API request fails with ``status`` and the Globus error ``code``.

    ``extra`` holds additional top-level fields of the error document (for example
    ``required_scopes`` of a ConsentRequired error); ``headers`` extra response headers
    (for example ``Retry-After``).
    """

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        extra: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.extra = dict(extra or {})
        self.headers = dict(headers or {})

    def __str__(self) -> str:
        return f"{self.status} {self.code}: {self.message}"


def not_found(what: str) -> ApiError:
    """The usual 404 of the Transfer API."""
    return ApiError(404, "ClientError.NotFound", f"{what} not found")


def bad_request(code_suffix: str, message: str) -> ApiError:
    """A 400 ``ClientError.BadRequest[.suffix]`` error."""
    code = "ClientError.BadRequest" + (f".{code_suffix}" if code_suffix else "")
    return ApiError(400, code, message)
