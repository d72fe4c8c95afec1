"""``python -m radical.orbit.daemon`` and the ``orbit-globus-endpoint`` console script."""

from __future__ import annotations

import sys

from .runtime.main import main

__all__ = ["main"]

if __name__ == "__main__":
    sys.exit(main())
