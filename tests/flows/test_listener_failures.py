"""The listener's failure rules agree with MagicFlow's one error table, row by row."""

import ssl

import httpx
import pytest
from aiokafka.errors import (
    KafkaConnectionError,
    MessageSizeTooLargeError,
    NotLeaderForPartitionError,
    TopicAuthorizationFailedError,
)
from prefect.exceptions import ObjectNotFound
from pydantic import BaseModel, SecretBytes, SecretStr

from flows.listener.failures import PrefectFailure, is_transient, prefect_failure
from flows.registry import mentions_secret
from magicflow.errors import error_for_exception, error_type_for_status


def _http_error(status: int) -> httpx.HTTPStatusError:
    request = httpx.Request("POST", "http://prefect/api/flow_runs/filter")
    return httpx.HTTPStatusError(
        "x", request=request, response=httpx.Response(status, request=request)
    )


@pytest.mark.parametrize("status", range(400, 512))
def test_http_statuses_follow_the_error_table(status: int) -> None:
    error = _http_error(status)
    assert is_transient(error) is error_type_for_status(status).retryable
    expected = (
        PrefectFailure.OUTAGE
        if status in (401, 403, 404, 407, 410, 451, 511)
        else PrefectFailure.TRANSIENT
        if error_type_for_status(status).retryable
        or error_type_for_status(status).__name__ == "ConflictError"
        else PrefectFailure.REFUSED
    )
    assert prefect_failure(error) is expected


@pytest.mark.parametrize(
    "error",
    [
        ConnectionRefusedError(),
        ConnectionResetError(),
        TimeoutError(),
        TimeoutError(),
        httpx.ConnectError("refused"),
        httpx.ReadTimeout("slow"),
        httpx.RemoteProtocolError("cut short"),
        ssl.SSLError("bad certificate"),
        httpx.UnsupportedProtocol("ftp://"),
        ValueError("not a transport failure"),
    ],
)
def test_transport_failures_follow_the_error_table(error: BaseException) -> None:
    typed = error_for_exception("x", error, "calling")
    assert is_transient(error) is (typed is not None and typed.retryable)


def test_kafka_rules_are_kafkas_own() -> None:
    assert is_transient(KafkaConnectionError())
    assert is_transient(NotLeaderForPartitionError())
    assert not is_transient(MessageSizeTooLargeError())
    assert not is_transient(TopicAuthorizationFailedError())


def test_a_missing_deployment_is_an_outage_not_the_requests_fault() -> None:
    assert prefect_failure(ObjectNotFound(_http_error(404))) is PrefectFailure.OUTAGE
    assert prefect_failure(_http_error(401)) is PrefectFailure.OUTAGE
    assert prefect_failure(_http_error(422)) is PrefectFailure.REFUSED
    assert prefect_failure(_http_error(503)) is PrefectFailure.TRANSIENT


class _Login(BaseModel):
    user: str
    password: SecretStr


class _Deep(BaseModel):
    logins: dict[str, list[_Login]]


class _Plain(BaseModel):
    user: str
    tags: list[str]


def test_secret_types_are_found_wherever_they_hide() -> None:
    for annotation in (
        SecretStr,
        SecretBytes,
        SecretStr | None,
        list[SecretBytes],
        dict[str, list[SecretStr]],
        _Login,
        list[_Login] | None,
        _Deep,
    ):
        assert mentions_secret(annotation), annotation
    for annotation in (str, int | None, list[str], dict[str, int], _Plain):
        assert not mentions_secret(annotation), annotation
