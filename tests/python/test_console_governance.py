"""The console's governance pages in a real browser: headless Chromium from Debian's packages
(/usr/bin/chromium) driven by Playwright, against a real `gatehouse serve`.

As the admin: a user and ACLs are created through the API; the "explain" page answers ALLOWED
for a READ the ACL grants and DENIED for a WRITE that a prefixed DENY binding forbids (naming
that binding and the ALLOW it overrides), and says "no binding allows it" otherwise; the keys
pages list a key, rotate it (the rotation history grows, naming who rotated) and refuse a
destroy without the typed confirmation; the evidence page downloads the package of the last
day, which Python's tarfile opens and whose manifest matches every file. Screenshots:
docs/images/console-explain.png, console-keys.png, console-evidence.png (docs/console.md).

Skipped, with the reason, when Chromium or the playwright module is missing (CI installs both).
"""

import hashlib
import json
import tarfile
import time

import pytest

from console_support import admin_api as api, browser, csrf_of, login_ok as login, require_browser, shot  # noqa: F401
from conftest import SERVE_TEST_CONFIG, start_serve, unique


require_browser()


@pytest.fixture(scope="module")
def serve(request):
    # A short self-check interval, so the evidence page shows a verified trail within seconds.
    s, finish = start_serve(
        request, config=SERVE_TEST_CONFIG + "\n[audit]\nself_check_interval_ms = 500\n")
    yield s
    finish()


def explain(page, principal, rtype, name, operation):
    page.fill("#principal", principal)
    page.select_option("#resource_type", rtype)
    page.fill("#resource_name", name)
    page.select_option("#operation", operation)
    page.click("#explain-form button[type=submit]")
    return page.inner_text("#explain-decision")


def test_explain_keys_and_evidence(serve, browser):
    base = f"http://127.0.0.1:{serve.admin_port}"
    user = unique("carol")
    topic = unique("orders")
    pay = unique("payments")
    principal = f"User:{user}"
    assert api(serve, "POST", "/v1/users", {"name": user, "password": "pw-" + unique("c")})[0] == 201
    for acl in (
        {"principal": principal, "resource_type": "topic", "resource_name": topic,
         "operation": "read"},
        {"principal": principal, "resource_type": "topic", "resource_name": pay,
         "operation": "write"},
        {"principal": principal, "resource_type": "topic", "resource_name": "payments-",
         "pattern_type": "prefixed", "operation": "write", "permission": "deny"},
    ):
        status, body = api(serve, "POST", "/v1/acls", acl)
        assert status == 201, body

    ctx = browser.new_context(viewport={"width": 1280, "height": 900}, accept_downloads=True)
    page = ctx.new_page()
    try:
        login(page, base, "admin", serve.admin_password)

        # --- Explain: linked from the access page.
        page.goto(f"{base}/console/access")
        page.click("#explain-link")
        assert page.url == f"{base}/console/access/explain"
        assert explain(page, principal, "topic", topic, "READ") == "ALLOWED"
        matched = page.inner_text("#explain-matched")
        assert topic in matched and "ALLOW" in matched and "LITERAL" in matched
        assert "ALLOWED by" in page.inner_text("#explain-reason")
        # The form keeps what was asked.
        assert page.input_value("#principal") == principal

        assert explain(page, principal, "topic", pay, "WRITE") == "DENIED"
        matched = page.inner_text("#explain-matched")
        assert "DENY" in matched and "payments-" in matched and "PREFIXED" in matched
        assert pay in page.inner_text("#explain-overridden")
        assert "wins over any ALLOW" in page.inner_text("#explain-reason")
        shot(page, "explain")

        assert explain(page, principal, "topic", unique("other"), "READ") == "DENIED"
        assert "no binding allows" in page.inner_text("#explain-reason")
        assert page.locator("#explain-matched").count() == 0

        # Server-side validation, with the message on the page; CSRF is required.
        r = page.request.post(f"{base}/console/access/explain", max_redirects=0, form={
            "csrf": csrf_of(page), "principal": "carol", "resource_type": "topic",
            "resource_name": "t", "operation": "READ"})
        assert r.status == 422 and "Type:name" in r.text()
        r = page.request.post(f"{base}/console/access/explain", max_redirects=0, form={
            "principal": principal, "resource_type": "topic", "resource_name": topic,
            "operation": "READ"})
        assert r.status == 403

        # --- Keys: create one through the form, rotate it, the history grows.
        key = unique("pii")
        page.click("nav >> text=Keys")
        assert page.url == f"{base}/console/keys"
        page.fill("#key-name", key)
        page.click("#create-key button[type=submit]")
        assert page.url.startswith(f"{base}/console/keys/{key}")
        assert "created" in page.inner_text(".msg.ok")
        history = page.locator("#key-history tbody tr")
        assert history.count() == 1
        page.click("#rotate-key button[type=submit]")
        assert "rotated" in page.inner_text(".msg.ok")
        assert history.count() == 2
        second = history.nth(1).inner_text()
        assert "rotated" in second and "User:admin" in second
        shot(page, "keys")
        # Destroying needs the name typed again; a wrong one destroys nothing.
        page.fill("#confirm", "not-" + key)
        page.click("#destroy-key button[type=submit]")
        assert "type its name" in page.inner_text(".msg.error")
        assert page.inner_text(".key-state") == "active"
        page.goto(f"{base}/console/keys")
        row = page.locator(f"tr[data-key='{key}']")
        assert row.count() == 1 and "active" in row.inner_text()
        assert row.locator("td").nth(3).inner_text() == "2"
        # The list without a CSRF token refuses changes.
        r = page.request.post(f"{base}/console/keys/{key}/rotate", max_redirects=0, form={})
        assert r.status == 403
        status, k = api(serve, "GET", f"/v1/keys/{key}")
        assert status == 200 and len(k["history"]) == 2, k

        # --- Evidence: linked from the audit page, the status shown, the download opened.
        page.goto(f"{base}/console/audit")
        page.click("#evidence-link")
        assert page.url == f"{base}/console/audit/evidence"
        deadline = time.monotonic() + 30
        while not page.inner_text("#self-check").startswith("healthy"):
            assert not page.inner_text("#self-check").startswith("FAILING")
            assert time.monotonic() < deadline, page.inner_text("#verification")
            time.sleep(0.5)
            page.reload()
        assert page.input_value("#from").endswith("Z") and page.input_value("#to").endswith("Z")
        shot(page, "evidence")
        page.fill("#from", "yesterday")
        page.click("#evidence-form button[type=submit]")
        assert "not an RFC 3339 time" in page.inner_text(".msg.error")
        page.goto(f"{base}/console/audit/evidence")
        with page.expect_download() as info:
            page.click("#evidence-form button[type=submit]")
        download = info.value
        name = download.suggested_filename
        assert name.startswith("gatehouse-evidence-") and name.endswith(".tar.gz"), name
        with tarfile.open(download.path(), "r:gz") as tar:
            members = {m.name: m for m in tar.getmembers()}
            top = name[: -len(".tar.gz")]
            assert all(n.startswith(top + "/") for n in members), list(members)
            manifest = json.load(tar.extractfile(members[f"{top}/manifest.json"]))
            assert manifest["verdict"] == "PASSED"
            assert manifest["operator"] == "User:admin"
            assert manifest["format"] == "gatehouse-evidence/v1"
            # Every file of the manifest is in the archive with its SHA-256, and nothing else.
            assert set(members) == {f"{top}/{f}" for f in manifest["files"]} | {
                f"{top}/manifest.json"}
            for rel, digest in manifest["files"].items():
                data = tar.extractfile(members[f"{top}/{rel}"]).read()
                assert hashlib.sha256(data).hexdigest() == digest, rel
            access = json.load(tar.extractfile(members[f"{top}/populations/audit-access.json"]))
            assert any(e["data"]["method"] == "audit.evidence" for e in access)
            changes = json.load(
                tar.extractfile(members[f"{top}/populations/access-changes.json"]))
            assert any(e["data"]["method"] == "kafka.CreateAcls" for e in changes)
    finally:
        ctx.close()
