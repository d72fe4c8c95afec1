"""orbit-globus: an endpoint daemon that orchestrates Globus transfers.

The client API lives here (``from radical.orbit import BridgeClient``); the daemon,
ledger and Globus simulator are the subpackages ``radical.orbit.daemon``,
``radical.orbit.ledger`` and ``radical.orbit.simulator``.
"""

from __future__ import annotations

# The client's public names, listed once in its own __all__.
from radical.orbit import client as _client
from radical.orbit.client import *  # noqa: F403
from radical.orbit.client import errors as errors
from radical.orbit.protocol import VERSION as __version__

__all__ = ["__version__", "errors"]
__all__ += _client.__all__
