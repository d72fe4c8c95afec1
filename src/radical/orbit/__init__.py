"""orbit-globus: an endpoint daemon that orchestrates Globus transfers.

The client API lives here (``from radical.orbit import BridgeClient``); the daemon,
ledger and Globus simulator are the subpackages ``radical.orbit.daemon``,
``radical.orbit.ledger`` and ``radical.orbit.simulator``.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
