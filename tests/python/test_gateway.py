"""The security gateway of `gatehouse serve`, with real clients over real sockets.

One `gatehouse serve` per module (TLS listener with the generated CA, plaintext SASL listener
on loopback, `admin` super user). Covers: SASL_SSL with SCRAM-SHA-256/512 and PLAIN
(produce, consume, consumer-group commit and resume), the plaintext listener, protocol
mismatches on both listeners, SCRAM user administration, a table-driven authorization matrix
(one allowed and one denied principal per operation, asserting the Kafka error code),
PREFIXED / `User:*` / DENY ACLs, revocation of a running consumer, internal topics, and
kafka-python over SASL_SSL.
"""

import logging
import threading
import time
import uuid
import warnings

import pytest
from confluent_kafka import (
    OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, Producer, TopicPartition,
    TopicCollection,
)
from confluent_kafka.admin import (
    AclBinding, AclBindingFilter, AclOperation, AclPermissionType, AdminClient,
    AlterConfigOpType, ConfigEntry, ConfigResource, NewPartitions, NewTopic,
    ResourcePatternType, ResourceType, ScramCredentialInfo, ScramMechanism,
    UserScramCredentialDeletion, UserScramCredentialUpsertion,
)

from conftest import unique

TIMEOUT_S = 30
ITERATIONS = 4096
TAF = KafkaError.TOPIC_AUTHORIZATION_FAILED
GAF = KafkaError.GROUP_AUTHORIZATION_FAILED
CAF = KafkaError.CLUSTER_AUTHORIZATION_FAILED


# --- helpers -----------------------------------------------------------------------------

def admin_client(serve, **kw) -> AdminClient:
    return AdminClient(serve.tls_conf(**kw))


def user_conf(serve, user, mechanism="SCRAM-SHA-256", **extra):
    return serve.tls_conf(user=user, password=password_of(user), mechanism=mechanism, **extra)


def password_of(user: str) -> str:
    return f"pw-{user}-Secret!"


def result(future, timeout=TIMEOUT_S):
    return future.result(timeout=timeout)


def error_code(fn):
    """Runs fn; returns None, or the Kafka error code of the KafkaException it raised."""
    try:
        fn()
    except KafkaException as e:
        return e.args[0].code()
    return None


def describe_code(code):
    if code is None:
        return "success"
    if isinstance(code, int):
        return str(KafkaError(code))
    return str(code)


def create_users(serve, users, mechanism=ScramMechanism.SCRAM_SHA_256):
    a = admin_client(serve)
    futures = a.alter_user_scram_credentials([
        UserScramCredentialUpsertion(u, ScramCredentialInfo(mechanism, ITERATIONS),
                                     password_of(u).encode())
        for u in users])
    for u, f in futures.items():
        result(f)


def acl(principal, rtype, name, op, pattern=ResourcePatternType.LITERAL,
        permission=AclPermissionType.ALLOW, host="*"):
    return AclBinding(rtype, name, pattern, principal, host, op, permission)


def create_acls(serve, bindings):
    if not bindings:
        return
    a = admin_client(serve)
    futures = a.create_acls(bindings)
    for f in futures.values():
        result(f)


def delete_acls(serve, bindings):
    filters = [AclBindingFilter(b.restype, b.name, b.resource_pattern_type, b.principal, b.host,
                                b.operation, b.permission_type) for b in bindings]
    a = admin_client(serve)
    futures = a.delete_acls(filters)
    deleted = []
    for f in futures.values():
        deleted.extend(result(f))
    return deleted


def create_topic(serve, name, partitions=1, records=0):
    a = admin_client(serve)
    result(a.create_topics([NewTopic(name, partitions, 1)])[name])
    if records:
        produce(serve.tls_conf(), name, [f"r{i}".encode() for i in range(records)])


def produce(conf, topic, values, partition=None):
    """Produces and flushes; returns the list of delivery errors (None for a delivered one)."""
    p = Producer({**conf, "message.timeout.ms": 15000})
    errors = []

    def done(err, msg):
        errors.append(err)

    for v in values:
        if partition is None:
            p.produce(topic, v, on_delivery=done)
        else:
            p.produce(topic, v, partition=partition, on_delivery=done)
    remaining = p.flush(TIMEOUT_S)
    assert remaining == 0, f"{remaining} messages not delivered or failed in time"
    return errors


def produce_error(conf, topic):
    errors = produce(conf, topic, [b"x"])
    return errors[0].code() if errors[0] is not None else None


# An assign()-only consumer still needs a group.id in confluent-kafka, and librdkafka looks
# its coordinator up: a principal without DESCRIBE on that group gets one
# GROUP_AUTHORIZATION_FAILED event (as from Kafka) while fetching goes on. Readers that use
# assign() ignore it.
ASSIGN_ONLY = (KafkaError._PARTITION_EOF, GAF)


# What first_consumer_error() returns when librdkafka cannot parse a response: it logs
# "Protocol parse failure" and retries, and the application would otherwise see nothing.
PROTOCOL_PARSE_FAILURE = "librdkafka: Protocol parse failure"


class RdLog(logging.Handler):
    """Collects a librdkafka client's log lines (confluent-kafka's `logger` setting)."""

    def __init__(self):
        super().__init__(logging.DEBUG)
        self.lines = []
        self.logger = logging.getLogger(unique("rdkafka"))
        self.logger.propagate = False
        self.logger.setLevel(logging.DEBUG)
        self.logger.addHandler(self)

    def emit(self, record):
        self.lines.append(record.getMessage())

    def parse_failures(self):
        return [x for x in self.lines if "Protocol parse failure" in x]


def consume(consumer, n, timeout=TIMEOUT_S, ignore=(KafkaError._PARTITION_EOF,), log=None):
    """Polls until n messages arrived; raises on a consumer error not in `ignore`."""
    got = []
    deadline = time.monotonic() + timeout
    while len(got) < n and time.monotonic() < deadline:
        m = consumer.poll(0.2)
        if log is not None and log.parse_failures():
            raise AssertionError(log.parse_failures()[0])
        if m is None:
            continue
        if m.error():
            if m.error().code() in ignore:
                continue
            raise KafkaException(m.error())
        got.append(m)
    assert len(got) == n, f"got {len(got)} of {n} messages"
    return got


def first_consumer_error(consumer, timeout=TIMEOUT_S, ignore=ASSIGN_ONLY, log=None):
    """Polls until the consumer reports an error not in `ignore`; returns its code,
    PROTOCOL_PARSE_FAILURE if librdkafka logged one, or None on timeout (messages are
    ignored)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        m = consumer.poll(0.2)
        if log is not None and log.parse_failures():
            return PROTOCOL_PARSE_FAILURE
        if m is not None and m.error() and m.error().code() not in ignore:
            return m.error().code()
    return None


def assign_consumer(conf, topic, partition=0, log=None, **extra):
    if log is not None:
        extra["logger"] = log.logger
    c = Consumer({**conf, "group.id": unique("reader"), "enable.auto.commit": False,
                  "fetch.wait.max.ms": 100, **extra})
    c.assign([TopicPartition(topic, partition, OFFSET_BEGINNING)])
    return c


def read_all(conf, topic, n, partition=0):
    c = assign_consumer(conf, topic, partition)
    try:
        return [m.value() for m in consume(c, n, ignore=ASSIGN_ONLY)]
    finally:
        c.close()


# kafka-python, for what librdkafka does not show: the DescribeCluster API (librdkafka's
# describe_cluster() uses Metadata), DescribeAcls errors (librdkafka's describe_acls()
# reports a top-level error_code as an empty result), and raw requests that skip the
# client's own metadata checks so the gateway's per-API rule is what answers.

def kp_args(conf):
    kw = dict(bootstrap_servers=conf["bootstrap.servers"],
              security_protocol=conf["security.protocol"],
              sasl_mechanism=conf["sasl.mechanisms"],
              sasl_plain_username=conf["sasl.username"],
              sasl_plain_password=conf["sasl.password"],
              request_timeout_ms=20000)
    if "ssl.ca.location" in conf:
        kw["ssl_cafile"] = conf["ssl.ca.location"]
    return kw


class Raw:
    """A kafka-python admin connection used to send single protocol requests."""

    def __init__(self, conf):
        from kafka import KafkaAdminClient
        self.admin = KafkaAdminClient(**kp_args(conf))

    def send(self, request):
        async def go():
            return await self.admin._manager.send(request)
        return self.admin._manager.run(go)

    def close(self):
        self.admin.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def raw_fetch_partition(conf, topic):
    """Fetch partition 0 from offset 0; returns the response's partition."""
    from kafka.protocol.consumer.fetch import FetchRequest
    part = FetchRequest.FetchTopic.FetchPartition(
        partition=0, fetch_offset=0, partition_max_bytes=1 << 20, current_leader_epoch=-1,
        log_start_offset=-1)
    req = FetchRequest(replica_id=-1, max_wait_ms=100, min_bytes=1, max_bytes=1 << 20,
                       isolation_level=0,
                       topics=[FetchRequest.FetchTopic(topic=topic, partitions=[part])])
    with Raw(conf) as raw:
        resp = raw.send(req)
    [t] = resp.responses
    [p] = t.partitions
    return p


def raw_fetch(conf, topic):
    """Fetch partition 0 from offset 0; returns (error_code, number of record bytes)."""
    p = raw_fetch_partition(conf, topic)
    return p.error_code, len(p.records or b"")


def raw_produce(conf, topic, value=b"raw"):
    """Produce one record to partition 0 with acks=all; returns the partition's error code."""
    from kafka.protocol.producer import ProduceRequest
    from kafka.record.memory_records import MemoryRecordsBuilder
    b = MemoryRecordsBuilder(magic=2, compression_type=0, batch_size=1 << 16)
    b.append(timestamp=None, key=None, value=value, headers=[])
    b.close()
    data = ProduceRequest.TopicProduceData
    req = ProduceRequest(transactional_id=None, acks=-1, timeout_ms=10000, topic_data=[
        data(name=topic, partition_data=[data.PartitionProduceData(index=0, records=b.buffer())])])
    with Raw(conf) as raw:
        resp = raw.send(req)
    [t] = resp.responses
    [p] = t.partition_responses
    return p.error_code


def raw_list_offsets(conf, topic):
    """ListOffsets (latest) of partition 0; returns (error_code, offset)."""
    from kafka.protocol.consumer.offsets import ListOffsetsRequest
    t = ListOffsetsRequest.ListOffsetsTopic
    req = ListOffsetsRequest(replica_id=-1, isolation_level=0, topics=[t(name=topic, partitions=[
        t.ListOffsetsPartition(partition_index=0, current_leader_epoch=-1, timestamp=-1)])])
    with Raw(conf) as raw:
        resp = raw.send(req)
    [rt] = resp.topics
    [p] = rt.partitions
    return p.error_code, p.offset


def kp_error_code(fn):
    """Runs fn; returns None, or the Kafka error code of the kafka-python error it raised."""
    from kafka.errors import BrokerResponseError
    try:
        fn()
    except BrokerResponseError as e:
        return e.errno
    return None


def wait_for_error(conf, predicate=lambda e: True, timeout=15):
    """Starts a producer that only connects; returns the first error_cb error matching."""
    seen = []
    got = threading.Event()

    def on_error(err):
        seen.append(err)
        if predicate(err):
            got.set()

    p = Producer({**conf, "error_cb": on_error, "socket.timeout.ms": 5000})
    deadline = time.monotonic() + timeout
    while not got.is_set() and time.monotonic() < deadline:
        p.poll(0.2)
        if not got.is_set():
            try:
                p.list_topics(timeout=1)
            except KafkaException as e:
                seen.append(e.args[0])
                if predicate(e.args[0]):
                    got.set()
    return [e for e in seen if predicate(e)], seen


def can_log_in(conf):
    try:
        AdminClient(conf).list_topics(timeout=5)
        return True
    except KafkaException:
        return False


# --- SASL_SSL with each mechanism ----------------------------------------------------------

@pytest.mark.parametrize("mechanism", ["SCRAM-SHA-256", "SCRAM-SHA-512", "PLAIN"])
def test_tls_produce_consume_group_resume(serve, mechanism):
    conf = serve.tls_conf(mechanism=mechanism)
    topic = unique("tls-" + mechanism.lower())
    group = unique("grp")
    a = AdminClient(conf)
    result(a.create_topics([NewTopic(topic, 1, 1)])[topic])
    assert topic in a.list_topics(timeout=TIMEOUT_S).topics
    assert produce(conf, topic, [f"m{i}".encode() for i in range(10)]) == [None] * 10

    cconf = {**conf, "group.id": group, "auto.offset.reset": "earliest",
             "enable.auto.commit": False}
    c1 = Consumer(cconf)
    c1.subscribe([topic])
    first = consume(c1, 4)
    assert [m.value() for m in first] == [f"m{i}".encode() for i in range(4)]
    committed = c1.commit(message=first[-1], asynchronous=False)
    assert committed[0].offset == 4 and committed[0].error is None
    c1.close()

    c2 = Consumer(cconf)
    c2.subscribe([topic])
    rest = consume(c2, 6)
    assert [m.value() for m in rest] == [f"m{i}".encode() for i in range(4, 10)]
    assert c2.committed([TopicPartition(topic, 0)], timeout=TIMEOUT_S)[0].offset == 4
    c2.close()


# --- listeners -----------------------------------------------------------------------------

def test_plaintext_listener_with_scram(serve):
    conf = serve.plain_conf(mechanism="SCRAM-SHA-512")
    topic = unique("plain")
    a = AdminClient(conf)
    result(a.create_topics([NewTopic(topic, 1, 1)])[topic])
    assert produce(conf, topic, [b"a", b"b"]) == [None, None]
    assert read_all(conf, topic, 2) == [b"a", b"b"]
    # Metadata advertises the plaintext listener itself to plaintext clients.
    a = AdminClient(conf)
    md = a.list_topics(timeout=TIMEOUT_S)
    assert [b.port for b in md.brokers.values()] == [serve.plain_port]


def test_plaintext_client_on_tls_port_fails_cleanly(serve):
    conf = serve.tls_conf()
    conf = {**conf, "security.protocol": "SASL_PLAINTEXT"}
    del conf["ssl.ca.location"]
    started = time.monotonic()
    matching, seen = wait_for_error(conf, timeout=8)
    assert seen, "a plaintext client on the TLS port must see an error"
    # Refused at once (a bad TLS ClientHello), not after the 10 s handshake timeout.
    assert time.monotonic() - started < 5
    assert all(e.code() in (KafkaError._TRANSPORT, KafkaError._ALL_BROKERS_DOWN,
                            KafkaError._TIMED_OUT, KafkaError._AUTHENTICATION)
               for e in seen), [str(e) for e in seen]
    assert can_log_in(serve.tls_conf()), "the gateway must still serve TLS clients"


def test_tls_client_on_plaintext_port_fails_cleanly(serve):
    conf = {**serve.plain_conf(), "security.protocol": "SASL_SSL",
            "ssl.ca.location": serve.ca_path}
    started = time.monotonic()
    matching, seen = wait_for_error(conf, timeout=8)
    assert seen, "a TLS client on the plaintext port must see an error"
    assert time.monotonic() - started < 5
    assert any(e.code() in (KafkaError._SSL, KafkaError._TRANSPORT) for e in seen), \
        [str(e) for e in seen]
    assert can_log_in(serve.plain_conf()), "the gateway must still serve plaintext clients"
    assert can_log_in(serve.tls_conf())


# --- users ---------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def alice_bob(serve):
    """alice has a SCRAM-SHA-256 credential, bob a SCRAM-SHA-512 one."""
    alice, bob = unique("alice"), unique("bob")
    create_users(serve, [alice], ScramMechanism.SCRAM_SHA_256)
    create_users(serve, [bob], ScramMechanism.SCRAM_SHA_512)
    return alice, bob


def test_users_created_and_described(serve, alice_bob):
    alice, bob = alice_bob
    a = admin_client(serve)
    futures = a.describe_user_scram_credentials([alice, bob])
    described = {u: result(f) for u, f in futures.items()}
    assert [(i.mechanism, i.iterations) for i in described[alice].scram_credential_infos] == \
        [(ScramMechanism.SCRAM_SHA_256, ITERATIONS)]
    assert [(i.mechanism, i.iterations) for i in described[bob].scram_credential_infos] == \
        [(ScramMechanism.SCRAM_SHA_512, ITERATIONS)]
    # All users: kafka-python sends users=null.
    from kafka import KafkaAdminClient
    kp = KafkaAdminClient(**kp_args(serve.tls_conf()))
    try:
        everyone = kp.describe_user_scram_credentials()
    finally:
        kp.close()
    assert {alice, bob, "admin"} <= set(everyone)
    assert everyone[alice]["credential_infos"] == [
        {"mechanism": ScramMechanism.SCRAM_SHA_256.value, "iterations": ITERATIONS}]
    # Each logs in with its own mechanism (and PLAIN, checked against the stored credential).
    assert can_log_in(user_conf(serve, alice, "SCRAM-SHA-256"))
    assert can_log_in(user_conf(serve, bob, "SCRAM-SHA-512"))
    assert can_log_in(user_conf(serve, bob, "PLAIN"))
    # A mechanism the user has no credential for fails like a wrong password.
    auth, seen = wait_for_error(user_conf(serve, alice, "SCRAM-SHA-512"),
                                lambda e: e.code() == KafkaError._AUTHENTICATION)
    assert auth, [str(e) for e in seen]


@pytest.mark.parametrize("mechanism", ["SCRAM-SHA-256", "PLAIN"])
def test_wrong_password_is_authentication_failure(serve, alice_bob, mechanism):
    alice, _ = alice_bob
    conf = serve.tls_conf(user=alice, password="not-the-password", mechanism=mechanism)
    auth, seen = wait_for_error(conf, lambda e: e.code() == KafkaError._AUTHENTICATION)
    assert auth, f"expected an authentication error, saw {[str(e) for e in seen]}"
    text = auth[0].str()
    assert "Authentication failed" in text and "invalid credentials" in text, text
    assert "not-the-password" not in text


def test_describe_all_users_with_librdkafka(serve, alice_bob):
    alice, bob = alice_bob
    a = admin_client(serve)
    everyone = result(a.describe_user_scram_credentials())
    assert {alice, bob, "admin"} <= set(everyone)


def test_deleted_credential_stops_new_logins(serve):
    carol = unique("carol")
    create_users(serve, [carol])
    conf = user_conf(serve, carol)
    assert can_log_in(conf)
    a = admin_client(serve)
    fut = a.alter_user_scram_credentials(
        [UserScramCredentialDeletion(carol, ScramMechanism.SCRAM_SHA_256)])
    result(fut[carol])
    auth, seen = wait_for_error(conf, lambda e: e.code() == KafkaError._AUTHENTICATION)
    assert auth, f"a deleted user must not log in; saw {[str(e) for e in seen]}"
    assert carol not in result(a.describe_user_scram_credentials())


# --- authorization matrix ------------------------------------------------------------------
#
# Each case: resources created by admin (`setup`), ACLs for the allowed principal (`allow`)
# and for the denied one (`deny`, e.g. DESCRIBE only, so the denial comes from the API under
# test and not from an earlier metadata lookup), and `run(conf, ctx)` returning None on
# success or the Kafka error code the client saw. The denied principal runs first, so a
# destructive success cannot hide its failure.

# Found by these tests (see the report): a denied Fetch partition is re-encoded with
# `records = null` (authz.rs filter_fetch: `p.records = None`). Kafka answers an error
# partition with empty records (MemoryRecords.EMPTY), and librdkafka cannot parse a null
# record set ("Protocol parse failure for Fetch v12(flex) ... invalid MessageSetSize -1"): it
# retries in a tight loop and the application never sees TOPIC_AUTHORIZATION_FAILED.

T, G, C = ResourceType.TOPIC, ResourceType.GROUP, ResourceType.BROKER
Op = AclOperation


class Ctx(dict):
    __getattr__ = dict.__getitem__


def _produce(conf, ctx):
    return produce_error(conf, ctx.topic)


def _fetch(conf, ctx):
    log = RdLog()
    c = assign_consumer(conf, ctx.topic, log=log)
    try:
        if ctx.allowed:
            consume(c, 3, ignore=ASSIGN_ONLY, log=log)
            return None
        return first_consumer_error(c, log=log)
    finally:
        c.close()


def _raw_fetch(conf, ctx):
    code, size = raw_fetch(conf, ctx.topic)
    if code == 0:
        assert size > 0
        return None
    assert size == 0, "a denied fetch must carry no records"
    return code


def _group_join(conf, ctx):
    c = Consumer({**conf, "group.id": ctx.group, "auto.offset.reset": "earliest",
                  "enable.auto.commit": False})
    try:
        c.subscribe([ctx.topic])
        consume(c, 3)
    except KafkaException as e:
        return e.args[0].code()
    finally:
        c.close()
    return None


def _group_commit(conf, ctx):
    c = Consumer({**conf, "group.id": ctx.group, "enable.auto.commit": False})
    try:
        res = c.commit(offsets=[TopicPartition(ctx.topic, 0, 2)], asynchronous=False)
        if res[0].error is not None:
            return res[0].error.code()
    except KafkaException as e:
        return e.args[0].code()
    finally:
        c.close()
    return None


def _raw_list_offsets(conf, ctx):
    code, offset = raw_list_offsets(conf, ctx.topic)
    if code == 0:
        assert offset == 3
        return None
    assert offset == -1
    return code


def _metadata_named(conf, ctx):
    a = AdminClient(conf)
    md = a.list_topics(topic=ctx.topic, timeout=TIMEOUT_S)
    t = md.topics[ctx.topic]
    if t.error is not None:
        return t.error.code()
    assert len(t.partitions) == 1
    return None


def _describe_topics(conf, ctx):
    a = AdminClient(conf)
    futures = a.describe_topics(TopicCollection([ctx.topic]))
    return error_code(lambda: result(futures[ctx.topic]))


def _create_topics(conf, ctx):
    name = ctx.new_topic if ctx.allowed else ctx.new_topic + "-x"
    a = AdminClient(conf)
    futures = a.create_topics([NewTopic(name, 1, 1)])
    return error_code(lambda: result(futures[name]))


def _delete_topics(conf, ctx):
    a = AdminClient(conf)
    futures = a.delete_topics([ctx.topic], operation_timeout=TIMEOUT_S)
    return error_code(lambda: result(futures[ctx.topic]))


def _create_partitions(conf, ctx):
    a = AdminClient(conf)
    futures = a.create_partitions([NewPartitions(ctx.topic, 2)])
    return error_code(lambda: result(futures[ctx.topic]))


def _describe_configs(conf, ctx):
    res = ConfigResource(ConfigResource.Type.TOPIC, ctx.topic)
    a = AdminClient(conf)
    futures = a.describe_configs([res])

    def run():
        configs = result(futures[res])
        assert "retention.ms" in configs
    return error_code(run)


def _alter_configs(conf, ctx):
    res = ConfigResource(ConfigResource.Type.TOPIC, ctx.topic,
                         set_config={"retention.ms": "3600000"})
    a = AdminClient(conf)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # the API under test is AlterConfigs
        futures = a.alter_configs([res])
    return error_code(lambda: result(list(futures.values())[0]))


def _incremental_alter_configs(conf, ctx):
    res = ConfigResource(ConfigResource.Type.TOPIC, ctx.topic, incremental_configs=[
        ConfigEntry("retention.ms", "7200000",
                    incremental_operation=AlterConfigOpType.SET)])
    a = AdminClient(conf)
    futures = a.incremental_alter_configs([res])
    return error_code(lambda: result(list(futures.values())[0]))


def _delete_records(conf, ctx):
    tp = TopicPartition(ctx.topic, 0, 1)
    a = AdminClient(conf)
    futures = a.delete_records([tp])

    def run():
        deleted = result(futures[tp])
        assert deleted.low_watermark == 1
    return error_code(run)


def _describe_cluster(conf, ctx):
    from kafka import KafkaAdminClient
    a = KafkaAdminClient(**kp_args(conf))
    try:
        def run():
            d = a.describe_cluster()
            assert [(b["host"], b["port"]) for b in d["brokers"]] == \
                [("localhost", ctx.serve.tls_port)]
        return kp_error_code(run)
    finally:
        a.close()


def _describe_groups(conf, ctx):
    a = AdminClient(conf)
    futures = a.describe_consumer_groups([ctx.group])
    return error_code(lambda: result(futures[ctx.group]))


def _delete_groups(conf, ctx):
    a = AdminClient(conf)
    futures = a.delete_consumer_groups([ctx.group])
    return error_code(lambda: result(futures[ctx.group]))


def _create_acls(conf, ctx):
    b = acl(f"User:{unique('nobody')}", T, ctx.topic, Op.READ)
    a = AdminClient(conf)
    futures = a.create_acls([b])
    return error_code(lambda: result(futures[b]))


def _describe_acls(conf, ctx):
    from kafka import KafkaAdminClient
    from kafka.admin import (ACLFilter, ACLOperation, ACLPermissionType,
                             ACLResourcePatternType, ResourcePatternFilter)
    from kafka.admin import ResourceType as KRT
    a = KafkaAdminClient(**kp_args(conf))
    try:
        def run():
            acls, err = a.describe_acls(ACLFilter(
                principal=f"User:{ctx.ok_user}", host="*", operation=ACLOperation.ANY,
                permission_type=ACLPermissionType.ANY,
                resource_pattern=ResourcePatternFilter(KRT.ANY, None,
                                                       ACLResourcePatternType.ANY)))
            assert [(x.principal, x.operation) for x in acls] == \
                [(f"User:{ctx.ok_user}", ACLOperation.DESCRIBE)]
        return kp_error_code(run)
    finally:
        a.close()


def _delete_acls(conf, ctx):
    f = AclBindingFilter(T, unique("no-such-topic"), ResourcePatternType.LITERAL, None, None,
                         Op.ANY, AclPermissionType.ANY)
    a = AdminClient(conf)
    futures = a.delete_acls([f])
    return error_code(lambda: result(futures[f]))


def _alter_scram(conf, ctx):
    u = unique("made-by")
    a = AdminClient(conf)
    futures = a.alter_user_scram_credentials([UserScramCredentialUpsertion(
        u, ScramCredentialInfo(ScramMechanism.SCRAM_SHA_256, ITERATIONS), b"pw")])
    return error_code(lambda: result(futures[u]))


def _idempotent_producer(conf, ctx):
    fatal = []
    errors = []

    def on_error(err):
        if err.fatal():
            fatal.append(err)

    def on_delivery(err, msg):
        errors.append(err)

    p = Producer({**conf, "enable.idempotence": True, "message.timeout.ms": 15000,
                  "error_cb": on_error})
    try:
        p.produce(ctx.topic, b"idem", on_delivery=on_delivery)
        p.flush(TIMEOUT_S)
    except KafkaException as e:
        fatal.append(e.args[0])
    except SystemError as e:
        # confluent-kafka raises the fatal error from inside the delivery callback's call.
        assert isinstance(e.__cause__, KafkaException), e
        fatal.append(e.__cause__.args[0])
    if fatal:
        return fatal[0].code()
    assert errors, "no delivery report"
    return errors[0].code() if errors[0] is not None else None


def _setup_topic(records=3):
    def setup(serve, ctx):
        create_topic(serve, ctx.topic, records=records)
    return setup


def _setup_group(serve, ctx):
    """A topic with 3 records and an empty consumer group with a committed offset."""
    create_topic(serve, ctx.topic, records=3)
    c = Consumer(serve.tls_conf(**{"group.id": ctx.group, "auto.offset.reset": "earliest",
                                   "enable.auto.commit": False}))
    c.subscribe([ctx.topic])
    msgs = consume(c, 3)
    c.commit(message=msgs[-1], asynchronous=False)
    c.close()


CASES = [
    # name, setup, allow ACLs, deny ACLs, run, error seen by the denied principal
    ("produce", _setup_topic(0), [(T, "topic", Op.WRITE)], [(T, "topic", Op.DESCRIBE)],
     _produce, TAF),
    ("produce-no-describe", _setup_topic(0), [(T, "topic", Op.WRITE)], [], _produce, TAF),
    ("fetch", _setup_topic(), [(T, "topic", Op.READ)], [(T, "topic", Op.DESCRIBE)],
     _fetch, TAF),
    ("fetch-raw", _setup_topic(), [(T, "topic", Op.READ)], [(T, "topic", Op.DESCRIBE)],
     _raw_fetch, TAF),
    ("group-join", _setup_topic(), [(T, "topic", Op.READ), (G, "group", Op.READ)],
     [(T, "topic", Op.READ), (G, "group", Op.DESCRIBE)], _group_join, GAF),
    ("group-commit", _setup_topic(), [(T, "topic", Op.READ), (G, "group", Op.READ)],
     [(T, "topic", Op.READ), (G, "group", Op.DESCRIBE)], _group_commit, GAF),
    ("list-offsets", _setup_topic(), [(T, "topic", Op.DESCRIBE)], [], _raw_list_offsets, TAF),
    ("metadata-named", _setup_topic(), [(T, "topic", Op.DESCRIBE)], [], _metadata_named, TAF),
    ("describe-topics", _setup_topic(), [(T, "topic", Op.DESCRIBE)], [], _describe_topics,
     TAF),
    ("create-topics", None, [(T, "new_topic", Op.CREATE)], [], _create_topics, TAF),
    ("delete-topics", _setup_topic(0), [(T, "topic", Op.DELETE)], [(T, "topic", Op.DESCRIBE)],
     _delete_topics, TAF),
    ("create-partitions", _setup_topic(0), [(T, "topic", Op.ALTER)],
     [(T, "topic", Op.DESCRIBE)], _create_partitions, TAF),
    ("describe-configs", _setup_topic(0), [(T, "topic", Op.DESCRIBE_CONFIGS)],
     [(T, "topic", Op.DESCRIBE)], _describe_configs, TAF),
    ("alter-configs", _setup_topic(0), [(T, "topic", Op.ALTER_CONFIGS)],
     [(T, "topic", Op.DESCRIBE_CONFIGS)], _alter_configs, TAF),
    ("incremental-alter-configs", _setup_topic(0), [(T, "topic", Op.ALTER_CONFIGS)],
     [(T, "topic", Op.DESCRIBE_CONFIGS)], _incremental_alter_configs, TAF),
    ("delete-records", _setup_topic(), [(T, "topic", Op.DELETE)], [(T, "topic", Op.DESCRIBE)],
     _delete_records, TAF),
    ("describe-cluster", None, [(C, "kafka-cluster", Op.DESCRIBE)], [], _describe_cluster, CAF),
    ("describe-groups", _setup_group, [(G, "group", Op.DESCRIBE)], [], _describe_groups, GAF),
    ("delete-groups", _setup_group, [(G, "group", Op.DELETE)], [(G, "group", Op.DESCRIBE)],
     _delete_groups, GAF),
    ("create-acls", None, [(C, "kafka-cluster", Op.ALTER)], [(C, "kafka-cluster", Op.DESCRIBE)],
     _create_acls, CAF),
    ("describe-acls", None, [(C, "kafka-cluster", Op.DESCRIBE)], [], _describe_acls, CAF),
    ("delete-acls", None, [(C, "kafka-cluster", Op.ALTER)], [(C, "kafka-cluster", Op.DESCRIBE)],
     _delete_acls, CAF),
    ("alter-user-scram", None, [(C, "kafka-cluster", Op.ALTER)],
     [(C, "kafka-cluster", Op.DESCRIBE)], _alter_scram, CAF),
    ("idempotent-producer", _setup_topic(0), [(T, "topic", Op.WRITE)], [(T, "topic", Op.READ)],
     _idempotent_producer,
     CAF),
]


@pytest.fixture(scope="module")
def matrix_users(serve):
    """Two fresh users per case: `<case>-ok` gets the case's allow ACLs, `<case>-no` its
    deny-side ACLs (if any)."""
    tag = uuid.uuid4().hex[:6]
    users = {c[0]: (f"mx-{tag}-{c[0]}-ok", f"mx-{tag}-{c[0]}-no") for c in CASES}
    create_users(serve, [u for pair in users.values() for u in pair])
    return users


XFAIL_CASES = {}


@pytest.mark.parametrize("case", [
    pytest.param(c, id=c[0], marks=[pytest.mark.xfail(strict=True, reason=XFAIL_CASES[c[0]])]
                 if c[0] in XFAIL_CASES else [])
    for c in CASES])
def test_authorization_matrix(serve, matrix_users, case):
    name, setup, allow, deny, run, expected = case
    ok_user, no_user = matrix_users[name]
    ctx = Ctx(serve=serve, topic=unique(f"mx-{name}"), group=unique(f"mx-{name}-grp"),
              new_topic=unique(f"mx-{name}-new"), ok_user=ok_user)
    if setup:
        setup(serve, ctx)

    def bindings(user, grants):
        return [acl(f"User:{user}", rt, ctx[key] if key in ctx else key, op)
                for rt, key, op in grants]

    create_acls(serve, bindings(ok_user, allow) + bindings(no_user, deny))
    ctx["allowed"] = False
    got = run(user_conf(serve, no_user), ctx)
    assert got == expected, f"{name}: denied principal saw {describe_code(got)}"
    ctx["allowed"] = True
    got = run(user_conf(serve, ok_user), ctx)
    assert got is None, f"{name}: allowed principal failed with {describe_code(got)}"


def test_topic_listing_is_filtered(serve):
    ok, no = unique("lister-ok"), unique("lister-no")
    create_users(serve, [ok, no])
    seen_topic, hidden_topic = unique("listed"), unique("hidden")
    create_topic(serve, seen_topic)
    create_topic(serve, hidden_topic)
    create_acls(serve, [acl(f"User:{ok}", T, seen_topic, Op.DESCRIBE)])
    listed = AdminClient(user_conf(serve, ok)).list_topics(timeout=TIMEOUT_S).topics
    assert seen_topic in listed and hidden_topic not in listed
    listed = AdminClient(user_conf(serve, no)).list_topics(timeout=TIMEOUT_S).topics
    assert seen_topic not in listed and hidden_topic not in listed
    assert {seen_topic, hidden_topic} <= set(admin_client(serve).list_topics(timeout=TIMEOUT_S).topics)


def test_consumer_group_listing_is_filtered(serve):
    ok, no = unique("glister-ok"), unique("glister-no")
    create_users(serve, [ok, no])
    ctx_a = Ctx(topic=unique("gl"), group=unique("gl-visible"))
    ctx_b = Ctx(topic=unique("gl"), group=unique("gl-hidden"))
    _setup_group(serve, ctx_a)
    _setup_group(serve, ctx_b)
    create_acls(serve, [acl(f"User:{ok}", G, ctx_a.group, Op.DESCRIBE)])

    def groups(conf):
        a = AdminClient(conf)
        res = result(a.list_consumer_groups(request_timeout=TIMEOUT_S))
        assert not res.errors, res.errors
        return {g.group_id for g in res.valid}

    assert {ctx_a.group, ctx_b.group} <= groups(serve.tls_conf())
    seen = groups(user_conf(serve, ok))
    assert ctx_a.group in seen and ctx_b.group not in seen
    seen = groups(user_conf(serve, no))
    assert ctx_a.group not in seen and ctx_b.group not in seen


# --- ACL semantics -------------------------------------------------------------------------

def test_prefixed_acl(serve):
    u = unique("pfx-user")
    create_users(serve, [u])
    prefix = unique("pfx") + "."
    inside, outside = prefix + "orders", unique("nopfx")
    create_topic(serve, inside)
    create_topic(serve, outside)
    create_acls(serve, [acl(f"User:{u}", T, prefix, Op.WRITE, ResourcePatternType.PREFIXED)])
    conf = user_conf(serve, u)
    assert produce_error(conf, inside) is None
    assert produce_error(conf, outside) == TAF
    a = AdminClient(conf)
    listed = a.list_topics(timeout=TIMEOUT_S).topics
    assert inside in listed and outside not in listed


def test_wildcard_principal(serve):
    u1, u2 = unique("wild-a"), unique("wild-b")
    create_users(serve, [u1, u2])
    topic = unique("wild")
    create_topic(serve, topic, records=2)
    assert raw_fetch(user_conf(serve, u1), topic) == (TAF, 0)
    create_acls(serve, [acl("User:*", T, topic, Op.READ)])
    for u in (u1, u2):
        assert read_all(user_conf(serve, u), topic, 2) == [b"r0", b"r1"]


def test_deny_overrides_allow(serve):
    u = unique("deny-user")
    create_users(serve, [u])
    prefix = unique("dn") + "-"
    open_topic, secret = prefix + "open", prefix + "secret"
    create_topic(serve, open_topic, records=1)
    create_topic(serve, secret, records=1)
    create_acls(serve, [
        acl(f"User:{u}", T, prefix, Op.ALL, ResourcePatternType.PREFIXED),
        acl(f"User:{u}", T, secret, Op.READ, permission=AclPermissionType.DENY),
    ])
    conf = user_conf(serve, u)
    assert read_all(conf, open_topic, 1) == [b"r0"]
    assert raw_fetch(conf, secret) == (TAF, 0)
    # Only READ is denied: DESCRIBE (implied by ALL) and WRITE still work.
    assert secret in AdminClient(conf).list_topics(timeout=TIMEOUT_S).topics
    assert produce_error(conf, secret) is None


def _revoke_setup(serve):
    u = unique("revoke-user")
    create_users(serve, [u])
    topic = unique("revoke")
    create_topic(serve, topic, records=3)
    grant = acl(f"User:{u}", T, topic, Op.READ)
    create_acls(serve, [grant])
    return u, topic, grant


def test_revoked_acl_stops_running_consumer_librdkafka(serve):
    u, topic, grant = _revoke_setup(serve)
    log = RdLog()
    c = assign_consumer(user_conf(serve, u), topic, log=log)
    try:
        assert [m.value() for m in consume(c, 3, ignore=ASSIGN_ONLY, log=log)] == \
            [b"r0", b"r1", b"r2"]
        produce(serve.tls_conf(), topic, [b"live"])
        assert [m.value() for m in consume(c, 1, ignore=ASSIGN_ONLY, log=log)] == [b"live"]
        assert len(delete_acls(serve, [grant])) == 1
        # A fetch already waiting upstream when the ACL went was authorized before (as on
        # Kafka); wait out fetch.wait.max.ms so every fetch that sees new data is a later one.
        time.sleep(0.5)
        produce(serve.tls_conf(), topic, [b"after-revoke"])
        deadline = time.monotonic() + TIMEOUT_S
        code = None
        while code is None and time.monotonic() < deadline:
            m = c.poll(0.2)
            assert not log.parse_failures(), log.parse_failures()[0]
            if m is None:
                continue
            assert m.error(), f"data delivered after the ACL was revoked: {m.value()!r}"
            if m.error().code() not in ASSIGN_ONLY:
                code = m.error().code()
        assert code == TAF
    finally:
        c.close()


def test_revoked_acl_stops_running_consumer_kafka_python(serve):
    from kafka import KafkaConsumer, TopicPartition as KTP
    from kafka.errors import TopicAuthorizationFailedError

    u, topic, grant = _revoke_setup(serve)
    c = KafkaConsumer(enable_auto_commit=False, fetch_max_wait_ms=100,
                      **kp_args(user_conf(serve, u)))
    try:
        c.assign([KTP(topic, 0)])
        c.seek_to_beginning()

        def poll_values(n):
            got = []
            deadline = time.monotonic() + TIMEOUT_S
            while len(got) < n and time.monotonic() < deadline:
                for recs in c.poll(timeout_ms=200).values():
                    got.extend(r.value for r in recs)
            return got

        assert poll_values(3) == [b"r0", b"r1", b"r2"]
        produce(serve.tls_conf(), topic, [b"live"])
        assert poll_values(1) == [b"live"]
        assert len(delete_acls(serve, [grant])) == 1
        # A fetch already waiting upstream when the ACL went was authorized before (as on
        # Kafka); wait out fetch.wait.max.ms so every fetch that sees new data is a later one.
        time.sleep(0.5)
        produce(serve.tls_conf(), topic, [b"after-revoke"])
        # The same connection, the same fetch position: the next fetch is refused.
        with pytest.raises(TopicAuthorizationFailedError):
            late = poll_values(1)
            raise AssertionError(f"data delivered after the ACL was revoked: {late!r}")
    finally:
        c.close()


def test_denied_fetch_partition_has_empty_records(serve):
    """Wire level: Kafka answers a denied partition with empty, not null, records."""
    u = unique("nullrec")
    create_users(serve, [u])
    topic = unique("nullrec")
    create_topic(serve, topic, records=1)
    create_acls(serve, [acl(f"User:{u}", T, topic, Op.DESCRIBE)])
    p = raw_fetch_partition(user_conf(serve, u), topic)
    assert p.error_code == TAF
    assert p.records is not None and len(p.records) == 0, p.records


# --- internal topics -----------------------------------------------------------------------

@pytest.mark.parametrize("internal", ["_gatehouse_users", "_gatehouse_acls", "_schemas"])
def test_internal_topics_denied_even_to_admin(serve, internal):
    conf = serve.tls_conf()
    assert internal not in AdminClient(conf).list_topics(timeout=TIMEOUT_S).topics
    assert _metadata_named(conf, Ctx(topic=internal)) == TAF
    assert produce_error(conf, internal) == TAF
    # The same without the client's metadata step: the Produce and Fetch rules answer.
    assert raw_produce(conf, internal, b"forged") == TAF
    assert raw_fetch(conf, internal) == (TAF, 0)
    assert raw_list_offsets(conf, internal) == (TAF, -1)
    assert _describe_configs(conf, Ctx(topic=internal)) == TAF
    assert _create_topics(conf, Ctx(new_topic=internal, allowed=True)) == TAF
    assert _delete_topics(conf, Ctx(topic=internal)) == TAF
    # They are still there (the registry and the policy store keep working).
    assert _metadata_named(conf, Ctx(topic=internal)) == TAF


# --- kafka-python --------------------------------------------------------------------------

@pytest.mark.parametrize("mechanism", ["SCRAM-SHA-512", "PLAIN"])
def test_kafka_python_sasl_ssl(serve, mechanism):
    from kafka import KafkaConsumer, KafkaProducer, TopicPartition as KTP

    topic = unique("kp-" + mechanism.lower())
    create_topic(serve, topic)
    common = dict(bootstrap_servers=serve.tls_bootstrap, security_protocol="SASL_SSL",
                  ssl_cafile=serve.ca_path, sasl_mechanism=mechanism,
                  sasl_plain_username="admin", sasl_plain_password=serve.admin_password,
                  request_timeout_ms=20000)
    p = KafkaProducer(acks="all", **common)
    metas = [p.send(topic, value=f"kp{i}".encode()).get(timeout=TIMEOUT_S) for i in range(5)]
    assert [m.offset for m in metas] == list(range(5))
    p.close()
    c = KafkaConsumer(auto_offset_reset="earliest", enable_auto_commit=False, **common)
    c.assign([KTP(topic, 0)])
    c.seek_to_beginning()
    got = []
    deadline = time.monotonic() + TIMEOUT_S
    while len(got) < 5 and time.monotonic() < deadline:
        for recs in c.poll(timeout_ms=500).values():
            got.extend(r.value for r in recs)
    c.close()
    assert got == [f"kp{i}".encode() for i in range(5)]
