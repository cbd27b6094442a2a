"""kafka-python (pure Python client): admin, producer/consumer, consumer group."""

import time

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.errors import TopicAlreadyExistsError

from conftest import unique

TIMEOUT_S = 60


def admin(broker):
    return KafkaAdminClient(bootstrap_servers=broker.bootstrap, request_timeout_ms=20000)


def create_topic(broker, name, partitions=1, configs=None):
    a = admin(broker)
    try:
        a.create_topics({name: {"num_partitions": partitions, "replication_factor": 1,
                                "configs": configs or {}}}, wait_for_metadata=True)
    finally:
        a.close()


def test_admin_create_topic_and_list(broker):
    name = unique("kp-admin")
    create_topic(broker, name, partitions=3, configs={"retention.ms": "3600000"})
    a = admin(broker)
    try:
        assert name in a.list_topics()
        desc = a.describe_topics([name])
        assert len(desc) == 1 and len(desc[0]["partitions"]) == 3, desc
        try:
            a.create_topics({name: {"num_partitions": 1, "replication_factor": 1}})
            raise AssertionError("creating an existing topic must fail")
        except TopicAlreadyExistsError:
            pass
    finally:
        a.close()


def test_produce_and_consume(broker):
    name = unique("kp-pc")
    create_topic(broker, name, partitions=2)
    p = KafkaProducer(bootstrap_servers=broker.bootstrap, acks="all", linger_ms=5)
    futures = [p.send(name, key=f"k{i}".encode(), value=f"v{i}".encode(),
                      headers=[("h", b"1"), ("h", b"2")], partition=i % 2) for i in range(200)]
    p.flush(timeout=TIMEOUT_S)
    metas = [f.get(timeout=TIMEOUT_S) for f in futures]
    assert [m.offset for m in metas if m.partition == 0] == list(range(100))
    p.close()

    c = KafkaConsumer(bootstrap_servers=broker.bootstrap, auto_offset_reset="earliest",
                      enable_auto_commit=False, consumer_timeout_ms=15000)
    c.assign([TopicPartition(name, 0), TopicPartition(name, 1)])
    c.seek_to_beginning()
    got = []
    deadline = time.monotonic() + TIMEOUT_S
    while len(got) < 200 and time.monotonic() < deadline:
        for recs in c.poll(timeout_ms=500).values():
            got.extend(recs)
    c.close()
    assert len(got) == 200
    by_value = {r.value.decode(): r for r in got}
    for i in range(200):
        r = by_value[f"v{i}"]
        assert r.key == f"k{i}".encode()
        assert r.partition == i % 2
        assert r.offset == i // 2
        assert list(r.headers) == [("h", b"1"), ("h", b"2")]


def test_consumer_group_commits_and_resumes(broker):
    name = unique("kp-grp")
    group = unique("kp-group")
    create_topic(broker, name, partitions=2)
    p = KafkaProducer(bootstrap_servers=broker.bootstrap, acks="all")
    for i in range(100):
        p.send(name, value=str(i).encode(), partition=i % 2)
    p.flush(timeout=TIMEOUT_S)
    p.close()

    def group_consumer():
        return KafkaConsumer(name, bootstrap_servers=broker.bootstrap, group_id=group,
                             auto_offset_reset="earliest", enable_auto_commit=False,
                             consumer_timeout_ms=30000, session_timeout_ms=10000,
                             heartbeat_interval_ms=500)

    c = group_consumer()
    first = []
    deadline = time.monotonic() + TIMEOUT_S
    while len(first) < 100 and time.monotonic() < deadline:
        for recs in c.poll(timeout_ms=500).values():
            first.extend(recs)
    assert len(first) == 100
    assert sorted(int(r.value) for r in first) == list(range(100))
    assert sorted(tp.partition for tp in c.assignment()) == [0, 1]
    c.commit()
    committed = {tp.partition: c.committed(tp) for tp in c.assignment()}
    assert committed == {0: 50, 1: 50}, committed
    c.close()

    # More records; a new member of the group sees only those.
    p = KafkaProducer(bootstrap_servers=broker.bootstrap, acks="all")
    for i in range(100, 120):
        p.send(name, value=str(i).encode(), partition=i % 2)
    p.flush(timeout=TIMEOUT_S)
    p.close()
    c = group_consumer()
    second = []
    deadline = time.monotonic() + TIMEOUT_S
    while len(second) < 20 and time.monotonic() < deadline:
        for recs in c.poll(timeout_ms=500).values():
            second.extend(recs)
    end = time.monotonic() + 1.0
    while time.monotonic() < end:
        for recs in c.poll(timeout_ms=200).values():
            second.extend(recs)
    c.close()
    assert sorted(int(r.value) for r in second) == list(range(100, 120))
