"""The cross-site attacks both dashboards (daemon and bridge) must refuse."""

from __future__ import annotations

import json
from typing import Any

import httpx

from timing import UNIT

__all__ = ["assert_cross_site_refused"]


def assert_cross_site_refused(
    context: Any, page: Any, *, cancel: str, own: str, jar: dict[str, str]
) -> dict[str, Any]:
    """POST ``cancel`` as other sites would: a form on another site (the browser sends no
    SameSite=Strict cookie: 401), then with the cookie but a foreign origin, a cross-site
    fetch, no CSRF token or a guessed one (403 each). Returns the signed-in page's
    ``/dashboard/api/me``, whose CSRF token the page's own requests carry."""
    attack = (
        f'<form id="f" method="post" action="{cancel}" enctype="text/plain">'
        '<input name="a" value="b"></form>'
        '<script>document.getElementById("f").submit()</script>'
    )
    context.route(
        "http://evil.example/**",
        lambda route: route.fulfill(status=200, content_type="text/html", body=attack),
    )
    evil = context.new_page()
    with evil.expect_response(lambda r: r.url == cancel) as answer:
        evil.goto("http://evil.example/")
    assert answer.value.status == 401

    me: dict[str, Any] = json.loads(page.evaluate("fetch('/dashboard/api/me').then(r => r.text())"))
    refused = [
        {"Origin": "http://evil.example", me["csrf_header"]: me["csrf"]},
        {"Origin": own, "Sec-Fetch-Site": "cross-site", me["csrf_header"]: me["csrf"]},
        {"Origin": own},  # no CSRF token
        {"Origin": own, me["csrf_header"]: "guessed"},
    ]
    for headers in refused:
        refusal = httpx.post(cancel, cookies=jar, headers=headers, timeout=30 * UNIT)
        assert refusal.status_code == 403, (headers, refusal.text)
    return me
