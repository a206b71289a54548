"""Smoke test for the local Kafka broker started by scripts/services.sh.

Creates a topic with 3 partitions, produces 10 keyed messages, consumes them
back through a consumer group, commits, and checks the committed offsets.
Exits non-zero on any failure.

    eval "$(scripts/services.sh env)"
    "$RTSYNC_PYTHON" scripts/kafka_smoke.py
"""

import os
import sys
import time
import uuid

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

BOOTSTRAP = os.environ.get("RTSYNC_KAFKA_BOOTSTRAP", "127.0.0.1:19092")
PARTITIONS = 3
MESSAGES = 10


def main() -> int:
    topic = f"smoke-{uuid.uuid4().hex[:8]}"
    group = f"smoke-{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": BOOTSTRAP})
    admin.create_topics([NewTopic(topic, num_partitions=PARTITIONS, replication_factor=1)])[topic].result(10)
    parts = admin.list_topics(topic, timeout=10).topics[topic].partitions
    assert len(parts) == PARTITIONS, f"expected {PARTITIONS} partitions, got {len(parts)}"

    producer = Producer({"bootstrap.servers": BOOTSTRAP, "enable.idempotence": True})
    failures = []
    for i in range(MESSAGES):
        producer.produce(
            topic,
            key=f"k{i}".encode(),
            value=f"v{i}".encode(),
            partition=i % PARTITIONS,
            on_delivery=lambda err, _msg: err and failures.append(err),
        )
    assert producer.flush(10) == 0, "messages left unflushed"
    assert not failures, f"delivery failures: {failures}"

    consumer = Consumer(
        {
            "bootstrap.servers": BOOTSTRAP,
            "group.id": group,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            # tansu holds JoinGroup for session.timeout.ms / 2 (22.5 s with the
            # 45 s default), so keep it short in tests.
            "session.timeout.ms": 2000,
            "heartbeat.interval.ms": 500,
        }
    )
    consumer.subscribe([topic])
    got = {}
    deadline = time.time() + 30
    while len(got) < MESSAGES and time.time() < deadline:
        msg = consumer.poll(0.5)
        if msg is None:
            continue
        if msg.error():
            raise RuntimeError(msg.error())
        got[msg.key().decode()] = (msg.partition(), msg.offset(), msg.value().decode())
    consumer.commit(asynchronous=False)
    committed = {
        tp.partition: tp.offset
        for tp in consumer.committed([TopicPartition(topic, p) for p in range(PARTITIONS)], timeout=10)
    }
    consumer.close()

    assert sorted(got) == sorted(f"k{i}" for i in range(MESSAGES)), f"consumed {sorted(got)}"
    for i in range(MESSAGES):
        assert got[f"k{i}"][0] == i % PARTITIONS and got[f"k{i}"][2] == f"v{i}", got[f"k{i}"]
    expected = {p: len(range(p, MESSAGES, PARTITIONS)) for p in range(PARTITIONS)}
    assert committed == expected, f"committed {committed}, expected {expected}"
    admin.delete_topics([topic])[topic].result(10)
    print(f"kafka smoke ok: {BOOTSTRAP} topic={topic} partitions={PARTITIONS} consumed={len(got)} committed={committed}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
