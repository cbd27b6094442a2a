"""confluent-kafka (librdkafka 2.16): produce/consume with headers, AdminClient topics and configs."""

import time

from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import (AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource,
                                   NewTopic)

from conftest import unique

TIMEOUT_S = 60


def admin(broker):
    return AdminClient({"bootstrap.servers": broker.bootstrap})


def create_topic(broker, name, partitions=1, config=None):
    a = admin(broker)  # keep a reference: the futures die with the client
    fs = a.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=1,
                                   config=config or {})], request_timeout=20)
    for f in fs.values():
        f.result(timeout=TIMEOUT_S)
    # Wait for the topic to be visible with leaders.
    deadline = time.monotonic() + TIMEOUT_S
    while time.monotonic() < deadline:
        md = a.list_topics(topic=name, timeout=5)
        t = md.topics.get(name)
        if t is not None and t.error is None and len(t.partitions) == partitions:
            return
        time.sleep(0.05)
    raise AssertionError(f"topic {name} not visible")


def consume_all(broker, name, partitions, n):
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": unique("assign"),
                  "enable.auto.commit": False})
    c.assign([TopicPartition(name, p, 0) for p in range(partitions)])
    got = []
    deadline = time.monotonic() + TIMEOUT_S
    while len(got) < n and time.monotonic() < deadline:
        m = c.poll(0.2)
        if m is None:
            continue
        assert m.error() is None, m.error()
        got.append(m)
    c.close()
    return got


def test_produce_consume_with_headers(broker):
    name = unique("ck-hdr")
    create_topic(broker, name, partitions=1)
    p = Producer({"bootstrap.servers": broker.bootstrap, "acks": "all", "linger.ms": 5,
                  "compression.type": "zstd", "enable.idempotence": True})
    errors = []
    headers = [("a", b"1"), ("dup", b"x"), ("null", None), ("dup", b"y"), ("empty", b"")]
    for i in range(100):
        p.produce(name, key=f"k{i}", value=f"v{i}", headers=headers,
                  on_delivery=lambda err, msg: errors.append(err) if err else None)
    assert p.flush(TIMEOUT_S) == 0
    assert errors == []
    got = consume_all(broker, name, 1, 100)
    assert [m.value() for m in got] == [f"v{i}".encode() for i in range(100)]
    assert [m.key() for m in got] == [f"k{i}".encode() for i in range(100)]
    assert [m.offset() for m in got] == list(range(100))
    for m in got:
        assert m.headers() == headers


def test_admin_create_describe_alter_configs(broker):
    name = unique("ck-cfg")
    create_topic(broker, name, partitions=2, config={"retention.ms": "86400000", "cleanup.policy": "delete"})
    a = admin(broker)

    res = ConfigResource(ConfigResource.Type.TOPIC, name)
    configs = a.describe_configs([res])[res].result(timeout=TIMEOUT_S)
    assert configs["retention.ms"].value == "86400000"
    assert configs["cleanup.policy"].value == "delete"
    assert "max.message.bytes" in configs and "segment.bytes" in configs

    inc = ConfigResource(ConfigResource.Type.TOPIC, name, incremental_configs=[
        ConfigEntry("retention.ms", "7200000", incremental_operation=AlterConfigOpType.SET),
        ConfigEntry("max.message.bytes", "65536", incremental_operation=AlterConfigOpType.SET),
    ])
    for f in a.incremental_alter_configs([inc]).values():
        f.result(timeout=TIMEOUT_S)
    configs = a.describe_configs([res])[res].result(timeout=TIMEOUT_S)
    assert configs["retention.ms"].value == "7200000"
    assert configs["max.message.bytes"].value == "65536"
    assert configs["cleanup.policy"].value == "delete"

    # Existing topic.
    fs = a.create_topics([NewTopic(name, num_partitions=1, replication_factor=1)], request_timeout=20)
    try:
        fs[name].result(timeout=TIMEOUT_S)
        raise AssertionError("creating an existing topic must fail")
    except Exception as e:  # KafkaException wrapping KafkaError
        assert e.args[0].code() == KafkaError.TOPIC_ALREADY_EXISTS, e

    # Delete, and it is gone.
    for f in a.delete_topics([name], request_timeout=20).values():
        f.result(timeout=TIMEOUT_S)
    deadline = time.monotonic() + TIMEOUT_S
    while name in a.list_topics(timeout=5).topics:
        assert time.monotonic() < deadline, "deleted topic still listed"
        time.sleep(0.05)
