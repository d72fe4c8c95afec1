"""The command line's pure parts: SRC:PATH, batch lines, times, exit codes."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest

from radical.orbit.client import errors
from radical.orbit.client.cli import exit_code
from radical.orbit.client.commands import UsageError, parse_time
from radical.orbit.client.items import (
    BatchError,
    delete_paths,
    split_collection_path,
    transfer_items,
)
from radical.orbit.client.render import local_time


def test_collection_and_path_split_at_the_first_colon() -> None:
    assert split_collection_path("abc:/x:y/") == ("abc", "/x:y/")
    assert split_collection_path("local") == ("local", None)
    assert split_collection_path("local:") == ("local", "")


def test_batch_lines_as_globus_cli_reads_them() -> None:
    lines = ["# comment", "", "/a /b", "'/with space' /c --recursive  # trailing", "/d /e -r"]
    assert transfer_items(lines, recursive=False) == [
        {"source": "/a", "destination": "/b", "recursive": False},
        {"source": "/with space", "destination": "/c", "recursive": True},
        {"source": "/d", "destination": "/e", "recursive": True},
    ]
    assert transfer_items(["/a /b"], recursive=True)[0]["recursive"] is True
    for bad in (["/a"], ["/a /b /c"], ["/a /b --sync"], ["'/a /b"]):
        with pytest.raises(BatchError, match="batch line 1"):
            transfer_items(bad, recursive=False)
    assert delete_paths(["/x", "# no", "'/y z'"]) == ["/x", "/y z"]
    with pytest.raises(BatchError, match="line 1"):
        delete_paths(["/x /y"])


def test_times_in_and_out_are_local_iso_8601() -> None:
    now = time.time()
    naive_local = datetime.fromtimestamp(int(now)).isoformat()
    assert parse_time(naive_local, "--since") == int(now)
    assert parse_time("1700000000", "--since") == 1_700_000_000
    utc = datetime.fromtimestamp(1_700_000_000, tz=UTC).isoformat()
    assert parse_time(utc, "--until") == 1_700_000_000
    with pytest.raises(UsageError, match="--until 'soon'"):
        parse_time("soon", "--until")
    shown = local_time(1_700_000_000)
    assert datetime.fromisoformat(shown).timestamp() == 1_700_000_000
    assert shown[-6] in "+-"


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (errors.DaemonUnavailable("http://x", "refused"), 4),
        (errors.AuthenticationError(401, "CredentialMissing", "m"), 6),
        (errors.ConsentRequiredError(401, "ConsentRequired", "m", required_scopes=["s"]), 6),
        (errors.NotFoundError(404, "NotFound", "m"), 3),
        (errors.BadRequestError(400, "BadRequest", "m"), 3),
        (errors.GlobusError(502, "GlobusError", "m"), 3),
        (errors.TaskFailed({"task_id": "t"}), 1),
        (errors.TaskWaitTimeout("t", 1.0, None), 5),
        (UsageError("m"), 2),
        (errors.ConfigurationError("m"), 2),
    ],
)
def test_every_error_has_its_exit_code(error: errors.OrbitError, code: int) -> None:
    assert exit_code(error) == code
