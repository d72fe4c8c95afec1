"""Auth token endpoint, token expiry and refresh, client credentials, consents."""

from __future__ import annotations

import time
from typing import Any

import globus_sdk
import pytest

from radical.orbit.simulator import MAPPED_COLLECTION_ID as MAPPED
from radical.orbit.simulator import TUTORIAL_COLLECTION_1 as C1
from radical.orbit.simulator import Credentials, Simulator, data_access_scope


def test_refresh_token_authorizer_refreshes_after_expiry(
    sim: Simulator, alice: Credentials
) -> None:
    refreshed: list[Any] = []
    auth = globus_sdk.NativeAppAuthClient(alice.client_id)
    authorizer = globus_sdk.RefreshTokenAuthorizer(
        alice.refresh_token,
        auth,
        access_token=alice.access_token,
        expires_at=int(time.time()) + 3600,
        on_refresh=refreshed.append,
    )
    tc = globus_sdk.TransferClient(authorizer=authorizer)
    assert tc.get_endpoint(C1)["id"] == C1
    assert refreshed == []
    sim.expire_token(alice.access_token)
    # 401 -> the authorizer refreshes through /v2/oauth2/token and the SDK retries once
    assert tc.get_endpoint(C1)["id"] == C1
    assert len(refreshed) == 1
    assert authorizer.access_token != alice.access_token
    token_data = refreshed[0].by_resource_server["transfer.api.globus.org"]
    assert token_data["expires_at_seconds"] > time.time() + 3000
    assert sim.request_counts()["get_endpoint"] == 3


def test_refresh_answer_carries_the_refresh_token_so_refreshing_twice_works(
    sim: Simulator, alice: Credentials
) -> None:
    """globus-sdk replaces its refresh token with the answer's: a missing one would leave
    None behind and the second refresh would fail."""
    answer = globus_sdk.NativeAppAuthClient(alice.client_id).oauth2_refresh_token(
        alice.refresh_token
    )
    assert answer["refresh_token"] == alice.refresh_token  # not rotated, like Globus Auth
    authorizer = globus_sdk.RefreshTokenAuthorizer(
        alice.refresh_token, globus_sdk.NativeAppAuthClient(alice.client_id)
    )
    tc = globus_sdk.TransferClient(authorizer=authorizer)
    for _ in range(2):
        sim.expire_token("alice")
        assert tc.get_endpoint(C1)["id"] == C1
        assert authorizer.refresh_token == alice.refresh_token


def test_refresh_without_initial_access_token(sim: Simulator, alice: Credentials) -> None:
    auth = globus_sdk.NativeAppAuthClient(alice.client_id)
    tc = globus_sdk.TransferClient(
        authorizer=globus_sdk.RefreshTokenAuthorizer(alice.refresh_token, auth)
    )
    assert tc.task_list()["total"] == 0


def test_refresh_with_wrong_client_or_token_fails(sim: Simulator, alice: Credentials) -> None:
    bob = sim.add_user("bob")
    with pytest.raises(globus_sdk.AuthAPIError) as info:
        globus_sdk.NativeAppAuthClient(bob.client_id).oauth2_refresh_token(alice.refresh_token)
    assert info.value.http_status == 401
    with pytest.raises(globus_sdk.AuthAPIError) as info:
        globus_sdk.NativeAppAuthClient(alice.client_id).oauth2_refresh_token("not-a-token")
    assert info.value.http_status == 400


@pytest.mark.parametrize("sim_options", [{"token_lifetime": 0.5}])
def test_tokens_expire_after_their_lifetime(tc: globus_sdk.TransferClient) -> None:
    assert tc.get_endpoint(C1)["id"] == C1
    time.sleep(0.6)
    with pytest.raises(globus_sdk.TransferAPIError) as info:
        tc.get_endpoint(C1)
    assert info.value.http_status == 401
    assert info.value.code == "ClientError.AuthenticationFailed"
    assert "expired" in str(info.value.message)


def test_client_credentials_grant(sim: Simulator, alice: Credentials) -> None:
    client = globus_sdk.ConfidentialAppAuthClient(alice.confidential_client_id, alice.client_secret)
    tokens = client.oauth2_client_credentials_tokens(
        requested_scopes=globus_sdk.TransferClient.scopes.all
    )
    access = tokens.by_resource_server["transfer.api.globus.org"]["access_token"]
    tc = globus_sdk.TransferClient(authorizer=globus_sdk.AccessTokenAuthorizer(access))
    assert tc.get_endpoint(C1)["id"] == C1
    authorizer = globus_sdk.ClientCredentialsAuthorizer(
        client, globus_sdk.TransferClient.scopes.all
    )
    assert globus_sdk.TransferClient(authorizer=authorizer).task_list()["total"] == 0
    wrong = globus_sdk.ConfidentialAppAuthClient(alice.confidential_client_id, "wrong-secret")
    with pytest.raises(globus_sdk.AuthAPIError) as info:
        wrong.oauth2_client_credentials_tokens(
            requested_scopes=globus_sdk.TransferClient.scopes.all
        )
    assert info.value.http_status == 401


def test_token_validate(sim: Simulator, alice: Credentials) -> None:
    auth = globus_sdk.NativeAppAuthClient(alice.client_id)

    def active(token: str) -> bool:
        res = auth.post(
            "/v2/oauth2/token/validate",
            data={"token": token, "client_id": alice.client_id},
            encoding="form",
        )
        return bool(res["active"])

    assert active(alice.access_token) is True
    assert active(alice.refresh_token) is True
    assert active("nonsense") is False
    sim.expire_token(alice.access_token)
    assert active(alice.access_token) is False


def test_consent_required_for_mapped_collection(
    sim: Simulator, alice: Credentials, tc: globus_sdk.TransferClient
) -> None:
    with pytest.raises(globus_sdk.TransferAPIError) as info:
        tc.operation_ls(MAPPED)
    err = info.value
    assert err.http_status == 403
    assert err.code == "ConsentRequired"
    assert err.info.consent_required
    assert err.info.consent_required.required_scopes == [data_access_scope(MAPPED)]
    td = globus_sdk.TransferData(source_endpoint=C1, destination_endpoint=MAPPED)
    td.add_item("/home/share/godata/file1.txt", "/~/f.txt")
    with pytest.raises(globus_sdk.TransferAPIError) as info:
        tc.submit_transfer(td)
    assert info.value.code == "ConsentRequired"
    assert sim.tasks() == []
    sim.grant_consent("alice", MAPPED)
    assert tc.operation_ls(MAPPED)["path"] == "/home/alice/"
    task_id = tc.submit_transfer(td)["task_id"]
    assert sim.wait_task(task_id)["status"] == "SUCCEEDED"
    sim.revoke_consent("alice", MAPPED)
    with pytest.raises(globus_sdk.TransferAPIError):
        tc.operation_stat(MAPPED, "/~/f.txt")


def test_consent_given_at_add_user(sim: Simulator) -> None:
    creds = sim.add_user("erin", consents=[MAPPED])
    tc = globus_sdk.TransferClient(authorizer=globus_sdk.AccessTokenAuthorizer(creds.access_token))
    assert tc.operation_mkdir(MAPPED, "/~/ok")["code"] == "DirectoryCreated"


def test_credentials_repr_hides_tokens(alice: Credentials) -> None:
    assert alice.access_token not in repr(alice)
    assert alice.refresh_token not in repr(alice)
