"""The gateway's data guard with confluent-kafka's clients and Confluent's serializers.

One `gatehouse serve` per module; every client is `admin` over SASL_SSL through the gateway
(the registry over HTTPS with the serve CA and HTTP Basic). Covers, as in tests/data_guard.rs
but from Python:

* governance configs set at CreateTopics with AdminClient (`confluent.value.schema.validation`,
  `gatehouse.value.schema.validation` schema-id / full, `gatehouse.encryption` (+ readers=role),
  `gatehouse.pan.guard`) and read back with `describe_configs`;
* Avro and JSON Schema records from Confluent's serializers pass and read back with the
  matching deserializers, on an encrypted topic too (the gateway decrypts for the admin);
  Protobuf (a message built at run time from a FileDescriptorProto) both framed by hand and
  through ProtobufSerializer (the registry takes its base64 descriptors and serves
  ?format=serialized), read back with ProtobufDeserializer;
* poison pills refused with INVALID_RECORD as librdkafka reports it, and with the broker's
  error_message / record_errors through one raw Produce (kafka-python), since librdkafka's
  delivery report only carries the error code's name (asserted below);
* nothing of a refused batch is stored (high watermarks before/after);
* `gatehouse.encryption.readers=role`: the admin super user reads ciphertext (with the
  `gatehouse.enc` header) until it is bound to `plaintext-reader` through the admin REST API
  (`POST /v1/roles`), then plaintext;
* data contracts: a schema registered with SchemaRegistryClient as
  `Schema(..., rule_set=RuleSet(domain_rules=[Rule(... CEL ...)]))` is enforced by the
  gateway (a record failing the CEL rule is refused, naming the rule, and copied to the
  topic's `gatehouse.dead.letter.topic` with its error headers). The client must not run the
  rule itself, so the AvroSerializer is built with `auto.register.schemas=False` and
  `use.latest.version=False` (it then only looks the schema up and never executes rules;
  confluent-kafka runs rules only for a schema fetched with use.latest.version /
  use.schema.id, and its CEL executor needs `celpy`, which is not installed);
* a card number in an Avro `long` field is refused by the PAN guard (decoded-field check).
"""

import base64
import json
import ssl
import time
import urllib.error
import urllib.request

import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic
from confluent_kafka.schema_registry import (Rule, RuleKind, RuleMode, RuleSet, Schema,
                                             SchemaRegistryClient)
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.schema_registry.json_schema import JSONDeserializer, JSONSerializer
from confluent_kafka.schema_registry.protobuf import ProtobufDeserializer, ProtobufSerializer
from confluent_kafka.serialization import MessageField, SerializationContext
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

from conftest import unique

TIMEOUT_S = 30
INVALID_RECORD = KafkaError.INVALID_RECORD  # 87

ORDER_AVRO = json.dumps({
    "type": "record", "name": "Order", "namespace": "py.guard",
    "fields": [{"name": "id", "type": "long"}, {"name": "item", "type": "string"}]})
PAYMENT_AVRO = json.dumps({
    "type": "record", "name": "Payment", "namespace": "py.guard",
    "fields": [{"name": "amount", "type": "int"}]})
SKU_JSON = json.dumps({
    "$schema": "http://json-schema.org/draft-07/schema#", "title": "Sku", "type": "object",
    "properties": {"sku": {"type": "string"}, "qty": {"type": "integer", "minimum": 1}},
    "required": ["sku", "qty"]})
CARD = "4111 1111 1111 1111"


# --- helpers -----------------------------------------------------------------------------

def wire(schema_id: int, payload: bytes) -> bytes:
    """Confluent's wire format: magic 0, big-endian schema id, payload."""
    return b"\x00" + schema_id.to_bytes(4, "big") + payload


def order_message_class():
    """A protobuf message class built at run time (no generated _pb2 module)."""
    F = descriptor_pb2.FieldDescriptorProto
    fdp = descriptor_pb2.FileDescriptorProto(
        name="py_guard/order.proto", package="pyguard", syntax="proto3")
    m = fdp.message_type.add(name="Order")
    m.field.add(name="id", number=1, type=F.TYPE_STRING, label=F.LABEL_OPTIONAL)
    m.field.add(name="amount", number=2, type=F.TYPE_INT64, label=F.LABEL_OPTIONAL)
    pool = descriptor_pool.DescriptorPool()
    pool.Add(fdp)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("pyguard.Order"))


def sr_client(serve) -> SchemaRegistryClient:
    return SchemaRegistryClient({
        "url": f"https://localhost:{serve.registry_port}",
        "ssl.ca.location": serve.ca_path,
        "basic.auth.user.info": f"admin:{serve.admin_password}"})


def wait_for_registry(serve, deadline_s=60.0):
    ctx = ssl.create_default_context(cafile=serve.ca_path)
    deadline = time.monotonic() + deadline_s
    last = "no attempt"
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"https://localhost:{serve.registry_port}/", timeout=2,
                                        context=ctx) as r:
                if r.status == 200:
                    return
        except (urllib.error.URLError, OSError) as e:
            last = str(e)
        time.sleep(0.05)
    raise RuntimeError(f"registry not up after {deadline_s}s ({last})")


def admin_api(serve, method, path, body=None):
    """The admin REST API (plain HTTP on loopback, HTTP Basic); returns (status, json)."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(f"http://127.0.0.1:{serve.admin_port}{path}", data=data,
                                 method=method)
    auth = base64.b64encode(f"admin:{serve.admin_password}".encode()).decode()
    req.add_header("Authorization", f"Basic {auth}")
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")


def produce(serve, topic, values, key=None):
    """Produces `values` (bytes) and flushes; returns one delivery error (or None) per value."""
    p = Producer(serve.tls_conf(**{"message.timeout.ms": 15000, "linger.ms": 5}))
    errors = [None] * len(values)

    def done(i):
        def cb(err, msg):
            errors[i] = err
        return cb

    for i, v in enumerate(values):
        p.produce(topic, v, key=key, partition=0, on_delivery=done(i))
    assert p.flush(TIMEOUT_S) == 0, "messages not delivered or failed in time"
    return errors


def read_all(serve, topic, n):
    """Reads the first n messages of partition 0 (assign, from the beginning)."""
    c = Consumer(serve.tls_conf(**{"group.id": unique("reader"), "enable.auto.commit": False,
                                   "fetch.wait.max.ms": 100}))
    c.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
    got = []
    deadline = time.monotonic() + TIMEOUT_S
    try:
        while len(got) < n and time.monotonic() < deadline:
            m = c.poll(0.2)
            if m is None:
                continue
            if m.error():
                if m.error().code() in (KafkaError._PARTITION_EOF,
                                        KafkaError.GROUP_AUTHORIZATION_FAILED):
                    continue
                raise AssertionError(f"consumer error: {m.error()}")
            got.append(m)
    finally:
        c.close()
    assert len(got) == n, f"got {len(got)} of {n} messages from {topic}"
    return got


class Watermarks:
    def __init__(self, serve):
        self.c = Consumer(serve.tls_conf(**{"group.id": unique("wm")}))

    def high(self, topic):
        lo, hi = self.c.get_watermark_offsets(TopicPartition(topic, 0), timeout=TIMEOUT_S,
                                              cached=False)
        return hi

    def close(self):
        self.c.close()


def raw_produce(serve, topic, values):
    """One Produce (v8+, acks=all) of `values` as a single batch to partition 0 with
    kafka-python; returns (error_code, error_message, [record_errors batch indexes])."""
    from kafka import KafkaAdminClient
    from kafka.protocol.producer import ProduceRequest
    from kafka.record.memory_records import MemoryRecordsBuilder
    b = MemoryRecordsBuilder(magic=2, compression_type=0, batch_size=1 << 20)
    for v in values:
        b.append(timestamp=None, key=None, value=v, headers=[])
    b.close()
    data = ProduceRequest.TopicProduceData
    req = ProduceRequest(transactional_id=None, acks=-1, timeout_ms=10000, topic_data=[
        data(name=topic, partition_data=[data.PartitionProduceData(index=0, records=b.buffer())])])
    conf = serve.tls_conf()
    admin = KafkaAdminClient(
        bootstrap_servers=conf["bootstrap.servers"], security_protocol="SASL_SSL",
        sasl_mechanism=conf["sasl.mechanisms"], sasl_plain_username="admin",
        sasl_plain_password=serve.admin_password, ssl_cafile=serve.ca_path,
        request_timeout_ms=20000)
    try:
        async def go():
            return await admin._manager.send(req)
        resp = admin._manager.run(go)
    finally:
        admin.close()
    [t] = resp.responses
    [p] = t.partition_responses
    return (p.error_code, p.error_message or "",
            [e.batch_index for e in (p.record_errors or [])])


# --- fixtures ----------------------------------------------------------------------------

TOPIC_CONFIGS = {
    "confluent": {"confluent.value.schema.validation": "true"},
    "schema_id": {"gatehouse.value.schema.validation": "schema-id"},
    "full": {"gatehouse.value.schema.validation": "full"},
    "proto": {"gatehouse.value.schema.validation": "full"},
    "json": {"gatehouse.value.schema.validation": "full"},
    "enc": {"gatehouse.encryption": "true", "gatehouse.value.schema.validation": "full"},
    "pan": {"gatehouse.pan.guard": "true"},
    "role": {"gatehouse.encryption": "true", "gatehouse.encryption.readers": "role"},
    "cel": {"gatehouse.value.schema.validation": "full",
            "gatehouse.dead.letter.topic": "guard-cel-dead-letters"},
    "pan_long": {"confluent.value.schema.validation": "true", "gatehouse.pan.guard": "true"},
}
CEL_DLQ = "guard-cel-dead-letters"


@pytest.fixture(scope="module")
def env(serve):
    """The topics (created in one CreateTopics with their governance configs), the registry
    client and a watermark reader."""
    wait_for_registry(serve)
    topics = {k: unique(f"guard-{k.replace('_', '-')}") for k in TOPIC_CONFIGS}
    admin = AdminClient(serve.tls_conf())
    fs = admin.create_topics([NewTopic(topics[k], 1, 1, config=TOPIC_CONFIGS[k])
                              for k in TOPIC_CONFIGS], request_timeout=TIMEOUT_S)
    for f in fs.values():
        f.result(timeout=TIMEOUT_S)
    wm = Watermarks(serve)
    yield {"topics": topics, "sr": sr_client(serve), "admin": admin, "wm": wm}
    wm.close()


def register(sr, subject, schema_str, schema_type="AVRO") -> int:
    return sr.register_schema(subject, Schema(schema_str, schema_type))


def ctx(topic):
    return SerializationContext(topic, MessageField.VALUE)


def assert_refused(serve, wm, topic, value, *, contains=(), not_contains=()):
    """Produces `value` with librdkafka (delivery error INVALID_RECORD) and once raw (the
    broker's message); asserts the high watermark did not move."""
    before = wm.high(topic)
    [err] = produce(serve, topic, [value])
    assert err is not None, f"a poison pill was accepted by {topic}"
    assert err.code() == INVALID_RECORD, f"{err.code()} {err}"
    # librdkafka surfaces the error name only, not the broker's error_message.
    assert err.name() == "INVALID_RECORD", err.name()
    assert err.str() == "Broker: Broker failed to validate record", err.str()
    code, msg, rec_errs = raw_produce(serve, topic, [value])
    assert code == INVALID_RECORD, f"{code} {msg}"
    assert rec_errs == [0], msg
    assert "the batch was not written" in msg, msg
    for s in contains:
        assert s in msg, f"{s!r} not in {msg!r}"
    for s in not_contains:
        assert s not in msg and s not in err.str(), f"{s!r} echoed in {msg!r}"
    assert wm.high(topic) == before, "nothing of a refused batch is stored"
    return msg


# --- tests -------------------------------------------------------------------------------

def test_describe_configs_returns_governance_configs(env):
    admin, topics = env["admin"], env["topics"]
    resources = [ConfigResource(ConfigResource.Type.TOPIC, topics[k]) for k in TOPIC_CONFIGS]
    fs = admin.describe_configs(resources, request_timeout=TIMEOUT_S)
    for res, f in fs.items():
        configs = f.result(timeout=TIMEOUT_S)
        key = next(k for k, t in topics.items() if t == res.name)
        for name, value in TOPIC_CONFIGS[key].items():
            assert name in configs, f"{name} missing for {res.name}: {sorted(configs)}"
            assert configs[name].value == value, f"{res.name} {name}={configs[name].value}"
        assert "retention.ms" in configs, "upstream configs are still there"


def test_avro_serializer_round_trip(serve, env):
    topic, sr = env["topics"]["confluent"], env["sr"]
    ser = AvroSerializer(sr, ORDER_AVRO)
    values = [{"id": i, "item": f"item-{i}"} for i in range(3)]
    assert produce(serve, topic, [ser(v, ctx(topic)) for v in values]) == [None] * 3
    de = AvroDeserializer(sr, ORDER_AVRO)
    got = [de(m.value(), ctx(topic)) for m in read_all(serve, topic, 3)]
    assert got == values


def test_avro_full_validation_passes_valid_records(serve, env):
    topic, sr = env["topics"]["full"], env["sr"]
    ser = AvroSerializer(sr, ORDER_AVRO)
    values = [{"id": 10 ** 12 + i, "item": "é" * i} for i in range(3)]
    assert produce(serve, topic, [ser(v, ctx(topic)) for v in values]) == [None] * 3
    de = AvroDeserializer(sr)
    assert [de(m.value(), ctx(topic)) for m in read_all(serve, topic, 3)] == values


ORDER_PROTO = """syntax = "proto3";
package pyguard;

message Order {
  string id = 1;
  int64 amount = 2;
}
"""


def test_protobuf_round_trip(serve, env):
    """Protobuf records in Confluent's framing (id, message indexes [0] as one zero byte,
    payload) built by hand from the .proto text registered here; read back with
    ProtobufDeserializer (which fetches ?format=serialized)."""
    topic, sr = env["topics"]["proto"], env["sr"]
    sid = register(sr, f"{topic}-value", ORDER_PROTO, "PROTOBUF")
    Order = order_message_class()
    values = [Order(id=f"o-{i}", amount=100 * i) for i in range(3)]
    assert produce(serve, topic, [wire(sid, b"\x00" + v.SerializeToString())
                                  for v in values]) == [None] * 3
    de = ProtobufDeserializer(Order, {"use.deprecated.format": False})
    assert [de(m.value(), ctx(topic)) for m in read_all(serve, topic, 3)] == values
    # A payload that is not a valid Order (field 2 with a truncated varint) is refused.
    assert_refused(serve, env["wm"], topic, wire(sid, b"\x00\x0a\x01x\x10\xff"),
                   contains=("does not match schema",))


def test_protobuf_serializer_auto_register(serve, env):
    topic, sr = env["topics"]["proto"], env["sr"]
    Order = order_message_class()
    ser = ProtobufSerializer(Order, sr, {"use.deprecated.format": False})
    value = Order(id="auto", amount=7)
    assert produce(serve, topic, [ser(value, ctx(topic))]) == [None]


def test_protobuf_serializer_use_latest_version(serve, env):
    topic, sr = env["topics"]["proto"], env["sr"]
    register(sr, f"{topic}-value", ORDER_PROTO, "PROTOBUF")
    Order = order_message_class()
    ser = ProtobufSerializer(Order, sr, {"use.deprecated.format": False,
                                         "auto.register.schemas": False,
                                         "use.latest.version": True})
    value = Order(id="latest", amount=8)
    assert produce(serve, topic, [ser(value, ctx(topic))]) == [None]


def test_json_serializer_round_trip(serve, env):
    topic, sr = env["topics"]["json"], env["sr"]
    ser = JSONSerializer(SKU_JSON, sr)
    values = [{"sku": f"S-{i}", "qty": i + 1} for i in range(3)]
    assert produce(serve, topic, [ser(v, ctx(topic)) for v in values]) == [None] * 3
    de = JSONDeserializer(SKU_JSON)
    assert [de(m.value(), ctx(topic)) for m in read_all(serve, topic, 3)] == values


def test_encrypted_topic_with_full_validation_round_trip(serve, env):
    topic, sr = env["topics"]["enc"], env["sr"]
    ser = AvroSerializer(sr, ORDER_AVRO)
    values = [{"id": i, "item": f"SECRET-ITEM-{i}"} for i in range(3)]
    assert produce(serve, topic, [ser(v, ctx(topic)) for v in values]) == [None] * 3
    de = AvroDeserializer(sr, ORDER_AVRO)
    msgs = read_all(serve, topic, 3)
    assert [de(m.value(), ctx(topic)) for m in msgs] == values, "decrypted by the gateway"
    for m in msgs:
        assert not any(k.startswith("gatehouse.") for k, _ in (m.headers() or [])), \
            "the gateway's headers are removed"
    # Validation runs before encryption: a poison pill is refused here too.
    assert_refused(serve, env["wm"], topic, b"not avro at all")


def test_raw_bytes_without_wire_format_are_refused(serve, env):
    topic = env["topics"]["confluent"]
    register(env["sr"], f"{topic}-value", ORDER_AVRO)
    assert_refused(serve, env["wm"], topic, b"hello, no magic byte", contains=("record 0",))


def test_unregistered_schema_id_is_refused(serve, env):
    topic = env["topics"]["confluent"]
    assert_refused(serve, env["wm"], topic, wire(999_999, b"\x02\x00"),
                   contains=("schema id 999999 is not registered",))


def test_id_of_another_subject_is_refused(serve, env):
    topic = env["topics"]["confluent"]
    other_subject = unique("payments") + "-value"
    other = register(env["sr"], other_subject, PAYMENT_AVRO)
    register(env["sr"], f"{topic}-value", ORDER_AVRO)
    assert_refused(serve, env["wm"], topic, wire(other, b"\x02"),
                   contains=(f"schema id {other} is registered under {other_subject}",
                             f"not {topic}-value"))


def test_refused_batch_stores_none_of_its_good_records(serve, env):
    topic, sr = env["topics"]["confluent"], env["sr"]
    good = AvroSerializer(sr, ORDER_AVRO)({"id": 7, "item": "fine"}, ctx(topic))
    wm = env["wm"]
    before = wm.high(topic)
    code, msg, rec_errs = raw_produce(serve, topic, [good, good, b"poison", good])
    assert code == INVALID_RECORD, msg
    assert rec_errs == [2], msg
    assert "record 2" in msg, msg
    assert wm.high(topic) == before
    # The same good records alone pass.
    code, msg, _ = raw_produce(serve, topic, [good, good])
    assert code == 0, msg
    assert wm.high(topic) == before + 2


def test_truncated_avro_refused_by_full_but_passes_schema_id(serve, env):
    sr, wm = env["sr"], env["wm"]
    full, sid = env["topics"]["full"], env["topics"]["schema_id"]
    full_id = register(sr, f"{full}-value", ORDER_AVRO)
    sid_id = register(sr, f"{sid}-value", ORDER_AVRO)
    good = AvroSerializer(sr, ORDER_AVRO)({"id": 123456789, "item": "abcdef"}, ctx(full))
    truncated = good[5:-3]  # the payload without the last bytes of the string
    assert_refused(serve, wm, full, wire(full_id, truncated),
                   contains=("does not match schema", f"{full}-value"))
    # schema-id mode checks only the id: the same payload passes and is stored.
    before = wm.high(sid)
    assert produce(serve, sid, [wire(sid_id, truncated)]) == [None]
    assert wm.high(sid) == before + 1


def test_json_breaking_its_schema_is_refused_on_full(serve, env):
    topic, sr = env["topics"]["json"], env["sr"]
    sid = register(sr, f"{topic}-value", SKU_JSON, "JSON")
    # Valid JSON, wire format and id; but qty is a string and below nothing: breaks the schema.
    assert_refused(serve, env["wm"], topic, wire(sid, b'{"sku": "S-1", "qty": "many"}'),
                   contains=("does not match schema",))
    assert_refused(serve, env["wm"], topic, wire(sid, b'{"qty": 3}'),
                   contains=("does not match schema",))
    assert_refused(serve, env["wm"], topic, wire(sid, b'{"sku": "S-1", "qty": 3'),
                   contains=("does not match schema",))


def test_pan_in_json_field_is_refused_without_echo(serve, env):
    topic = env["topics"]["pan"]
    value = json.dumps({"order": "A-17", "card": CARD}).encode()
    msg = assert_refused(serve, env["wm"], topic, value,
                         contains=("card number", "keyed hash"),
                         not_contains=(CARD, CARD.replace(" ", ""), "4111"))
    assert "value" in msg, msg
    # Ordinary JSON passes.
    assert produce(serve, topic, [b'{"order": "A-18", "amount": 12}']) == [None]


def test_readers_role_admin_reads_ciphertext_until_bound(serve, env):
    topic = env["topics"]["role"]
    plain = b"ROLE-GUARDED-PLAINTEXT-0001"
    assert produce(serve, topic, [plain]) == [None]

    # admin is a super user, which does not imply plaintext-reader: ciphertext.
    [m] = read_all(serve, topic, 1)
    assert m.value() != plain and plain not in m.value()
    headers = dict(m.headers() or [])
    assert "gatehouse.enc" in headers, f"headers: {list(headers)}"

    # Grant the role through the admin REST API.
    binding = {"principal": "User:admin", "role": "plaintext-reader",
               "resource_type": "topic", "resource_name": topic, "pattern_type": "literal"}
    status, body = admin_api(serve, "POST", "/v1/roles", binding)
    assert status == 200, body
    status, body = admin_api(serve, "GET", "/v1/roles")
    assert status == 200 and any(r["resource_name"] == topic for r in body["roles"]), body

    [m] = read_all(serve, topic, 1)
    assert m.value() == plain, "plaintext-reader gets the plaintext"
    assert not any(k.startswith("gatehouse.") for k, _ in (m.headers() or []))

    # Unbound again: ciphertext again.
    status, body = admin_api(serve, "POST", "/v1/roles/unbind", binding)
    assert status == 200, body
    [m] = read_all(serve, topic, 1)
    assert m.value() != plain


AMOUNT_AVRO = json.dumps({
    "type": "record", "name": "Charge", "namespace": "py.guard",
    "fields": [{"name": "id", "type": "long"}, {"name": "amount", "type": "long"}]})


def test_cel_rule_registered_with_schema_is_enforced_by_the_gateway(serve, env):
    topic, sr, wm = env["topics"]["cel"], env["sr"], env["wm"]
    rule = Rule(name="positive_amount", doc=None, kind=RuleKind.CONDITION, mode=RuleMode.WRITE,
                type="CEL", tags=None, params=None, expr="message.amount > 0",
                on_success=None, on_failure=None, disabled=None)
    schema = Schema(AMOUNT_AVRO, "AVRO",
                    rule_set=RuleSet(migration_rules=None, domain_rules=[rule]))
    sid = sr.register_schema(f"{topic}-value", schema)
    stored = sr.get_latest_version(f"{topic}-value")
    assert stored.schema.rule_set is not None, "the registry keeps the rule set"
    assert [r.name for r in stored.schema.rule_set.domain_rules] == ["positive_amount"]
    # Look the schema up only: no client-side rule execution.
    ser = AvroSerializer(sr, schema, conf={"auto.register.schemas": False,
                                           "use.latest.version": False})
    good = ser({"id": 1, "amount": 5}, ctx(topic))
    bad = ser({"id": 2, "amount": -7}, ctx(topic))
    assert good[1:5] == sid.to_bytes(4, "big") and bad[1:5] == sid.to_bytes(4, "big")
    assert produce(serve, topic, [good]) == [None]
    msg = assert_refused(serve, wm, topic, bad, contains=(
        "record fails data-quality rule 'positive_amount' (CEL: message.amount > 0)",
        f"of schema {sid} ({topic}-value)"))
    assert "-7" not in msg, msg
    # Both refusals (librdkafka's and the raw produce) are in the dead-letter topic (written
    # by the gateway in the background).
    deadline = time.monotonic() + TIMEOUT_S
    copied = 0
    while copied < 2 and time.monotonic() < deadline:
        try:
            copied = wm.high(CEL_DLQ)
        except Exception:  # the topic does not exist until the first copy
            time.sleep(0.2)
    assert copied == 2, f"{copied} records in {CEL_DLQ}"
    got = read_all(serve, CEL_DLQ, 2)
    for m in got:
        assert m.value() == bad
        headers = dict(m.headers() or [])
        assert b"positive_amount" in headers["__gatehouse.error"], headers
        assert headers["__gatehouse.topic"] == topic.encode()
        assert headers["__gatehouse.schema_id"] == str(sid).encode()


def test_pan_in_avro_long_field_is_refused(serve, env):
    topic, sr = env["topics"]["pan_long"], env["sr"]
    sid = register(sr, f"{topic}-value", AMOUNT_AVRO)
    ser = AvroSerializer(sr, AMOUNT_AVRO, conf={"auto.register.schemas": False})
    assert produce(serve, topic, [ser({"id": 1, "amount": 1732550400000}, ctx(topic))]) == [None]
    value = ser({"id": 2, "amount": int(CARD.replace(" ", ""))}, ctx(topic))
    assert value[1:5] == sid.to_bytes(4, "big")
    assert_refused(serve, env["wm"], topic, value,
                   contains=("field 'amount'", "card number", "keyed hash"),
                   not_contains=(CARD.replace(" ", ""), "4111"))
