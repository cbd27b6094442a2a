"""What the console's browser tests share: Debian's Chromium driven by Playwright (the module
skips itself, with the reason, when either is missing), screenshots into docs/images, the
console login and CSRF token, and admin-API calls as `admin`."""

import base64
import json
import os
import pathlib
import urllib.error
import urllib.request

import pytest

CHROMIUM = "/usr/bin/chromium"
ROOT = pathlib.Path(__file__).resolve().parents[2]
IMAGES = ROOT / "docs" / "images"


def require_browser():
    """Skips the calling test module unless Chromium and Playwright are installed; returns
    `playwright.sync_api`. Call at module level."""
    if not os.access(CHROMIUM, os.X_OK):
        pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium)", allow_module_level=True)
    return pytest.importorskip(
        "playwright.sync_api", reason="the playwright module is missing (pip install playwright)")


@pytest.fixture(scope="module")
def browser():
    sync_api = require_browser()
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                  "--disable-background-networking", "--disable-component-update",
                  "--no-first-run"])
        try:
            yield b
        finally:
            b.close()


def shot(page, name):
    """A full-page screenshot as docs/images/console-NAME.png."""
    IMAGES.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(IMAGES / f"console-{name}.png"), full_page=True)


def csrf_of(page):
    """The session's CSRF token, from the logout form every signed-in page carries."""
    return page.get_attribute("header form.logout input[name=csrf]", "value")


def login(page, base, user, password):
    """Submits the login form (the caller checks where it landed)."""
    page.goto(f"{base}/console/login")
    page.fill("input[name=username]", user)
    page.fill("input[name=password]", password)
    page.click("button[type=submit]")


def login_ok(page, base, user, password):
    """Logs in and asserts the overview is shown."""
    login(page, base, user, password)
    assert page.url == f"{base}/console", page.inner_text("main")


def admin_api(serve, method, path, body=None, timeout=60):
    """One admin-API call as admin: (status, JSON body or None); HTTP errors are returned."""
    auth = base64.b64encode(f"admin:{serve.admin_password}".encode()).decode()
    data = None if body is None else json.dumps(body).encode()
    headers = {"Authorization": f"Basic {auth}"}
    if data is not None:
        headers["Content-Type"] = "application/json"
    req = urllib.request.Request(
        f"http://127.0.0.1:{serve.admin_port}{path}", data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")
