"""The Kafka request listener's parts; the flow that runs it is `flows.kafka_trigger`.

`flows/` holds one module per workflow; the listener is the one workflow whose
machinery needs several modules, so they sit together in this package, named
after what a request passes through, in order:

- `flows.listener.requests`: checking one message (size, signature, JSON, schema,
  key, reply topic, registry, parameters), without side effects.
- `flows.listener.runs`: the Prefect side: one flow run per request id, across
  every workflow (duplicates and conflicts).
- `flows.listener.dead_letters`: the dead-letter record of a rejected message
  (original, masked copy, or metadata only).
- `flows.listener.offsets`: which offset of a partition is safe to commit.
- `flows.listener.failures`: retry, wait out a Prefect outage, or refuse.
- `flows.listener.retries`: the retries themselves (backoff, the outage pause).
- `flows.listener.loop`: `RequestListener`, the consume-dispatch-commit loop.
- `flows.listener.metrics`: its Prometheus metrics (a registry per listener) and
  the ``/metrics`` and ``/healthz`` endpoint.
- `flows.listener.crashes`: the supervised crash follower (beside the listener, or
  on its own: `flows.crash_follower`).
"""
