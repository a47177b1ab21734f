"""A loopback fake of the AWS APIs moto lacks: Service Quotas and Backup recovery points.

Run: ``python aws_quota_fake.py --port P``. It speaks the real wire protocols, so boto3
clients (and the jobs in ``tasks/aws.py``) talk to it unchanged through an endpoint URL:

* Service Quotas, awsJson1_1: ``POST /`` with ``X-Amz-Target: ServiceQuotasV20190624.<Op>``
  for ``GetServiceQuota``, ``GetAWSDefaultServiceQuota``, ``RequestServiceQuotaIncrease``
  and ``ListRequestedServiceQuotaChangeHistoryByQuota``. Errors are HTTP 400 with
  ``{"__type": Code, "message": ...}``, as AWS sends them.
* AWS Backup, restJson1: ``GET /backup-vaults/{name}/recovery-points/`` with
  ``maxResults``/``nextToken`` (ListRecoveryPointsByBackupVault), and
  ``GET /backup-vaults/{name}/recovery-points/{arn}`` (DescribeRecoveryPoint). Errors
  carry ``X-Amzn-ErrorType``.

Shapes follow botocore's service models (``service-quotas/2019-06-24``,
``backup/2018-11-15``); timestamps are epoch seconds, as both JSON protocols send them.
Signatures are not checked (like moto).

TEST-ONLY control endpoints, which AWS does not have:

* ``POST /__seed__`` replaces all state with ``{"quotas": [ServiceQuota...],
  "default_quotas": [ServiceQuota...], "requests": [RequestedServiceQuotaChange...],
  "vaults": {name: [RecoveryPointByBackupVault...]}, "page_size": N}``.
* ``GET /__state__`` returns ``{"requests": [...], "calls": {operation: count}}``.
"""

import argparse
import json
import re
import threading
import time
import uuid
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

TARGET_PREFIX = "ServiceQuotasV20190624."
OPEN_STATUSES = {"PENDING", "CASE_OPENED"}
ACCOUNT = "123456789012"
REGION = "eu-west-1"
RECOVERY_POINTS = re.compile(r"^/backup-vaults/([^/]+)/recovery-points/?$")
RECOVERY_POINT = re.compile(r"^/backup-vaults/([^/]+)/recovery-points/([^/]+)$")


class AwsError(Exception):
    def __init__(self, code: str, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status


class State:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.seed({})

    def seed(self, data: dict[str, Any]) -> None:
        self.quotas = {self.key(q): self.complete_quota(q) for q in data.get("quotas", [])}
        self.defaults = {
            self.key(q): self.complete_quota(q) for q in data.get("default_quotas", [])
        }
        self.requests: list[dict[str, Any]] = list(data.get("requests", []))
        self.vaults: dict[str, list[dict[str, Any]]] = dict(data.get("vaults", {}))
        self.page_size = int(data.get("page_size", 100))
        self.calls: Counter[str] = Counter()

    @staticmethod
    def key(item: dict[str, Any]) -> tuple[str, str]:
        return item["ServiceCode"], item["QuotaCode"]

    @staticmethod
    def complete_quota(quota: dict[str, Any]) -> dict[str, Any]:
        service, code = quota["ServiceCode"], quota["QuotaCode"]
        return {
            "ServiceName": service,
            "QuotaArn": f"arn:aws:servicequotas:{REGION}:{ACCOUNT}:{service}/{code}",
            "QuotaName": code,
            "Unit": "None",
            "Adjustable": True,
            "GlobalQuota": False,
            "QuotaAppliedAtLevel": "ACCOUNT",
            **quota,
        }

    def quota(self, body: dict[str, Any], *, applied: bool) -> dict[str, Any]:
        for field in ("ServiceCode", "QuotaCode"):
            if not body.get(field):
                raise AwsError("IllegalArgumentException", f"{field} is required")
        table = self.quotas if applied else self.defaults
        found = table.get(self.key(body))
        if found is None:
            raise AwsError(
                "NoSuchResourceException",
                f"The request failed because the specified quota {body['QuotaCode']} "
                f"of service {body['ServiceCode']} does not exist.",
            )
        return found


def handle_service_quotas(state: State, operation: str, body: dict[str, Any]) -> dict[str, Any]:
    if operation == "GetServiceQuota":
        return {"Quota": state.quota(body, applied=True)}
    if operation == "GetAWSDefaultServiceQuota":
        return {"Quota": state.quota(body, applied=False)}
    if operation == "ListRequestedServiceQuotaChangeHistoryByQuota":
        if state.key(body) not in state.quotas:
            state.quota(body, applied=False)  # raises NoSuchResourceException for unknown quotas
        matching = [
            r
            for r in state.requests
            if state.key(r) == state.key(body) and body.get("Status") in (None, r["Status"])
        ]
        start = int(body.get("NextToken") or 0)
        size = int(body.get("MaxResults") or state.page_size)
        page = matching[start : start + size]
        result: dict[str, Any] = {"RequestedQuotas": page}
        if start + size < len(matching):
            result["NextToken"] = str(start + size)
        return result
    if operation == "RequestServiceQuotaIncrease":
        desired = body.get("DesiredValue")
        if not isinstance(desired, int | float) or not 0 <= desired <= 10_000_000_000:
            raise AwsError("IllegalArgumentException", "DesiredValue is out of range")
        key = state.key(body)
        quota = state.quotas.get(key) or state.quota(body, applied=False)
        if not quota.get("Adjustable"):
            raise AwsError("IllegalArgumentException", "The quota is not adjustable.")
        if desired <= quota["Value"]:
            raise AwsError(
                "IllegalArgumentException", "The desired value must exceed the current value."
            )
        if any(state.key(r) == key and r["Status"] in OPEN_STATUSES for r in state.requests):
            raise AwsError(
                "ResourceAlreadyExistsException",
                "Only one open service quota increase request is allowed per quota.",
            )
        now = time.time()
        request = {
            "Id": uuid.uuid4().hex,
            "RequestType": "AutomaticManagement",
            "ServiceCode": key[0],
            "ServiceName": quota["ServiceName"],
            "QuotaCode": key[1],
            "QuotaName": quota["QuotaName"],
            "DesiredValue": float(desired),
            "Status": "PENDING",
            "Created": now,
            "LastUpdated": now,
            "Requester": json.dumps({"accountId": ACCOUNT}),
            "QuotaArn": quota["QuotaArn"],
            "GlobalQuota": quota["GlobalQuota"],
            "Unit": quota["Unit"],
            "QuotaRequestedAtLevel": "ACCOUNT",
        }
        state.requests.append(request)
        return {"RequestedQuota": request}
    raise AwsError("UnknownOperationException", f"Unknown operation {operation}")


def list_recovery_points(state: State, vault: str, query: dict[str, list[str]]) -> dict[str, Any]:
    if vault not in state.vaults:
        raise AwsError("ResourceNotFoundException", f"Backup vault {vault} not found", 404)
    points = [{"BackupVaultName": vault, **point} for point in state.vaults[vault]]
    start = int(query.get("nextToken", ["0"])[0])
    size = int(query.get("maxResults", [str(state.page_size)])[0])
    result: dict[str, Any] = {"RecoveryPoints": points[start : start + size]}
    if start + size < len(points):
        result["NextToken"] = str(start + size)
    return result


def describe_recovery_point(state: State, vault: str, arn: str) -> dict[str, Any]:
    if vault not in state.vaults:
        raise AwsError("ResourceNotFoundException", f"Backup vault {vault} not found", 404)
    for point in state.vaults[vault]:
        if point.get("RecoveryPointArn") == arn:
            return {"BackupVaultName": vault, **point}
    raise AwsError("ResourceNotFoundException", f"Recovery point {arn} not found", 404)


def make_handler(state: State) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _reply(
            self,
            status: int,
            payload: dict[str, Any],
            content_type: str,
            headers: dict[str, str] | None = None,
        ) -> None:
            body = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("x-amzn-RequestId", str(uuid.uuid4()))
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(body)

        def _read_json(self) -> dict[str, Any]:
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            return dict(json.loads(raw)) if raw.strip() else {}

        def do_POST(self) -> None:
            body = self._read_json()
            if self.path == "/__seed__":
                with state.lock:
                    state.seed(body)
                return self._reply(200, {"seeded": True}, "application/json")
            target = self.headers.get("X-Amz-Target", "")
            if not target.startswith(TARGET_PREFIX):
                return self._reply(
                    400,
                    {"__type": "UnknownOperationException", "message": f"no target {target!r}"},
                    "application/x-amz-json-1.1",
                )
            operation = target[len(TARGET_PREFIX) :]
            try:
                with state.lock:
                    state.calls[operation] += 1
                    result = handle_service_quotas(state, operation, body)
            except AwsError as error:
                payload = {"__type": error.code, "message": error.message}
                return self._reply(error.status, payload, "application/x-amz-json-1.1")
            return self._reply(200, result, "application/x-amz-json-1.1")

        def do_GET(self) -> None:
            url = urlsplit(self.path)
            if url.path == "/__state__":
                with state.lock:
                    snapshot = {"requests": state.requests, "calls": dict(state.calls)}
                return self._reply(200, snapshot, "application/json")
            match = RECOVERY_POINTS.match(url.path)
            point = RECOVERY_POINT.match(url.path)
            if match is None and point is not None:
                try:
                    with state.lock:
                        state.calls["DescribeRecoveryPoint"] += 1
                        found = describe_recovery_point(state, unquote(point[1]), unquote(point[2]))
                except AwsError as error:
                    payload = {"Code": error.code, "Message": error.message}
                    return self._reply(
                        error.status, payload, "application/json", {"X-Amzn-ErrorType": error.code}
                    )
                return self._reply(200, found, "application/json")
            if match is None:
                error = {"Code": "UnknownOperationException", "Message": f"no route {url.path}"}
                return self._reply(
                    404,
                    error,
                    "application/json",
                    {"X-Amzn-ErrorType": "UnknownOperationException"},
                )
            try:
                with state.lock:
                    state.calls["ListRecoveryPointsByBackupVault"] += 1
                    result = list_recovery_points(state, unquote(match[1]), parse_qs(url.query))
            except AwsError as error:
                payload = {"Code": error.code, "Message": error.message}
                return self._reply(
                    error.status, payload, "application/json", {"X-Amzn-ErrorType": error.code}
                )
            return self._reply(200, result, "application/json")

    return Handler


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    server = ThreadingHTTPServer(("127.0.0.1", args.port), make_handler(State()))
    server.daemon_threads = True
    server.serve_forever()


if __name__ == "__main__":
    main()
