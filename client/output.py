"""JSON output shaping for the command line: ``--jmespath`` (the ``jmespath`` package, as
globus-cli's ``--jmespath``/``--jq`` option uses it)."""

from __future__ import annotations

from typing import Any

import jmespath
from jmespath.exceptions import JMESPathError

from .errors import ArgumentError

__all__ = ["query"]


def query(expression: str, document: Any) -> Any:
    """``document`` filtered by the JMESPath ``expression``; ArgumentError if it is invalid."""
    try:
        return jmespath.search(expression, document)
    except JMESPathError as exc:
        raise ArgumentError(f"--jmespath {expression!r}: {exc}") from None
