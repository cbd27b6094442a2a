"""The console's data pages (src/console/data/) in a real browser: headless Chromium from
Debian's packages (/usr/bin/chromium) driven by Playwright, against a real `gatehouse serve`.

* Schemas: register an Avro schema through the "new subject" form, a second version through
  the subject's register form, a compatibility check that fails with the registry's verbose
  reason on the page, the two versions side by side, the subject list with its latest version,
  type and compatibility level.
* A topic with schema validation, created through the console's form: a valid record (JSON
  Schema in Confluent's wire format) and a poison pill produced with confluent-kafka through
  the gateway; the topic page (linked from the topics list) shows the rejected count, the
  message browser the valid record with its schema id.
* An encrypted topic (`gatehouse.encryption.readers=role`) seen by a user who may READ it but
  not decrypt it: the browser shows the ciphertext with the "encrypted" badge, never the
  plaintext.

Screenshots: docs/images/console-schemas.png, console-schema-versions.png, console-topic.png,
console-messages.png (used by docs/console.md).

Skipped, with the reason, when Chromium or the playwright module is missing (CI installs both).
"""

import json
import re
import time

import pytest

from console_support import admin_api, browser, login_ok as login, require_browser, shot  # noqa: F401
from conftest import SERVE_TEST_CONFIG, start_serve, unique

TIMEOUT_S = 30

require_browser()
confluent_kafka = pytest.importorskip("confluent_kafka")

ORDER_V1 = json.dumps({
    "type": "record", "name": "Order", "namespace": "console.data",
    "fields": [{"name": "id", "type": "long"}]})
ORDER_V2 = json.dumps({
    "type": "record", "name": "Order", "namespace": "console.data",
    "fields": [{"name": "id", "type": "long"},
               {"name": "note", "type": "string", "default": ""}]})
# A new field without a default: not BACKWARD compatible (old records have no quantity).
ORDER_BAD = json.dumps({
    "type": "record", "name": "Order", "namespace": "console.data",
    "fields": [{"name": "id", "type": "long"},
               {"name": "note", "type": "string", "default": ""},
               {"name": "quantity", "type": "int"}]})
SKU_JSON = json.dumps({
    "$schema": "http://json-schema.org/draft-07/schema#", "title": "Sku", "type": "object",
    "properties": {"sku": {"type": "string"}, "qty": {"type": "integer"}},
    "required": ["sku", "qty"]})


@pytest.fixture(scope="module")
def serve(request):
    s, finish = start_serve(request, config=SERVE_TEST_CONFIG)
    yield s
    finish()


def wait_governance(serve, topic, key, want):
    """The gateway applies a new topic's governance configs asynchronously: wait for them
    (a record produced before would not be governed)."""
    deadline = time.monotonic() + TIMEOUT_S
    while True:
        code, d = admin_api(serve, "GET", f"/v1/topics/{topic}")
        if code == 200 and (d.get("governance") or {}).get(key) == want:
            return
        assert time.monotonic() < deadline, f"{topic}: governance {key} never became {want}: {d}"
        time.sleep(0.1)


def produce_one(serve, topic, value, key=None, headers=None):
    """Produces one record through the gateway (TLS + SCRAM as admin) and returns the
    delivery error (None on success)."""
    p = confluent_kafka.Producer(serve.tls_conf(**{"message.timeout.ms": 15000,
                                                   "linger.ms": 0}))
    errors = []
    p.produce(topic, value, key=key, headers=headers, partition=0,
              on_delivery=lambda err, msg: errors.append(err))
    assert p.flush(TIMEOUT_S) == 0, "not delivered or failed in time"
    return errors[0]


def wire(schema_id: int, payload: bytes) -> bytes:
    """Confluent's wire format: magic 0, big-endian schema id, payload."""
    return b"\x00" + schema_id.to_bytes(4, "big") + payload


def register_through_form(page, base, subject, schema_type, schema):
    """The "new subject" form on /console/schemas; returns the schema id shown."""
    page.goto(f"{base}/console/schemas")
    page.fill("#new-subject", subject)
    page.select_option("#new-subject-form-type", schema_type)
    page.fill("#new-subject-form-schema", schema)
    page.click("#new-subject-form button[type=submit]")
    note = page.inner_text(".msg.ok")
    m = re.search(r"schema id (\d+)", note)
    assert m, note
    return int(m.group(1))


def test_schema_pages(serve, browser):
    base = f"http://127.0.0.1:{serve.admin_port}"
    ctx = browser.new_context(viewport={"width": 1280, "height": 900})
    page = ctx.new_page()
    subject = unique("console-orders") + "-value"
    try:
        login(page, base, "admin", serve.admin_password)
        page.click("nav >> text=Schemas")
        assert page.url == f"{base}/console/schemas"

        # Server-side validation: an empty schema is refused on the page, nothing registered.
        page.fill("#new-subject", subject)
        page.fill("#new-subject-form-schema", "   ")
        page.click("#new-subject-form button[type=submit]")
        assert "Enter the schema text." in page.inner_text(".msg.error")

        # Register the first version through the new-subject form.
        first_id = register_through_form(page, base, subject, "AVRO", ORDER_V1)
        assert page.url.startswith(f"{base}/console/schemas/{subject}")
        assert f"Registered under {subject}" in page.inner_text(".msg.ok")

        # A second, compatible version through the subject's own register form.
        page.fill("#register-form-schema", ORDER_V2)
        page.click("#register-form button[type=submit]")
        assert "Registered under" in page.inner_text(".msg.ok")

        # A compatibility check that fails, with the registry's verbose reason.
        page.fill("#check-schema", ORDER_BAD)
        page.click("#check-form button[type=submit]")
        verdict = page.inner_text("#check-verdict")
        assert "Incompatible" in verdict, verdict
        reasons = page.inner_text("#check-messages")
        assert "READER_FIELD_MISSING_DEFAULT_VALUE" in reasons and "quantity" in reasons, reasons
        assert page.input_value("#check-schema") == ORDER_BAD, "the form keeps the text"
        # A compatible one passes.
        page.fill("#check-schema", ORDER_V2)
        page.click("#check-form button[type=submit]")
        assert "Compatible" in page.inner_text("#check-verdict")

        # Registering the incompatible schema is refused with the registry's message.
        page.fill("#register-form-schema", ORDER_BAD)
        page.click("#register-form button[type=submit]")
        err = page.inner_text(".msg.error")
        assert "not registered" in err and "409" in err, err

        # The two latest versions side by side, pretty-printed.
        page.goto(f"{base}/console/schemas/{subject}")
        left, right = page.inner_text("#left h2"), page.inner_text("#right h2")
        assert left.startswith("Version 1") and f"schema id {first_id}" in left, left
        assert right.startswith("Version 2"), right
        assert '"note"' not in page.inner_text("#left-schema")
        assert '"note"' in page.inner_text("#right-schema")
        assert '\n  "type": "record"' in page.inner_text("#left-schema"), "indented"
        assert page.inner_text("#subject-compat") == "BACKWARD"
        # A check text long enough to show the form in the screenshot.
        page.fill("#check-schema", ORDER_BAD)
        page.click("#check-form button[type=submit]")
        shot(page, "schema-versions")
        # Picking versions; an unknown one is a message, not a trace.
        page.goto(f"{base}/console/schemas/{subject}?left=2&right=1")
        assert page.inner_text("#left h2").startswith("Version 2")
        page.goto(f"{base}/console/schemas/{subject}?left=9")
        assert "has no version 9" in page.inner_text(".msg.error")
        page.goto(f"{base}/console/schemas/{subject}?left=x")
        assert "whole number" in page.inner_text(".msg.error")

        # The subject list: latest version, type and compatibility level.
        page.goto(f"{base}/console/schemas")
        row = page.locator(f"tr[data-subject='{subject}']")
        cells = row.locator("td")
        assert cells.nth(1).inner_text() == "2"
        assert cells.nth(3).inner_text() == "AVRO"
        assert cells.nth(4).inner_text() == "BACKWARD"
        shot(page, "schemas")

        # Forms are CSRF-checked like every console POST.
        r = page.request.post(f"{base}/console/schemas/{subject}/register",
                              form={"schema": ORDER_V2}, max_redirects=0)
        assert r.status == 403 and "security token" in r.text()
    finally:
        ctx.close()


def test_topic_page_and_message_browser(serve, browser):
    base = f"http://127.0.0.1:{serve.admin_port}"
    ctx = browser.new_context(viewport={"width": 1280, "height": 900})
    page = ctx.new_page()
    topic = unique("console-skus")
    try:
        login(page, base, "admin", serve.admin_password)
        # A topic with schema-id validation, created through the topics form.
        page.goto(f"{base}/console/topics")
        page.fill("#name", topic)
        page.fill("#partitions", "1")
        page.select_option("#value_validation", "schema-id")
        page.click("#create-topic button[type=submit]")
        assert f"Topic {topic} created." in page.inner_text("main")
        wait_governance(serve, topic, "value_validation", "schema-id")
        schema_id = register_through_form(page, base, f"{topic}-value", "JSON", SKU_JSON)

        # Two valid records and one poison pill through the gateway.
        assert produce_one(serve, topic, wire(schema_id, b'{"sku":"a-1","qty":2}')) is None
        assert produce_one(serve, topic, wire(schema_id, b'{"sku":"b-7","qty":1}'),
                           key=b"b-7", headers=[("source", b"console-test")]) is None
        err = produce_one(serve, topic, b"not in wire format")
        assert err is not None and err.code() == confluent_kafka.KafkaError.INVALID_RECORD, err

        # The topics list links to the topic's page, which counts the rejected record.
        page.goto(f"{base}/console/topics")
        page.click(f"tr[data-topic='{topic}'] td.name a")
        assert page.url == f"{base}/console/topics/{topic}"
        assert page.inner_text("#rejected-count") == "1"
        assert page.inner_text("#governance td.value_validation") == "schema-id"
        assert page.locator("#partitions tbody tr").count() == 1
        assert "gatehouse.value.schema.validation" in page.inner_text("#configs")
        shot(page, "topic")

        # The message browser shows the valid records (the poison pill was never stored).
        page.click("#browse")
        assert page.url.startswith(f"{base}/console/topics/{topic}/messages")
        rows = page.locator("#messages tbody tr")
        assert rows.count() == 2
        assert rows.nth(0).locator("td.schema").inner_text() == str(schema_id)
        assert '{"sku":"a-1","qty":2}' in rows.nth(0).locator("td.value").inner_text()
        assert rows.nth(1).locator("td.key").inner_text() == "b-7"
        assert rows.nth(1).locator("td.headers").inner_text() == "source=console-test"
        assert page.locator("#messages .badge.encrypted").count() == 0
        shot(page, "messages")

        # Input is validated on the page.
        page.goto(f"{base}/console/topics/{topic}/messages?limit=1000")
        assert "limit must be a whole number" in page.inner_text(".msg.error").lower()
        page.goto(f"{base}/console/topics/{topic}/messages?partition=7")
        assert "no partition 7" in page.inner_text(".msg.error")
        page.goto(f"{base}/console/topics/no-such-topic-{topic}")
        assert "There is no topic named" in page.inner_text(".msg.error")
    finally:
        ctx.close()


def test_encrypted_topic_shows_the_badge_to_a_reader_without_plaintext(serve, browser):
    base = f"http://127.0.0.1:{serve.admin_port}"
    topic = unique("console-secret")
    user, password = unique("reader"), "pw-" + unique("secret")
    code, body = admin_api(serve, "POST", "/v1/topics", {
        "name": topic, "partitions": 1,
        "configs": {"gatehouse.encryption": "true", "gatehouse.encryption.readers": "role"}})
    assert code == 201, body
    wait_governance(serve, topic, "encryption", True)
    assert produce_one(serve, topic, b"card-holder: Jane Roe") is None
    assert admin_api(serve, "POST", "/v1/users", {"name": user, "password": password})[0] == 201
    assert admin_api(serve, "POST", "/v1/acls", {
        "principal": f"User:{user}", "resource_type": "topic", "resource_name": topic,
        "operation": "read"})[0] == 201

    ctx = browser.new_context()
    page = ctx.new_page()
    try:
        login(page, base, user, password)
        deadline = time.monotonic() + TIMEOUT_S
        while True:
            page.goto(f"{base}/console/topics/{topic}/messages")
            if page.locator("#messages").count() == 1:
                break
            assert time.monotonic() < deadline, page.inner_text("main")
            time.sleep(0.2)
        value = page.locator("#messages tbody tr").nth(0).locator("td.value")
        assert value.locator(".badge.encrypted").inner_text() == "encrypted"
        assert "Jane Roe" not in page.content(), "the console never decodes ciphertext"
    finally:
        ctx.close()
