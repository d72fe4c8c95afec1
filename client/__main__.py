"""``python -m radical.orbit.client``: the same as the ``orbit-globus`` command."""

from __future__ import annotations

import sys

from .cli import main

sys.exit(main())
