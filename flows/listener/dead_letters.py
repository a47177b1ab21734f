"""Dead letters: the record a rejected request becomes on the dead-letter topic.

A dead letter always says where the message came from and why it was refused, in
headers (`REASON_HEADER`, `SOURCE_TOPIC_HEADER`, ...). Its value is the original
bytes (or a copy with secret parameters masked, listed in `REDACTED_HEADER`)
only when `flows.listener.requests` could prove which values are secret and the
copy fits; otherwise it is metadata only: a small JSON object with the source,
the size and the SHA-256 of the original, and the reason. A metadata-only dead
letter always fits the listener's producer, whatever the original was.

Example:
    ```python
    key, value, headers = dead_letter(record, rejection, max_bytes=1_000_000)
    await producer.send_and_wait(kafka.dead_letter_topic, value, key=key, headers=headers)
    ```
"""

from __future__ import annotations

import hashlib
import json
from typing import TypeAlias

from aiokafka.structs import ConsumerRecord

from flows.listener.requests import Rejection, message_size

REASON_HEADER = "x-magicflow-reason"
"""Dead-letter header: why the message was rejected (never holds a secret)."""
SOURCE_TOPIC_HEADER = "x-magicflow-source-topic"
"""Dead-letter header: the topic the message was consumed from."""
SOURCE_PARTITION_HEADER = "x-magicflow-source-partition"
"""Dead-letter header: its partition."""
SOURCE_OFFSET_HEADER = "x-magicflow-source-offset"
"""Dead-letter header: its offset."""
REDACTED_HEADER = "x-magicflow-redacted"
"""Dead-letter header: the fields whose secret values were masked in the copy."""
CONTENT_HEADER = "x-magicflow-content"
"""Dead-letter header: ``original``, ``redacted`` or ``metadata`` (the value is `metadata`)."""
ORIGINAL_SHA256_HEADER = "x-magicflow-original-sha256"
"""Dead-letter header: SHA-256 (hex) of the original value."""
ORIGINAL_SIZE_HEADER = "x-magicflow-original-size"
"""Dead-letter header: bytes of the original value, key and headers."""

MAX_KEY_BYTES = 256
"""A metadata-only dead letter keeps the original key only up to this size."""
HEADROOM_BYTES = 16_384
"""Room a dead letter keeps for its own headers and Kafka's record framing."""

Record: TypeAlias = ConsumerRecord[bytes, bytes]
DeadLetter: TypeAlias = tuple[bytes | None, bytes, list[tuple[str, bytes]]]


def metadata(record: Record, reason: str) -> dict[str, object]:
    """What a metadata-only dead letter says about the original message.

    Args:
        record: The original message.
        reason: Why it was rejected.

    Returns:
        Source topic, partition and offset, size, SHA-256 of the value, and the reason.
    """
    return {
        "topic": record.topic,
        "partition": record.partition,
        "offset": record.offset,
        "size": message_size(record.value, record.key, list(record.headers or ())),
        "sha256": hashlib.sha256(record.value or b"").hexdigest(),
        "reason": reason,
    }


def dead_letter(
    record: Record, rejection: Rejection, max_bytes: int, metadata_only: bool = False
) -> DeadLetter:
    """The dead-letter record of a rejected message: key, value and headers.

    Args:
        record: The original message.
        rejection: Why it was rejected, and what copy of it may be kept.
        max_bytes: The largest value the dead letter may carry (the copy is
            replaced by metadata when it does not fit).
        metadata_only: Never carry the copy (e.g. after the broker refused it).

    Returns:
        The key (the original's, when small), the value and the headers.
    """
    facts = metadata(record, rejection.reason)
    copy = None if metadata_only else rejection.copy
    if copy is not None and len(copy) + HEADROOM_BYTES > max_bytes:
        copy = None
    content = "metadata" if copy is None else "redacted" if rejection.redacted else "original"
    headers = [
        (REASON_HEADER, rejection.reason.encode()),
        (SOURCE_TOPIC_HEADER, record.topic.encode()),
        (SOURCE_PARTITION_HEADER, str(record.partition).encode()),
        (SOURCE_OFFSET_HEADER, str(record.offset).encode()),
        (CONTENT_HEADER, content.encode()),
        (ORIGINAL_SHA256_HEADER, str(facts["sha256"]).encode()),
        (ORIGINAL_SIZE_HEADER, str(facts["size"]).encode()),
    ]
    if copy is not None and rejection.redacted:
        headers.append((REDACTED_HEADER, ",".join(rejection.redacted).encode()))
    key = record.key if record.key is None or len(record.key) <= MAX_KEY_BYTES else None
    value = copy if copy is not None else json.dumps(facts).encode()
    return key, value, headers
