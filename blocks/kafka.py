"""Kafka connection block: brokers, security, topic names and the request-signing secret."""

import asyncio
import ssl
from typing import Any, Literal

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from prefect.blocks.core import Block
from pydantic import Field, SecretStr, model_validator


class KafkaConnection(Block):
    """Connection to a Kafka cluster, and the topics MagicFlow uses on it.

    Attributes:
        bootstrap_servers: Comma-separated ``host:port`` list of brokers.
        security_protocol: ``PLAINTEXT``, ``SSL``, ``SASL_PLAINTEXT`` or ``SASL_SSL``.
        sasl_mechanism: ``PLAIN``, ``SCRAM-SHA-256`` or ``SCRAM-SHA-512`` (SASL only).
        sasl_username: SASL user name.
        sasl_password: SASL password.
        ssl_ca_pem: PEM-encoded CA certificate that signed the brokers' certificates.
        client_id: Client id the brokers see in their logs and quotas.
        requests_topic: Topic the listener consumes workflow requests from.
        status_topic: Topic statuses are published to.
        dead_letter_topic: Topic rejected requests are sent to, with the reason.
        consumer_group: Consumer group of the request listener replicas.
        reply_topic_prefix: A request's ``reply_topic`` must start with it; empty
            means requests may not name a reply topic.
        signing_secret: Shared HMAC-SHA256 secret; when set, unsigned or badly
            signed requests are rejected.

    Example:
        Load a saved Kafka connection:
        ```python
        from blocks import KafkaConnection

        kafka = KafkaConnection.load("BLOCK_NAME")
        producer = kafka.get_producer()  # start() it inside a running event loop
        ```
    """

    _block_type_name = "MagicFlow Kafka Connection"
    _logo_url = "https://kafka.apache.org/logos/kafka_logo--simple.png"  # type: ignore[assignment]
    _documentation_url = "https://aiokafka.readthedocs.io/en/stable/api.html"  # type: ignore[assignment]

    bootstrap_servers: str = Field(
        default="127.0.0.1:9092",
        title="Bootstrap servers",
        description="Comma-separated host:port list of brokers.",
    )
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        default="PLAINTEXT", title="Security protocol", description="How clients talk to brokers."
    )
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = Field(
        default=None, title="SASL mechanism", description="Required with a SASL protocol."
    )
    sasl_username: str | None = Field(default=None, title="SASL username", description="SASL user.")
    sasl_password: SecretStr | None = Field(
        default=None, title="SASL password", description="SASL password."
    )
    ssl_ca_pem: str | None = Field(
        default=None,
        title="TLS CA certificate",
        description="PEM CA certificate for SSL/SASL_SSL; the system store when empty.",
    )
    client_id: str = Field(default="magicflow", title="Client id", description="Kafka client id.")
    requests_topic: str = Field(
        default="magicflow.requests",
        title="Requests topic",
        description="Topic the listener consumes workflow requests from.",
    )
    status_topic: str = Field(
        default="magicflow.status",
        title="Status topic",
        description="Topic request and run statuses are published to.",
    )
    dead_letter_topic: str = Field(
        default="magicflow.requests.dlq",
        title="Dead-letter topic",
        description="Topic rejected requests go to, with the original bytes and the reason.",
    )
    consumer_group: str = Field(
        default="magicflow-listener",
        title="Consumer group",
        description="Consumer group shared by all listener replicas.",
    )
    reply_topic_prefix: str = Field(
        default="magicflow.replies.",
        title="Reply topic prefix",
        description=(
            "A request's reply_topic must start with this prefix (and may not be one of "
            "the topics above or an internal __ topic); empty: no reply topics."
        ),
    )
    signing_secret: SecretStr | None = Field(
        default=None,
        title="Request signing secret",
        description="HMAC-SHA256 shared secret; when set, unsigned requests are rejected.",
    )

    @model_validator(mode="after")
    def _check_sasl(self) -> "KafkaConnection":
        if self.security_protocol.startswith("SASL"):
            missing = [
                name
                for name in ("sasl_mechanism", "sasl_username", "sasl_password")
                if getattr(self, name) is None
            ]
            if missing:
                raise ValueError(f"{self.security_protocol} needs {', '.join(missing)}")
        return self

    def reply_topic_problem(self, topic: str) -> str | None:
        """Why a request may not have its statuses sent to ``topic``, or None if it may.

        Anyone who can write to the requests topic chooses the reply topic, so it is
        confined to `reply_topic_prefix`, and never the listener's own topics or a
        broker-internal one.

        Args:
            topic: The request's ``reply_topic``.

        Returns:
            The reason in words, or None when the topic is allowed.

        Example:
            >>> KafkaConnection().reply_topic_problem("magicflow.replies.ci") is None
            True
            >>> KafkaConnection().reply_topic_problem("__consumer_offsets")
            "reply_topic must start with 'magicflow.replies.'"
        """
        if not self.reply_topic_prefix:
            return "reply topics are not allowed on this connection"
        if not topic.startswith(self.reply_topic_prefix) or topic == self.reply_topic_prefix:
            return f"reply_topic must start with {self.reply_topic_prefix!r}"
        if topic.startswith("__"):
            return "reply_topic must not be an internal topic"
        if topic in (self.requests_topic, self.status_topic, self.dead_letter_topic):
            return "reply_topic must not be one of the listener's own topics"
        return None

    def client_options(self) -> dict[str, Any]:
        """Returns the aiokafka keyword arguments shared by producers and consumers.

        Returns:
            A dict for ``AIOKafkaProducer(**options)`` or ``AIOKafkaConsumer(**options)``.
            It holds the SASL password, so never log it.
        """
        options: dict[str, Any] = {
            "bootstrap_servers": self.bootstrap_servers,
            "security_protocol": self.security_protocol,
            "client_id": self.client_id,
        }
        if self.security_protocol in ("SSL", "SASL_SSL"):
            options["ssl_context"] = ssl.create_default_context(cadata=self.ssl_ca_pem)
        if self.security_protocol.startswith("SASL"):
            options["sasl_mechanism"] = self.sasl_mechanism
            options["sasl_plain_username"] = self.sasl_username
            options["sasl_plain_password"] = (
                self.sasl_password.get_secret_value() if self.sasl_password else None
            )
        return options

    def get_producer(self, **overrides: Any) -> AIOKafkaProducer:
        """Builds a producer (call ``await producer.start()`` in a running loop).

        Every message MagicFlow sends is keyed by request id and safe to receive
        twice, so the producer waits for all in-sync replicas (``acks="all"``) but
        does not ask for broker-side idempotence, which not every
        Kafka-compatible broker implements (pass ``enable_idempotence=True`` to get it).

        Args:
            **overrides: Further ``AIOKafkaProducer`` arguments.

        Returns:
            An unstarted producer.
        """
        options = {"acks": "all", **self.client_options()}
        return AIOKafkaProducer(**{**options, **overrides})

    def get_consumer(
        self, *topics: str, group_id: str | None = None, **overrides: Any
    ) -> AIOKafkaConsumer:
        """Builds a consumer that commits offsets only when told to.

        Args:
            *topics: Topics to subscribe to; none to assign partitions yourself.
            group_id: Consumer group; defaults to `consumer_group`.
            **overrides: Further ``AIOKafkaConsumer`` arguments.

        Returns:
            An unstarted consumer with auto-commit off, reading from the earliest
            uncommitted offset.
        """
        options = {
            "group_id": group_id or self.consumer_group,
            "enable_auto_commit": False,
            "auto_offset_reset": "earliest",
            **self.client_options(),
        }
        return AIOKafkaConsumer(*topics, **{**options, **overrides})


async def stop_consumer(consumer: AIOKafkaConsumer) -> None:
    """Stops a consumer, also when its broker is unreachable.

    aiokafka's ``stop()`` re-raises the cancellation of a fetch it interrupted in its
    retry back-off (aio-libs/aiokafka#647), which happens whenever the broker is down,
    and then skips closing the client. That cancellation is not the caller's: this
    finishes the clean-up and returns. A cancellation of the caller itself propagates.

    Args:
        consumer: A started (or failed-to-start) consumer.

    Example:
        >>> async def read_one(kafka: KafkaConnection) -> None:
        ...     consumer = kafka.get_consumer(kafka.status_topic)
        ...     await consumer.start()
        ...     try:
        ...         await consumer.getone()
        ...     finally:
        ...         await stop_consumer(consumer)
    """
    try:
        await consumer.stop()
    except asyncio.CancelledError:
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            raise
        await consumer._client.close()  # what stop() skipped
