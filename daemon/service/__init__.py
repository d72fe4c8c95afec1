"""The endpoint's operations, independent of HTTP: sessions, durable submits and cancels, the
daemon's view of the ledger and the fan-out of committed events.

A submit flows ``EndpointService.submit_transfer`` -> ``Submitter`` (``submit_requested``
appended through ``Store`` before Globus is called, ``task_submitted`` after) -> ledger commit
-> ``EventHub`` -> each matching ``Listener`` -> its WebSocket. ``sessions`` holds each
session's credential in memory only.
"""
