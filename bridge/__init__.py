"""The orbit bridge: several endpoint daemons behind one address.

Endpoint daemons connect *out* to the bridge over one WebSocket each (``/link``), with an
enrollment token made by ``orbit-globus-bridge endpoint add NAME``. Clients talk to the bridge
with a client token (``orbit-globus-bridge token add NAME --endpoints a,b``) and reach each
endpoint's API under ``/endpoints/NAME/``; the bridge relays every request and event stream
over that endpoint's link. Details: docs/bridge.md.
"""

from __future__ import annotations

from .errors import BridgeError

__all__ = ["BridgeError"]
