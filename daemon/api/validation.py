"""What a request that fails validation is answered: the daemon's and the bridge's."""

from __future__ import annotations

from typing import Any

from fastapi.exceptions import RequestValidationError

__all__ = ["describe_validation"]


def describe_validation(exc: RequestValidationError) -> tuple[str, list[dict[str, Any]]]:
    """(message, details) of a validation failure: each error's place and what is wrong,
    never the input (it may be a credential sent in the wrong field)."""
    details = []
    parts = []
    for error in exc.errors():
        where = ".".join(str(p) for p in error.get("loc", ()))
        # Never echo "input": it may be a credential sent in the wrong field.
        details.append(
            {"loc": list(error.get("loc", ())), "msg": error.get("msg"), "type": error.get("type")}
        )
        parts.append(f"{where}: {error.get('msg')}")
    return "; ".join(parts) or "invalid request", details
