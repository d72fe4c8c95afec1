"""Entry points: :class:`BridgeClient` finds the daemon or a bridge, :class:`EndpointClient`
an endpoint's plugins.

A local daemon serves one endpoint at its own URL. A bridge (``orbit-globus-bridge``) lists
several, each with the ``path`` under which it relays that endpoint's API; the endpoint's
plugin clients then talk to ``<bridge url><path>`` and behave exactly as against the daemon.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from . import calls
from .aio import AsyncGlobusClient
from .closing import Closing
from .config import DaemonAddress, resolve_address
from .errors import ArgumentError, NotFoundError, ProtocolError
from .globus import GlobusClient
from .transport import DEFAULT_TIMEOUT, SyncTransport

__all__ = ["BridgeClient", "EndpointClient"]


class EndpointClient:
    """One endpoint of the daemon; hands out its plugin clients."""

    def __init__(self, bridge: BridgeClient, info: dict[str, Any]) -> None:
        self._bridge = bridge
        self.info = info
        self.name: str = info["name"]
        # Through a bridge the endpoint's API lives under its path; a daemon gives none.
        path = info.get("path")
        self.address: DaemonAddress = (
            replace(bridge.address, url=bridge.address.url + path)
            if isinstance(path, str) and path.startswith("/")
            else bridge.address
        )

    def __repr__(self) -> str:
        return f"EndpointClient(name={self.name!r}, plugins={self.plugins!r})"

    @property
    def online(self) -> bool:
        """False when the bridge lists the endpoint but it is not connected now."""
        return self.info.get("online", True) is not False

    @property
    def plugins(self) -> list[str]:
        plugins = self.info.get("plugins")
        return [str(p) for p in plugins] if isinstance(plugins, list) else []

    def _check(self, name: str) -> None:
        if name != "globus" or name not in self.plugins:
            raise ArgumentError(
                f"endpoint {self.name!r} has no plugin {name!r}; it offers {self.plugins}"
            )

    def get_plugin(self, name: str, *, session_id: str | None = None) -> GlobusClient:
        """The blocking client of plugin ``name`` (only ``'globus'`` exists)."""
        self._check(name)
        client = GlobusClient(
            address=self.address,
            session_id=session_id,
            endpoint=self.name,
            timeout=self._bridge.timeout,
        )
        self._bridge._plugins.append(client)
        return client

    def get_async_plugin(self, name: str, *, session_id: str | None = None) -> AsyncGlobusClient:
        """The asyncio client of plugin ``name``; close it with ``await client.aclose()``."""
        self._check(name)
        return AsyncGlobusClient(
            address=self.address,
            session_id=session_id,
            endpoint=self.name,
            timeout=self._bridge.timeout,
        )


class BridgeClient(Closing):
    """Connection to an orbit bridge, or to the local endpoint daemon.

    The URL and token come from the arguments, else ``RADICAL_ORBIT_URL`` and
    ``RADICAL_ORBIT_TOKEN`` / ``RADICAL_ORBIT_TOKEN_FILE``, else the files the daemon writes in
    its state folder (``RADICAL_ORBIT_STATE_DIR`` or ``~/.radical/orbit/endpoint``). An https
    bridge is verified against ``ca_bundle`` (or ``RADICAL_ORBIT_CA_BUNDLE``, else the
    system's CAs).
    """

    def __init__(
        self,
        url: str | None = None,
        token: str | None = None,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        ca_bundle: str | None = None,
    ) -> None:
        self.address: DaemonAddress = resolve_address(url=url, token=token, ca_bundle=ca_bundle)
        self.timeout = timeout
        self._transport = SyncTransport(self.address, timeout=timeout)
        self._plugins: list[GlobusClient] = []

    def __repr__(self) -> str:
        return f"BridgeClient(url={self.address.url!r})"

    @property
    def url(self) -> str:
        return self.address.url

    def describe_endpoints(self) -> list[dict[str, Any]]:
        """The endpoint documents: ``name, version, plugins, local_collection`` (through a
        bridge also ``online`` and ``path``)."""
        answer = self._transport.send(calls.list_endpoints())
        endpoints = answer.get("endpoints") if isinstance(answer, dict) else None
        if not isinstance(endpoints, list):
            raise ProtocolError("GET /endpoints answered without an 'endpoints' list")
        return endpoints

    def dashboard_link(self) -> str:
        """A one-time link that signs a browser in to the daemon's dashboard (valid for a
        minute, once); the browser gets a session cookie, never the token."""
        answer = self._transport.send(calls.dashboard_link())
        url = answer.get("url") if isinstance(answer, dict) else None
        if not isinstance(url, str):
            raise ProtocolError("POST /dashboard/api/link answered without a 'url'")
        return url

    def list_endpoints(self) -> list[str]:
        """Names of the endpoints this daemon serves, or this bridge token may use."""
        return [str(ep["name"]) for ep in self.describe_endpoints()]

    def get_endpoint_client(self, name: str) -> EndpointClient:
        for info in self.describe_endpoints():
            if info.get("name") == name:
                return EndpointClient(self, info)
        raise NotFoundError(
            404, "EndpointNotFound", f"the daemon serves no endpoint named {name!r}"
        )

    def close(self) -> None:
        """Release connections, including those of the plugin clients handed out."""
        for plugin in self._plugins:
            plugin.close()
        self._plugins.clear()
        self._transport.close()

    def _on_exit(self, *, failed: bool) -> None:
        self.close()
