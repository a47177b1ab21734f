"""Workflows: Prefect flows, one module per workflow, and the registry Kafka requests use.

- `flows.kafka_trigger`: the long-running flow that turns Kafka requests into runs;
  its parts (request checks, runs, dead letters, offsets, the loop, the crash
  follower) are the package `flows.listener`.
- `flows.registry`: the allow-list of workflows a request may start.

Workflows are decorated with `magicflow.workflow`, so every run publishes its status.
"""
