"""Schema registry with confluent-kafka's SchemaRegistryClient and Avro serdes.

Starts `gatehouse serve` (broker + registry + admin) on free loopback ports, waits for /health
200 and then for the registry listener (HTTPS with the serve CA), registers Avro, Protobuf and
JSON schemas as `admin` (HTTP Basic), reads them back, checks compatibility, and round-trips an
Avro record through the broker. Without credentials the registry answers 401/40101.

Set GATEHOUSE_TEST_REGISTRY_URL and GATEHOUSE_TEST_BOOTSTRAP to run against an already
running registry and broker instead (GATEHOUSE_TEST_REGISTRY_CA and
GATEHOUSE_TEST_REGISTRY_USER_INFO=`user:password` when it needs them).
"""

import json
import os
import shutil
import ssl
import subprocess
import tempfile
import time
import urllib.error
import urllib.request

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext

from conftest import free_port, gatehouse_bin, unique

ADMIN_PASSWORD = "admin-password-for-registry-tests"

START_DEADLINE_S = 60.0
TIMEOUT_S = 60

USER_V1 = """{"type": "record", "name": "User", "namespace": "py",
  "fields": [{"name": "name", "type": "string"}, {"name": "age", "type": "int"}]}"""
USER_V2 = """{"type": "record", "name": "User", "namespace": "py",
  "fields": [{"name": "name", "type": "string"}, {"name": "age", "type": "int"},
             {"name": "email", "type": ["null", "string"], "default": null}]}"""
USER_BAD = """{"type": "record", "name": "User", "namespace": "py",
  "fields": [{"name": "name", "type": "string"}, {"name": "age", "type": "int"},
             {"name": "score", "type": "double"}]}"""
PROTO = """syntax = "proto3";
package py;

message Order {
  string id = 1;
  int64 amount = 2;
}
"""
JSON_SCHEMA = """{"type": "object", "properties": {"sku": {"type": "string"}}, "required": ["sku"]}"""


def _get(url, ca=None):
    ctx = ssl.create_default_context(cafile=ca) if ca else None
    with urllib.request.urlopen(url, timeout=2, context=ctx) as r:
        return r.status


class Serve:
    """`gatehouse serve` with every listener on a free loopback port."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="gatehouse-sr-")
        self.log_path = os.path.join(self.dir, "serve.log")
        self.broker_port, self.admin_port, self.registry_port = free_port(), free_port(), free_port()
        self.plain_port = free_port()
        self.proc = None

    @property
    def kafka(self):
        """Client settings: through the gateway's plaintext SASL listener, as admin."""
        return {"bootstrap.servers": f"127.0.0.1:{self.plain_port}",
                "security.protocol": "SASL_PLAINTEXT", "sasl.mechanisms": "PLAIN",
                "sasl.username": "admin", "sasl.password": ADMIN_PASSWORD}

    @property
    def bootstrap(self):
        return f"127.0.0.1:{self.broker_port}"

    @property
    def registry_url(self):
        # The serve certificate covers localhost and 127.0.0.1.
        return f"https://localhost:{self.registry_port}"

    @property
    def ca(self):
        return os.path.join(self.dir, "data", "tls", "ca.pem")

    @property
    def sr_conf(self):
        return {"url": self.registry_url, "ssl.ca.location": self.ca,
                "basic.auth.user.info": f"admin:{ADMIN_PASSWORD}"}

    def start(self):
        data = os.path.join(self.dir, "data")
        os.makedirs(data)
        env = dict(os.environ)
        env.setdefault("RUST_LOG", "info")
        env["GATEHOUSE_ADMIN_PASSWORD"] = ADMIN_PASSWORD
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [gatehouse_bin(), "serve", "--data-dir", data,
                 "--broker-listen", self.bootstrap,
                 "--admin-listen", f"127.0.0.1:{self.admin_port}",
                 "--registry-listen", f"127.0.0.1:{self.registry_port}",
                 "--gateway-listen", f"127.0.0.1:{free_port()}",
                 "--gateway-plain-listen", f"127.0.0.1:{self.plain_port}",
                 "--gateway-advertised-host", "localhost"],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=env)
        self._wait(f"http://127.0.0.1:{self.admin_port}/health", "/health 200")
        # Until `serve` starts the registry this wait fails with the message below.
        self._wait(self.registry_url + "/", "the registry listener (is `serve` wired to start it?)",
                   ca=self.ca)

    def _wait(self, url, what, ca=None):
        deadline = time.monotonic() + START_DEADLINE_S
        last = "no attempt"
        while True:
            code = self.proc.poll()
            if code is not None:
                raise RuntimeError(f"gatehouse serve exited with {code}\n{self.log_tail()}")
            try:
                if _get(url, ca) == 200:
                    return
            except (urllib.error.URLError, OSError) as e:
                last = str(e)
            if time.monotonic() > deadline:
                raise RuntimeError(f"waited {START_DEADLINE_S}s for {what} ({last})\n{self.log_tail()}")
            time.sleep(0.05)

    def log_tail(self, lines=200):
        try:
            with open(self.log_path, "rb") as f:
                return "\n".join(f.read().decode("utf-8", "replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self, keep):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        if keep:
            print(f"\n(gatehouse serve data dir and log kept in {self.dir})\n{self.log_tail()}")
        else:
            shutil.rmtree(self.dir, ignore_errors=True)


class External:
    bootstrap = os.environ.get("GATEHOUSE_TEST_BOOTSTRAP", "")
    registry_url = os.environ.get("GATEHOUSE_TEST_REGISTRY_URL", "")
    ca = os.environ.get("GATEHOUSE_TEST_REGISTRY_CA") or None

    @property
    def sr_conf(self):
        conf = {"url": self.registry_url}
        if self.ca:
            conf["ssl.ca.location"] = self.ca
        if os.environ.get("GATEHOUSE_TEST_REGISTRY_USER_INFO"):
            conf["basic.auth.user.info"] = os.environ["GATEHOUSE_TEST_REGISTRY_USER_INFO"]
        return conf


@pytest.fixture(scope="module")
def serve(request):
    if os.environ.get("GATEHOUSE_TEST_REGISTRY_URL"):
        yield External()
        return
    s = Serve()
    failed_before = request.session.testsfailed
    try:
        s.start()
    except Exception:
        s.stop(keep=True)
        raise
    yield s
    s.stop(keep=request.session.testsfailed > failed_before)


@pytest.fixture(scope="module")
def sr(serve):
    return SchemaRegistryClient(serve.sr_conf)


def test_credentials_are_required(serve):
    if not serve.ca:
        pytest.skip("needs the registry's CA")
    ctx = ssl.create_default_context(cafile=serve.ca)
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(serve.registry_url + "/subjects", timeout=10, context=ctx)
    assert e.value.code == 401
    assert e.value.headers.get("WWW-Authenticate") == 'Basic realm="gatehouse"'
    assert json.loads(e.value.read())["error_code"] == 40101


def test_register_and_read_back_all_formats(serve, sr):
    subj = unique("py-users") + "-value"
    avro_id = sr.register_schema(subj, Schema(USER_V1, "AVRO"))
    proto_id = sr.register_schema(unique("py-orders") + "-value", Schema(PROTO, "PROTOBUF"))
    json_id = sr.register_schema(unique("py-skus") + "-value", Schema(JSON_SCHEMA, "JSON"))
    assert len({avro_id, proto_id, json_id}) == 3

    # Re-registering is idempotent.
    assert sr.register_schema(subj, Schema(USER_V1, "AVRO")) == avro_id

    fresh = SchemaRegistryClient(serve.sr_conf)  # no client cache
    got = fresh.get_schema(avro_id)
    assert got.schema_type == "AVRO"
    assert '"name":"User"' in got.schema_str.replace(" ", "")
    got = fresh.get_schema(proto_id)
    assert got.schema_type == "PROTOBUF"
    assert "message Order" in got.schema_str
    assert fresh.get_schema(json_id).schema_type == "JSON"

    latest = fresh.get_latest_version(subj)
    assert (latest.schema_id, latest.version, latest.subject) == (avro_id, 1, subj)


def test_compatibility(sr):
    subj = unique("py-compat") + "-value"
    sr.register_schema(subj, Schema(USER_V1, "AVRO"))
    assert sr.test_compatibility(subj, Schema(USER_V2, "AVRO")) is True
    assert sr.test_compatibility(subj, Schema(USER_BAD, "AVRO")) is False
    from confluent_kafka.schema_registry.error import SchemaRegistryError
    with pytest.raises(SchemaRegistryError) as e:
        sr.register_schema(subj, Schema(USER_BAD, "AVRO"))
    assert e.value.http_status_code == 409
    assert e.value.error_code == 40901
    v2 = sr.register_schema(subj, Schema(USER_V2, "AVRO"))
    assert sr.get_latest_version(subj).schema_id == v2


def test_avro_serde_round_trip_through_the_broker(serve, sr):
    topic = unique("py-avro")
    ser = AvroSerializer(sr, USER_V1)
    de = AvroDeserializer(sr)
    ctx = SerializationContext(topic, MessageField.VALUE)
    records = [{"name": f"user-{i}", "age": 20 + i} for i in range(5)]

    kafka = getattr(serve, "kafka", {"bootstrap.servers": serve.bootstrap})
    admin = AdminClient(dict(kafka))
    for f in admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)]).values():
        f.result(timeout=TIMEOUT_S)

    errors = []
    p = Producer(dict(kafka))
    for r in records:
        p.produce(topic, value=ser(r, ctx), on_delivery=lambda err, _m: err and errors.append(err))
    assert p.flush(TIMEOUT_S) == 0
    assert errors == []

    # The serializer registered the schema under the topic's value subject.
    latest = sr.get_latest_version(f"{topic}-value")
    assert latest.schema.schema_type == "AVRO"

    c = Consumer(dict(kafka, **{"group.id": unique("py-avro-g"), "enable.auto.commit": False}))
    c.assign([TopicPartition(topic, 0, 0)])
    got = []
    deadline = time.monotonic() + TIMEOUT_S
    try:
        while len(got) < len(records) and time.monotonic() < deadline:
            m = c.poll(0.5)
            if m is None or m.error():
                continue
            value = m.value()
            assert value[0] == 0 and int.from_bytes(value[1:5], "big") == latest.schema_id
            got.append(de(value, ctx))
    finally:
        c.close()
    assert got == records


def test_data_contract_metadata_rule_set_and_guid(serve, sr):
    """metadata and ruleSet registered through SchemaRegistryClient are stored and read back;
    the same text with another rule set is a new version and id; GUID and metadata lookups."""
    from confluent_kafka.schema_registry.common.schema_registry_client import (
        Metadata, MetadataProperties, MetadataTags, Rule, RuleKind, RuleMode, RuleSet)

    def rule(expr):
        return Rule("positive-age", None, RuleKind.CONDITION, RuleMode.WRITE, "CEL", None, None,
                    expr, None, "ERROR", None)

    subj = unique("py-contract") + "-value"
    md = Metadata(MetadataTags({"py.User.name": ["PII"]}), MetadataProperties({"owner": "team-py"}),
                  None)
    first = sr.register_schema_full_response(
        subj, Schema(USER_V1, "AVRO", [], md, RuleSet(None, [rule("message.age > 0")])))
    assert first.guid

    fresh = SchemaRegistryClient(serve.sr_conf)  # no client cache
    latest = fresh.get_latest_version(subj)
    assert latest.schema_id == first.schema_id
    assert latest.schema.metadata.properties.properties == {"owner": "team-py"}
    assert latest.schema.metadata.tags.tags == {"py.User.name": ["PII"]}
    assert latest.schema.rule_set.domain_rules[0].expr == "message.age > 0"
    assert latest.schema.rule_set.domain_rules[0].kind == RuleKind.CONDITION

    by_id = fresh.get_schema(first.schema_id)
    assert by_id.rule_set.domain_rules[0].name == "positive-age"
    by_guid = fresh.get_schema_by_guid(str(first.guid))
    assert by_guid.schema_str == by_id.schema_str
    assert by_guid.metadata.properties.properties == {"owner": "team-py"}

    # Registering the same text without a rule set inherits the latest's: same version.
    assert sr.register_schema(subj, Schema(USER_V1, "AVRO")) == first.schema_id
    # Another rule set: a new version with a new id and GUID.
    second = sr.register_schema_full_response(
        subj, Schema(USER_V1, "AVRO", [], md, RuleSet(None, [rule("message.age > 17")])))
    assert second.schema_id != first.schema_id
    assert str(second.guid) != str(first.guid)
    assert SchemaRegistryClient(serve.sr_conf).get_latest_version(subj).version == 2

    got = fresh.get_latest_with_metadata(subj, {"owner": "team-py"})
    assert (got.version, got.schema_id) == (2, second.schema_id)

    # An invalid rule set is 42210.
    from confluent_kafka.schema_registry.error import SchemaRegistryError
    with pytest.raises(SchemaRegistryError) as e:
        sr.register_schema(subj, Schema(USER_V1, "AVRO", [], None,
                                        RuleSet(None, [rule("a"), rule("b")])))
    assert e.value.error_code == 42210


def test_protobuf_descriptor_registration_and_serialized_format(serve, sr):
    """A base64 FileDescriptorProto (as ProtobufSerializer registers) is accepted and
    `format=serialized` returns one."""
    import base64

    from google.protobuf import descriptor_pb2

    subj = unique("py-proto-desc") + "-value"
    sid = sr.register_schema(subj, Schema(PROTO, "PROTOBUF"))
    fresh = SchemaRegistryClient(serve.sr_conf)
    serialized = fresh.get_schema(sid, fmt="serialized").schema_str
    fd = descriptor_pb2.FileDescriptorProto.FromString(base64.b64decode(serialized))
    assert fd.package == "py" and fd.message_type[0].name == "Order"
    # The descriptor registers as the same schema, and as .proto text in a new subject.
    assert sr.register_schema(subj, Schema(serialized, "PROTOBUF")) == sid
    other = sr.register_schema(unique("py-proto-desc2") + "-value", Schema(serialized, "PROTOBUF"))
    assert "message Order {" in fresh.get_schema(other).schema_str


def test_guid_header_wire_format_through_the_validating_gateway(serve, sr):
    """AvroSerializer with the GUID in the `__value_schema_id` header (Confluent's
    header_schema_id_serializer) produces to a topic with full validation: the gateway resolves
    the GUID through the registry's store; AvroDeserializer reads it back by GUID. An unknown
    GUID is refused."""
    if not hasattr(serve, "kafka"):
        pytest.skip("needs the gateway of gatehouse serve")
    from confluent_kafka.schema_registry import header_schema_id_serializer

    topic = unique("py-guid")
    admin = AdminClient(dict(serve.kafka))
    for f in admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1,
                                           config={"gatehouse.value.schema.validation": "full"})]
                                 ).values():
        f.result(timeout=TIMEOUT_S)
    ser = AvroSerializer(sr, USER_V1, conf={"schema.id.serializer": header_schema_id_serializer})
    de = AvroDeserializer(SchemaRegistryClient(serve.sr_conf))
    record = {"name": "guid-user", "age": 33}
    headers = []
    value = ser(record, SerializationContext(topic, MessageField.VALUE, headers))
    assert headers and headers[0][0] == "__value_schema_id" and headers[0][1][0] == 1

    results = []
    p = Producer(dict(serve.kafka))
    p.produce(topic, value=value, headers=headers, on_delivery=lambda err, _m: results.append(err))
    assert p.flush(TIMEOUT_S) == 0
    # A refused record fails its whole batch: produced on its own.
    unknown = [("__value_schema_id", b"\x01" + bytes(16))]
    p.produce(topic, value=value, headers=unknown, on_delivery=lambda err, _m: results.append(err))
    assert p.flush(TIMEOUT_S) == 0
    assert results[0] is None
    assert results[1] is not None, "a record with an unknown GUID is refused"

    c = Consumer(dict(serve.kafka, **{"group.id": unique("py-guid-g"), "enable.auto.commit": False}))
    c.assign([TopicPartition(topic, 0, 0)])
    got = None
    deadline = time.monotonic() + TIMEOUT_S
    try:
        while got is None and time.monotonic() < deadline:
            m = c.poll(0.5)
            if m is None or m.error():
                continue
            got = de(m.value(), SerializationContext(topic, MessageField.VALUE, m.headers()))
    finally:
        c.close()
    assert got == record


def test_avro_resolved_format_inlines_references(serve, sr):
    """`format=resolved` returns an Avro schema with its referenced types inlined, which a
    parser without reference support (fastavro) reads on its own."""
    import fastavro
    from confluent_kafka.schema_registry import SchemaReference

    addr_subj = unique("py-address") + "-value"
    person_subj = unique("py-person") + "-value"
    address = """{"type": "record", "name": "Address", "namespace": "py.ref",
      "fields": [{"name": "street", "type": "string"}]}"""
    person = """{"type": "record", "name": "Person", "namespace": "py.ref",
      "fields": [{"name": "home", "type": "Address"}, {"name": "work", "type": "Address"}]}"""
    sr.register_schema(addr_subj, Schema(address, "AVRO"))
    pid = sr.register_schema(
        person_subj,
        Schema(person, "AVRO", [SchemaReference("py.ref.Address", addr_subj, 1)]),
    )
    fresh = SchemaRegistryClient(serve.sr_conf)
    stored = fresh.get_schema(pid)
    assert '"type":"Address"' in stored.schema_str.replace(" ", "")
    # Another client: the client caches schemas by id whatever the format.
    resolved = SchemaRegistryClient(serve.sr_conf).get_schema(pid, fmt="resolved")
    assert resolved.references and resolved.references[0].subject == addr_subj
    parsed = json.loads(resolved.schema_str)
    assert parsed["fields"][0]["type"]["name"] == "Address"
    assert parsed["fields"][1]["type"] == "Address"
    fastavro.parse_schema(parsed)  # no named_schemas needed
