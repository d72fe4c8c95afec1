"""The daemon's HTTP surface: what a client can send and how it is answered.

``routes`` parses each request (``models``), checks the daemon token (``auth``) and calls one
method of :class:`~..service.endpoint.EndpointService`; ``websocket`` serves ``GET /ws`` (replay
from the ledger, then live events from the hub); ``limits`` bounds request bodies before any
parsing. Nothing here decides what an operation does: that is the service package's job.
"""
