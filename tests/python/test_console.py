"""The web console (issue 7) in a real browser: headless Chromium from Debian's packages
(/usr/bin/chromium) driven by Playwright (pip; `playwright install` is never needed), against
a real `gatehouse serve`.

Logs in as the admin, creates a topic with validation and encryption through the form, sees it
listed with its governance state, filters the audit trail, checks that a POST without the CSRF
token is refused (403) and that logging out leads back to the login page. Screenshots of the
main pages are written to docs/images/console-*.png (used by docs/console.md).

Skipped, with the reason, when Chromium or the playwright module is missing (CI installs both:
`chromium` in .ci/run, `playwright` in requirements-test.txt).
"""

import time
import urllib.error
import urllib.request

import pytest

from console_support import browser, csrf_of, login, require_browser, shot  # noqa: F401
from conftest import SERVE_TEST_CONFIG, start_serve, unique


require_browser()


@pytest.fixture(scope="module")
def serve(request):
    # A short self-check interval, so the pages show a verified trail within seconds.
    s, finish = start_serve(
        request, config=SERVE_TEST_CONFIG + "\n[audit]\nself_check_interval_ms = 500\n")
    yield s
    finish()


def test_console_end_to_end(serve, browser):
    base = f"http://127.0.0.1:{serve.admin_port}"
    ctx = browser.new_context(viewport={"width": 1280, "height": 900})
    page = ctx.new_page()
    try:
        # Without a session every page leads to the login form.
        page.goto(f"{base}/console/topics")
        assert page.url == f"{base}/console/login"

        # A wrong password stays on the login page with a message, and sets no session.
        login(page, base, "admin", "wrong-" + serve.admin_password)
        assert page.url == f"{base}/console/login"
        assert "Invalid user name or password" in page.inner_text("main")
        assert not [c for c in ctx.cookies() if c["name"] == "gh_session"]

        login(page, base, "admin", serve.admin_password)
        assert page.url == f"{base}/console"
        cookie = next(c for c in ctx.cookies() if c["name"] == "gh_session")
        assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and cookie["path"] == "/console"
        assert serve.admin_password not in cookie["value"]
        page.wait_for_selector("#cluster")
        assert "User:admin" in page.inner_text("header")
        # The audit self-check runs every 500 ms here: the overview shows it healthy.
        deadline = time.monotonic() + 30
        while not page.inner_text("#self-check").startswith("healthy"):
            assert not page.inner_text("#self-check").startswith("FAILING")
            assert time.monotonic() < deadline, page.inner_text("#audit-status")
            time.sleep(0.5)
            page.reload()
        shot(page, "overview")

        # Create a topic with full value validation and encryption through the form.
        topic = unique("console-topic")
        page.click("nav >> text=Topics")
        assert page.url == f"{base}/console/topics"
        page.fill("#name", topic)
        page.fill("#partitions", "2")
        page.select_option("#value_validation", "full")
        page.check("#encryption")
        page.click("#create-topic button[type=submit]")
        assert f"Topic {topic} created." in page.inner_text("main")
        row = page.locator(f"tr[data-topic='{topic}']")
        assert row.count() == 1
        assert row.locator("td").nth(1).inner_text() == "2"
        assert row.locator("td.value_validation").inner_text() == "full"
        assert row.locator("td.key_validation").inner_text() == "none"
        assert "encrypted" in row.locator("td.encryption").inner_text()
        assert row.locator("td.pan_guard").inner_text() == "off"
        shot(page, "topics")

        # A second create of the same name: the error is shown on the page, the form kept.
        page.fill("#name", topic)
        page.click("#create-topic button[type=submit]")
        assert "TOPIC_ALREADY_EXISTS" in page.inner_text(".msg.error")
        assert page.input_value("#name") == topic
        # The server validates too (the browser's own checks aside): an invalid name is
        # answered on the page, nothing reaches the gateway.
        r = page.request.post(f"{base}/console/topics", max_redirects=0, form={
            "name": "bad name", "partitions": "1", "csrf": csrf_of(page)})
        assert r.status == 422 and "only letters, digits" in r.text()

        # Users and access.
        page.click("nav >> text=Users")
        assert page.url == f"{base}/console/access"
        assert "admin" in page.inner_text("#users")
        assert "Role bindings" in page.inner_text("main")
        shot(page, "access")

        # Audit trail: the filter narrows the events to the ones asked for.
        page.click("nav >> text=Audit trail")
        assert page.inner_text("#self-check").startswith("healthy")
        page.fill("#method", "console.login")
        page.select_option("#granted", "false")
        page.click("#audit-filter button[type=submit]")
        assert "method=console.login" in page.url and "granted=false" in page.url
        rows = page.locator("#events tbody tr")
        assert rows.count() >= 1
        for i in range(rows.count()):
            cells = rows.nth(i).locator("td")
            assert cells.nth(3).inner_text() == "console.login"
            assert cells.nth(6).inner_text() == "no"
        page.fill("#method", "console.login")
        page.select_option("#granted", "true")
        page.click("#audit-filter button[type=submit]")
        rows = page.locator("#events tbody tr")
        assert rows.count() >= 1
        assert all(rows.nth(i).locator("td").nth(6).inner_text() == "yes"
                   for i in range(rows.count()))
        assert "User:admin" in rows.nth(0).locator("td").nth(1).inner_text()
        page.fill("#method", "")
        page.select_option("#granted", "any")
        page.fill("#limit", "25")
        page.click("#audit-filter button[type=submit]")
        shot(page, "audit")
        # Invalid filters are refused with a message (no stack trace, no query).
        page.goto(f"{base}/console/audit?limit=100000")
        assert "Show must be a number" in page.inner_text(".msg.error")

        # A POST with the session cookie but without the CSRF token is refused.
        r = page.request.post(f"{base}/console/topics",
                              form={"name": unique("csrf-topic"), "partitions": "1"},
                              max_redirects=0)
        assert r.status == 403
        assert "security token" in r.text()
        r = page.request.post(f"{base}/console/topics",
                              form={"name": unique("csrf-topic"), "partitions": "1",
                                    "csrf": "0" * 64},
                              max_redirects=0)
        assert r.status == 403
        csp = r.headers.get("content-security-policy", "")
        assert csp.startswith("default-src 'self'")

        # No page carries the password.
        for path in ("/console", "/console/topics", "/console/access", "/console/audit"):
            page.goto(base + path)
            assert serve.admin_password not in page.content()

        # Log out: back to the login page, and the old session no longer works.
        page.click("header button[type=submit]")
        assert page.url == f"{base}/console/login"
        page.goto(f"{base}/console")
        assert page.url == f"{base}/console/login"
    finally:
        ctx.close()


def api_post(serve, path, body):
    import base64
    import json
    auth = base64.b64encode(f"admin:{serve.admin_password}".encode()).decode()
    req = urllib.request.Request(
        f"http://127.0.0.1:{serve.admin_port}{path}", data=json.dumps(body).encode(),
        method="POST", headers={"Authorization": f"Basic {auth}",
                                "Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as r:
        return r.status


def test_console_shows_what_the_user_may_see(serve, browser):
    """A user without permissions logs in, sees no topics and is refused the audit trail and
    the topic creation (by the gateway, shown on the page); nothing leaks their password."""
    base = f"http://127.0.0.1:{serve.admin_port}"
    user, password = unique("viewer"), "pw-" + unique("secret")
    assert api_post(serve, "/v1/users", {"name": user, "password": password}) == 201
    ctx = browser.new_context()
    page = ctx.new_page()
    try:
        login(page, base, user, password)
        assert page.url == f"{base}/console"
        assert f"User:{user}" in page.inner_text("header")
        assert "not allowed" in page.inner_text("#audit-status")
        page.goto(f"{base}/console/topics")
        assert "No topics you may see" in page.inner_text("main")
        page.fill("#name", unique("viewer-topic"))
        page.click("#create-topic button[type=submit]")
        assert "TOPIC_AUTHORIZATION_FAILED" in page.inner_text(".msg.error") \
            or "CLUSTER_AUTHORIZATION_FAILED" in page.inner_text(".msg.error")
        page.goto(f"{base}/console/audit")
        assert "not allowed" in page.inner_text("#verification")
        assert password not in page.content()
    finally:
        ctx.close()
    with open(serve.log_path, encoding="utf-8", errors="replace") as f:
        log = f.read()
    assert password not in log and serve.admin_password not in log


def test_console_errors_are_pages_not_traces(serve):
    base = f"http://127.0.0.1:{serve.admin_port}"
    # An unknown console page is a friendly HTML 404.
    try:
        urllib.request.urlopen(f"{base}/console/no-such-page", timeout=10)
        raise AssertionError("expected 404")
    except urllib.error.HTTPError as e:
        assert e.code == 404
        body = e.read().decode()
        assert "There is no such console page." in body
        assert e.headers["Content-Type"].startswith("text/html")
    # A login POST without the form's token is refused (login CSRF).
    req = urllib.request.Request(f"{base}/console/login",
                                 data=b"username=admin&password=x", method="POST")
    try:
        urllib.request.urlopen(req, timeout=10)
        raise AssertionError("expected 403")
    except urllib.error.HTTPError as e:
        assert e.code == 403
        assert "login form expired" in e.read().decode()
