"""The console's actions in a real browser: headless Chromium from Debian's packages
(/usr/bin/chromium) driven by Playwright, against a real `gatehouse serve`.

As the admin, on Users & access: create a user, add an ACL for it, bind a role to it, see all
three listed, unbind the role, remove the ACL, and delete the user (a wrong typed confirmation
refused first). On a topic's page: set a config and see it, delete the override, and delete the
topic (a wrong typed confirmation refused first). A user without permissions gets a refusal
naming their principal; a POST without the CSRF token is 403. Writes
docs/images/console-access-actions.png and console-topic-actions.png (docs/console.md).

Skipped, with the reason, when Chromium or the playwright module is missing (CI installs both).
"""

import time

import pytest

from console_support import admin_api as api, browser, csrf_of, login_ok as login, require_browser, shot  # noqa: F401
from conftest import SERVE_TEST_CONFIG, start_serve, unique

# How long a change may take to show (the broker's metadata propagates asynchronously).
DEADLINE_S = 30

require_browser()


@pytest.fixture(scope="module")
def serve(request):
    s, finish = start_serve(request, config=SERVE_TEST_CONFIG)
    yield s
    finish()


def until(page, url, check, what):
    """Reloads `url` until `check()` holds, or fails after DEADLINE_S."""
    deadline = time.monotonic() + DEADLINE_S
    while not check():
        assert time.monotonic() < deadline, f"{what}: {page.inner_text('main')}"
        time.sleep(0.25)
        page.goto(url)


def row(page, table, key):
    return page.locator(f"#{table} tbody tr[data-row='{key}']")


def test_access_actions(serve, browser):
    base = f"http://127.0.0.1:{serve.admin_port}"
    access = f"{base}/console/access"
    user = unique("console-user").replace("-", "_")
    password = "pw-" + unique("secret")
    principal = f"User:{user}"
    topic = unique("acl-topic")
    ctx = browser.new_context(viewport={"width": 1280, "height": 900})
    page = ctx.new_page()
    try:
        login(page, base, "admin", serve.admin_password)
        page.goto(access)

        # Create a user: back on the page with a note, the user listed, no password anywhere.
        page.fill("#user-name", user)
        page.fill("#user-password", password)
        page.click("#create-user button[type=submit]")
        assert page.url.startswith(f"{access}?done=user-created")
        assert f"User {user} created." in page.inner_text(".msg.ok")
        until(page, access, lambda: row(page, "users", user).count() == 1, "user listed")
        assert principal in row(page, "users", user).inner_text()
        assert password not in page.content()
        # Invalid input is refused on the page, nothing reaches the API.
        r = page.request.post(f"{access}/users", max_redirects=0, form={
            "name": "bad name", "password": "x", "csrf": csrf_of(page)})
        assert r.status == 422 and "may not contain spaces" in r.text()
        r = page.request.post(f"{access}/users", max_redirects=0, form={
            "name": unique("nopw"), "password": "", "csrf": csrf_of(page)})
        assert r.status == 422 and "Enter a password" in r.text()

        # Add an ACL for it.
        page.fill("#acl-principal", principal)
        page.select_option("#acl-resource-type", "TOPIC")
        page.fill("#acl-resource-name", topic)
        page.select_option("#acl-pattern-type", "LITERAL")
        page.select_option("#acl-operation", "READ")
        page.select_option("#acl-permission", "ALLOW")
        page.click("#add-acl button[type=submit]")
        assert f"ACL for {principal} added." in page.inner_text(".msg.ok")
        until(page, access, lambda: row(page, "acls", principal).count() == 1, "ACL listed")
        acl = row(page, "acls", principal).inner_text()
        assert topic in acl and "READ" in acl and "ALLOW" in acl
        # The API's own validation is shown as its message (422).
        r = page.request.post(f"{access}/acls", max_redirects=0, form={
            "principal": principal, "resource_type": "TOPIC", "resource_name": topic,
            "operation": "READ", "host": "not-an-ip", "csrf": csrf_of(page)})
        assert r.status == 422 and "IP address" in r.text()

        # Bind a role from the known roles.
        page.fill("#role-principal", principal)
        page.select_option("#role-role", "developer-read")
        page.select_option("#role-resource-type", "topic")
        page.fill("#role-resource-name", topic)
        page.click("#bind-role button[type=submit]")
        assert f"Role bound to {principal}." in page.inner_text(".msg.ok")
        until(page, access, lambda: row(page, "roles", principal).count() == 1, "binding listed")
        assert "developer-read" in row(page, "roles", principal).inner_text()
        # A role that is not a known one is refused on the page.
        r = page.request.post(f"{access}/roles", max_redirects=0, form={
            "principal": principal, "role": "god", "resource_type": "topic",
            "resource_name": topic, "csrf": csrf_of(page)})
        assert r.status == 422 and "The role must be one of" in r.text()
        shot(page, "access-actions")

        # Unbind the role, remove the ACL.
        row(page, "roles", principal).locator("form.unbind-role button").click()
        assert f"Role binding of {principal} removed." in page.inner_text(".msg.ok")
        until(page, access, lambda: row(page, "roles", principal).count() == 0, "binding gone")
        row(page, "acls", principal).locator("form.remove-acl button").click()
        assert f"ACL for {principal} removed." in page.inner_text(".msg.ok")
        until(page, access, lambda: row(page, "acls", principal).count() == 0, "ACL gone")

        # Delete the user: a wrong confirmation deletes nothing.
        form = row(page, "users", user).locator("form.delete-user")
        form.locator("input[name=confirm]").fill(user + "x")
        form.locator("button").click()
        assert "Nothing was deleted" in page.inner_text(".msg.error")
        assert row(page, "users", user).count() == 1
        form = row(page, "users", user).locator("form.delete-user")
        form.locator("input[name=confirm]").fill(user)
        form.locator("button").click()
        assert f"User {user} deleted" in page.inner_text(".msg.ok")
        until(page, access, lambda: row(page, "users", user).count() == 0, "user gone")

        # Without the CSRF token every action is refused.
        for path, form in [
            ("/users", {"name": unique("csrf-user"), "password": "x"}),
            ("/users/delete", {"name": "admin", "confirm": "admin"}),
            ("/acls", {"principal": principal, "resource_type": "TOPIC",
                       "resource_name": topic, "operation": "READ"}),
            ("/roles/unbind", {"principal": principal, "role": "developer-read",
                               "resource_type": "topic", "resource_name": topic}),
        ]:
            r = page.request.post(f"{access}{path}", form=form, max_redirects=0)
            assert r.status == 403 and "security token" in r.text(), path
        page.goto(access)
        assert row(page, "users", "admin").count() == 1
    finally:
        ctx.close()
    with open(serve.log_path, encoding="utf-8", errors="replace") as f:
        assert password not in f.read()


def test_topic_actions(serve, browser):
    base = f"http://127.0.0.1:{serve.admin_port}"
    topic = unique("action-topic")
    status, body = api(serve, "POST", "/v1/topics", {"name": topic, "partitions": 1})
    assert status == 201, body
    url = f"{base}/console/topics/{topic}"
    ctx = browser.new_context(viewport={"width": 1280, "height": 900})
    page = ctx.new_page()

    def config(key):
        cells = page.locator(f"#configs tbody tr:has(td.name:text-is('{key}'))").locator("td")
        return cells.nth(1).inner_text(), cells.nth(2).inner_text()

    try:
        login(page, base, "admin", serve.admin_password)
        page.goto(url)

        # Set a config: the note, then the new value in the configs table.
        page.fill("#config-key", "retention.ms")
        page.fill("#config-value", "123456789")
        page.select_option("#config-op", "set")
        page.click("#edit-config button[type=submit]")
        assert "done=set" in page.url
        assert "Config retention.ms set." in page.inner_text(".msg.ok")
        until(page, url, lambda: config("retention.ms")[0] == "123456789", "config set")
        shot(page, "topic-actions")

        # Delete the override: back to the default.
        page.fill("#config-key", "retention.ms")
        page.select_option("#config-op", "delete")
        page.click("#edit-config button[type=submit]")
        assert "override of retention.ms was deleted" in page.inner_text(".msg.ok")
        until(page, url, lambda: config("retention.ms")[0] != "123456789", "override deleted")

        # Invalid input is refused on the page; the broker's refusal is shown as its message.
        r = page.request.post(f"{url}/configs", max_redirects=0, form={
            "key": "<bad>", "value": "1", "op": "set", "csrf": csrf_of(page)})
        assert r.status == 422 and "A config name has at most" in r.text()
        assert "<bad>" not in r.text()
        r = page.request.post(f"{url}/configs", max_redirects=0, form={
            "key": "no.such.config", "value": "1", "op": "set", "csrf": csrf_of(page)})
        assert r.status in (400, 404, 422) and "Changing the config was refused" in r.text()

        # Delete the topic: a wrong confirmation deletes nothing.
        page.fill("#confirm-topic", topic + "-not")
        page.click("#delete-topic button[type=submit]")
        assert "Nothing was deleted" in page.inner_text(".msg.error")
        assert page.inner_text("#summary td.name") == topic
        page.fill("#confirm-topic", topic)
        page.click("#delete-topic button[type=submit]")
        assert page.url.startswith(f"{base}/console/topics?deleted=")
        assert f"Topic {topic} deleted." in page.inner_text(".msg.ok")
        until(page, f"{base}/console/topics",
              lambda: page.locator(f"tr[data-topic='{topic}']").count() == 0, "topic gone")

        # Without the CSRF token: 403, nothing changed.
        r = page.request.post(f"{url}/configs", max_redirects=0,
                              form={"key": "retention.ms", "value": "1"})
        assert r.status == 403 and "security token" in r.text()
        r = page.request.post(f"{url}/delete", max_redirects=0, form={"confirm": topic})
        assert r.status == 403
    finally:
        ctx.close()


def test_actions_refused_for_a_user_without_permissions(serve, browser):
    """The console decides nothing: the gateway refuses, and the page says the principal may
    not do it."""
    base = f"http://127.0.0.1:{serve.admin_port}"
    user, password = unique("viewer").replace("-", "_"), "pw-" + unique("secret")
    status, body = api(serve, "POST", "/v1/users", {"name": user, "password": password})
    assert status == 201, body
    topic = unique("guarded-topic")
    status, body = api(serve, "POST", "/v1/topics", {"name": topic, "partitions": 1})
    assert status == 201, body
    ctx = browser.new_context()
    page = ctx.new_page()
    try:
        # The user may log in once the gateway knows the credential.
        deadline = time.monotonic() + DEADLINE_S
        while True:
            page.goto(f"{base}/console/login")
            page.fill("input[name=username]", user)
            page.fill("input[name=password]", password)
            page.click("button[type=submit]")
            if page.url == f"{base}/console":
                break
            assert time.monotonic() < deadline, page.inner_text("main")
            time.sleep(0.25)
        page.goto(f"{base}/console/access")
        page.fill("#user-name", unique("sneaky").replace("-", "_"))
        page.fill("#user-password", "pw-x")
        page.click("#create-user button[type=submit]")
        msg = page.inner_text(".msg.error")
        assert f"your principal User:{user} is not allowed to do this" in msg, msg
        assert "AUTHORIZATION_FAILED" in msg, msg

        page.fill("#role-principal", f"User:{user}")
        page.select_option("#role-role", "resource-owner")
        page.fill("#role-resource-name", "*")
        page.click("#bind-role button[type=submit]")
        assert f"your principal User:{user} is not allowed" in page.inner_text(".msg.error")

        # The topic's page is not visible to them, and its actions are refused by the gateway.
        r = page.request.post(f"{base}/console/topics/{topic}/delete", max_redirects=0,
                              form={"confirm": topic, "csrf": csrf_of(page)})
        assert r.status == 403, r.text()
        assert "not allowed" in r.text()
        assert password not in page.content()
    finally:
        ctx.close()
    status, body = api(serve, "GET", f"/v1/topics/{topic}")
    assert status == 200, "the refused delete deleted nothing"
