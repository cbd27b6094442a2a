"""The web console's SSO login (OIDC authorization-code flow with PKCE) in a real browser,
against a real OpenID provider and a real `gatehouse serve`.

The provider is tests/oidc/issuer.mjs (panva/oidc-provider under node, loopback only): the
console's client `console-test` (confidential, authorization_code, redirect URIs on loopback
with any port), test user `alice` / `alice-password` on its login page. `gatehouse serve` runs
with `--oidc-issuer <issuer> --oidc-audience urn:kafka:gateway` and `[console]
oidc_client_id = "console-test"`, the client secret in a file.

Headless Chromium (Debian's /usr/bin/chromium) driven by Playwright clicks "Sign in with SSO",
logs in at the provider and lands on the overview as `User:alice` — the principal of the access
token, which the console then presents as `Authorization: Bearer` to the REST handlers: the
topics page lists only the topic alice has an ACL for; the audit-trail page shows the trail to
her (she holds the auditor role) through the same token. A forged state is refused (403, audited), the pending
sign-in cannot be replayed, and a code the issuer never issued fails the exchange (401,
audited). Writes docs/images/console-sso.png.

Skipped, with the reason, when Chromium, the playwright module or node is missing.
"""

import json
import os
import shutil
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

import pytest

from console_support import IMAGES, ROOT, admin_api as admin_call, browser, require_browser  # noqa: F401
from conftest import SERVE_TEST_CONFIG, start_serve, unique

OIDC_DIR = ROOT / "tests" / "oidc"
AUDIENCE = "urn:kafka:gateway"
CLIENT_ID = "console-test"
CLIENT_SECRET = "console-secret-456"
USER, PASSWORD = "alice", "alice-password"

if shutil.which("node") is None:
    pytest.skip("node is not on PATH: the OIDC issuer (tests/oidc/issuer.mjs) needs Node.js",
                allow_module_level=True)
require_browser()


# --- fixtures ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def issuer():
    if not (OIDC_DIR / "node_modules" / "oidc-provider").is_dir():
        subprocess.run(["npm", "ci", "--prefix", str(OIDC_DIR), "--no-audit", "--no-fund"],
                       check=True, timeout=300)
    proc = subprocess.Popen([shutil.which("node"), str(OIDC_DIR / "issuer.mjs"), "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url, lines = None, []
    deadline = time.monotonic() + 30
    try:
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
            if line.startswith("READY "):
                url = line.split()[1]
                break
        if url is None:
            raise RuntimeError("the OIDC issuer did not print READY:\n" + "".join(lines))
        threading.Thread(target=lambda: [None for _ in proc.stdout], daemon=True).start()
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


@pytest.fixture(scope="module")
def serve(request, issuer):
    secrets_dir = tempfile.mkdtemp(prefix="gatehouse-console-sso-")
    secret_file = os.path.join(secrets_dir, "client-secret")
    with open(secret_file, "w") as f:
        f.write(CLIENT_SECRET + "\n")
    config = SERVE_TEST_CONFIG + f"""
[console]
oidc_client_id = "{CLIENT_ID}"
oidc_client_secret_file = "{secret_file}"
oidc_scopes = ["kafka"]
"""
    s, finish = start_serve(request, config=config,
                            extra_args=["--oidc-issuer", issuer, "--oidc-audience", AUDIENCE])
    yield s
    finish()
    shutil.rmtree(secrets_dir, ignore_errors=True)


# --- helpers -------------------------------------------------------------------------------

def login_events(serve, granted):
    q = urllib.parse.urlencode({"method": "console.login", "granted": granted, "limit": 500})
    _, found = admin_call(serve, "GET", f"/v1/audit/events?{q}")
    return [e["data"] for e in found["events"]]


def sso_login(page, base):
    page.goto(f"{base}/console/login")
    page.click("#sso")
    # The issuer's own login page.
    page.wait_for_selector("input[name=login]")
    assert not page.url.startswith(base)
    page.fill("input[name=login]", USER)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{base}/console", timeout=30000)


# --- tests ---------------------------------------------------------------------------------

def test_sso_login_acts_as_the_token_principal(serve, browser):
    base = f"http://127.0.0.1:{serve.admin_port}"
    seen, hidden = unique("sso-seen"), unique("sso-hidden")
    for t in (seen, hidden):
        assert admin_call(serve, "POST", "/v1/topics", {"name": t, "partitions": 1})[0] == 201
    assert admin_call(serve, "POST", "/v1/acls", {
        "principal": f"User:{USER}", "resource_type": "TOPIC", "resource_name": seen,
        "operation": "DESCRIBE"})[0] == 201

    ctx = browser.new_context(viewport={"width": 1280, "height": 900})
    page = ctx.new_page()
    try:
        # The login page offers SSO next to the password form.
        page.goto(f"{base}/console/login")
        assert page.inner_text("#sso") == "Sign in with SSO"
        assert page.get_attribute("#sso", "href") == "/console/login/oidc"

        sso_login(page, base)
        assert f"User:{USER}" in page.inner_text("header")
        # /v1/cluster answers with the caller's principal: the Bearer token's subject.
        page.wait_for_selector("#cluster")
        assert f"User:{USER}" in page.inner_text("#cluster")
        cookies = {c["name"]: c for c in ctx.cookies()}
        session = cookies["gh_session"]
        assert session["httpOnly"] and session["sameSite"] == "Strict"
        assert "gh_oidc" not in cookies, "the pre-login cookie is cleared"
        shot_dir = IMAGES
        shot_dir.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(shot_dir / "console-sso.png"), full_page=True)

        # The topics page shows data through the Bearer identity: alice's ACL decides.
        page.click("nav >> text=Topics")
        assert page.locator(f"tr[data-topic='{seen}']").count() == 1
        assert page.locator(f"tr[data-topic='{hidden}']").count() == 0
        # No token in any page.
        for path in ("/console", "/console/topics", "/console/access"):
            page.goto(base + path)
            assert "eyJ" not in page.content()

        # The audit trail through the Bearer identity once alice holds the auditor role (the
        # audit-trail endpoints take her access token like the others).
        assert admin_call(serve, "POST", "/v1/roles", {
            "principal": f"User:{USER}", "role": "auditor", "resource_type": "cluster",
            "resource_name": "kafka-cluster"})[0] == 200
        resp = page.goto(f"{base}/console/audit")
        assert resp.status == 200
        assert page.locator("#events").count() == 1
        page.goto(f"{base}/console/topics")
        assert page.url == f"{base}/console/topics"

        # The login is audited as granted, with the OIDC mechanism.
        granted = [e for e in login_events(serve, "true")
                   if e.get("principal") == f"User:{USER}"]
        assert granted, "no granted console.login event for alice"
        assert "OIDC/CODE" in json.dumps(granted[-1])

        # Logout ends the session.
        page.click("header button[type=submit]")
        assert page.url == f"{base}/console/login"
        page.goto(f"{base}/console")
        assert page.url == f"{base}/console/login"
    finally:
        ctx.close()
    with open(serve.log_path, encoding="utf-8", errors="replace") as f:
        log = f.read()
    assert CLIENT_SECRET not in log and "eyJ" not in log


def test_forged_state_is_refused(serve, browser):
    base = f"http://127.0.0.1:{serve.admin_port}"
    ctx = browser.new_context()
    page = ctx.new_page()
    try:
        # Start a sign-in: a redirect to the issuer, and the pre-login cookie.
        r = ctx.request.get(f"{base}/console/login/oidc", max_redirects=0)
        assert r.status == 303
        location = r.headers["location"]
        q = urllib.parse.parse_qs(urllib.parse.urlsplit(location).query)
        assert q["response_type"] == ["code"] and q["client_id"] == [CLIENT_ID]
        assert q["code_challenge_method"] == ["S256"] and len(q["code_challenge"][0]) == 43
        assert q["scope"] == ["openid kafka"] and q["resource"] == [AUDIENCE]
        assert q["redirect_uri"] == [f"{base}/console/oidc/callback"]
        state = q["state"][0]
        pre = next(c for c in ctx.cookies() if c["name"] == "gh_oidc")
        assert pre["httpOnly"] and pre["sameSite"] == "Lax"

        # The issuer "answers" with another state: refused, no session.
        page.goto(f"{base}/console/oidc/callback?code=forged&state={'0' * 64}")
        assert "state mismatch" in page.inner_text(".msg.error")
        assert not [c for c in ctx.cookies() if c["name"] == "gh_session"]
        # The pending sign-in was used up: even its real state no longer works.
        resp = page.goto(f"{base}/console/oidc/callback?code=forged&state={state}")
        assert resp.status == 403
        assert "expired or was not started by this browser" in page.inner_text(".msg.error")

        # Without any pending sign-in (another browser's callback URL): refused as well.
        other = browser.new_context()
        try:
            p2 = other.new_page()
            resp = p2.goto(f"{base}/console/oidc/callback?code=x&state={state}")
            assert resp.status == 403
            assert "Traceback" not in p2.content() and "panicked" not in p2.content()
        finally:
            other.close()

        # The right state with a code the issuer never issued: the exchange fails, refused.
        r = ctx.request.get(f"{base}/console/login/oidc", max_redirects=0)
        state = urllib.parse.parse_qs(
            urllib.parse.urlsplit(r.headers["location"]).query)["state"][0]
        resp = page.goto(f"{base}/console/oidc/callback?code=never-issued&state={state}")
        assert resp.status == 401
        assert "invalid_grant" in page.inner_text(".msg.error")
        assert not [c for c in ctx.cookies() if c["name"] == "gh_session"]

        # The refusals are audited like failed logins.
        refused = json.dumps(login_events(serve, "false"))
        assert "state does not match" in refused
        assert "without a pending sign-in" in refused
        assert "code exchange failed" in refused
        assert "OIDC/CODE" in refused
    finally:
        ctx.close()

