"""Helpers for tests (of any layer) that need a running simulator.

Example fixture in a test folder's conftest.py::

    from radical.orbit.simulator.testing import running_simulator

    @pytest.fixture
    def sim(tmp_path, monkeypatch):
        with running_simulator(tmp_path, bytes_per_second=1e9) as sim:
            for key, value in sim.environ().items():
                monkeypatch.setenv(key, value)
            yield sim

By default the helpers switch the rate limit off (``rate_limit=None``) so that busy tests are
not throttled; pass ``rate_limit=20`` to test it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import globus_sdk

from .auth import Credentials
from .service import Simulator

__all__ = ["refresh_transfer_client", "running_simulator", "sdk_environment", "transfer_client"]


@contextmanager
def running_simulator(tmp_path: Path, **opts: Any) -> Iterator[Simulator]:
    """A started simulator whose collections live under ``tmp_path / "sim"``.

    ``opts`` are :class:`Simulator` options; the default throughput is high (1 GB/s) and the
    rate limit is off, so tasks end within a tick or two.
    """
    opts.setdefault("bytes_per_second", 1e9)
    opts.setdefault("rate_limit", None)
    sim = Simulator(root=Path(tmp_path) / "sim", **opts)
    with sim:
        yield sim


@contextmanager
def sdk_environment(sim: Simulator) -> Iterator[dict[str, str]]:
    """Point globus-sdk at ``sim`` through the environment, restoring it afterwards.

    Prefer pytest's ``monkeypatch.setenv`` in tests; this is for scripts and benchmarks.
    """
    saved = {key: os.environ.get(key) for key in sim.environ()}
    os.environ.update(sim.environ())
    try:
        yield sim.environ()
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def transfer_client(sim: Simulator, creds: Credentials) -> globus_sdk.TransferClient:
    """A TransferClient with the user's access token, aimed at ``sim`` without the environment."""
    return globus_sdk.TransferClient(
        authorizer=globus_sdk.AccessTokenAuthorizer(creds.access_token), base_url=sim.url + "/"
    )


def refresh_transfer_client(sim: Simulator, creds: Credentials) -> globus_sdk.TransferClient:
    """A TransferClient that refreshes its token through ``sim``'s Auth endpoint.

    The Auth client reads ``GLOBUS_SDK_SERVICE_URL_AUTH`` when it is built, so the environment
    points at ``sim`` for the duration of the construction only.
    """
    with sdk_environment(sim):
        auth = globus_sdk.NativeAppAuthClient(creds.client_id)
    authorizer = globus_sdk.RefreshTokenAuthorizer(creds.refresh_token, auth)
    return globus_sdk.TransferClient(authorizer=authorizer, base_url=sim.url + "/")
