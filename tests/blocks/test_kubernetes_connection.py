"""`KubernetesConnection` over real TLS, and with kubeconfigs that must not leak their tokens."""

import datetime
import hashlib
import ipaddress
import json
import ssl
import tempfile
import threading
import traceback
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from blocks import KubernetesConnection
from magicflow import InvalidInputError
from tasks import ensure_namespace

TOKEN = f"eyJ-{uuid.uuid4().hex}"


def certificate(
    common_name: str, key: Any, issuer: tuple[x509.Certificate, Any] | None = None
) -> x509.Certificate:
    """A certificate for `key`: a CA's own when `issuer` is None, else a server's for 127.0.0.1."""
    now = datetime.datetime.now(datetime.UTC)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer[0].subject if issuer else subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
    )
    if issuer is None:
        builder = builder.add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
    else:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            False,
        )
    return builder.sign(issuer[1] if issuer else key, hashes.SHA256())


def pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode()


class NamespaceApi(BaseHTTPRequestHandler):
    """Answers ``GET /api/v1/namespaces/<name>`` like an API server, to bearer-token requests."""

    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        name = self.path.rsplit("/", 1)[-1]
        authorized = self.headers.get("Authorization") == f"Bearer {TOKEN}"
        body = json.dumps(
            {"kind": "Namespace", "apiVersion": "v1", "metadata": {"name": name}}
            if authorized
            else {"kind": "Status", "code": 401, "message": "Unauthorized"}
        ).encode()
        self.send_response(200 if authorized else 401)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture(scope="module")
def tls_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """(URL, CA PEM) of an HTTPS API server whose certificate that CA signed."""
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = certificate("magicflow test CA", ca_key)
    server_key = ec.generate_private_key(ec.SECP256R1())
    server_cert = certificate("127.0.0.1", server_key, issuer=(ca, ca_key))
    folder = tmp_path_factory.mktemp("tls")
    (folder / "server.pem").write_text(pem(server_cert))
    (folder / "server.key").write_bytes(
        server_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(folder / "server.pem", folder / "server.key")
    server = ThreadingHTTPServer(("127.0.0.1", 0), NamespaceApi)
    server.daemon_threads = True
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"https://127.0.0.1:{server.server_address[1]}", pem(ca)
    server.shutdown()
    server.server_close()


def fast(job: Any) -> Any:
    return job.with_options(retry_delay_seconds=0)


def test_the_ca_given_in_the_block_verifies_the_server(tls_api) -> None:
    url, ca_pem = tls_api
    connection = KubernetesConnection(api_server_url=url, token=TOKEN, ca_cert_pem=ca_pem)
    assert fast(ensure_namespace)(connection, "acme", dry_run=True).action == "unchanged"
    # Without that CA the same server is not trusted: verification is real.
    untrusted = KubernetesConnection(api_server_url=url, token=TOKEN)
    with pytest.raises(InvalidInputError, match="TLS failed"):
        fast(ensure_namespace)(untrusted, "acme", dry_run=True)


def test_a_ca_file_planted_in_the_temp_folder_is_never_trusted(tls_api) -> None:
    url, ca_pem = tls_api
    # Another user of the machine plants their own CA where a predictable path would be.
    attacker_key = ec.generate_private_key(ec.SECP256R1())
    planted = (
        Path(tempfile.gettempdir())
        / f"magicflow-k8s-ca-{hashlib.sha256(ca_pem.encode()).hexdigest()[:16]}.pem"
    )
    planted.write_text(pem(certificate("attacker CA", attacker_key)))
    before = set(Path(tempfile.gettempdir()).glob("magicflow-k8s-ca-*"))
    try:
        connection = KubernetesConnection(api_server_url=url, token=TOKEN, ca_cert_pem=ca_pem)
        assert fast(ensure_namespace)(connection, "acme", dry_run=True).action == "unchanged"
        assert set(Path(tempfile.gettempdir()).glob("magicflow-k8s-ca-*")) == before
    finally:
        planted.unlink()


@pytest.mark.parametrize(
    ("kubeconfig", "cause"),
    [
        (f"users: [{{name: u, user: {{token: {TOKEN}}}}}\nclusters: [oops: : :", "line 2, col"),
        (f"token: {TOKEN}\n  - broken: [", "not valid YAML"),
        (f"- {TOKEN}", "not a YAML mapping"),
        (f"apiVersion: v1\nusers: [{{name: u, user: {{token: {TOKEN}}}}}]\n", "cannot be used"),
    ],
    ids=["unclosed-flow-list", "bad-indentation", "a-list", "no-cluster"],
)
def test_a_malformed_kubeconfig_is_invalid_input_without_its_content(
    kubeconfig, cause, captured_logs
) -> None:
    connection = KubernetesConnection(kubeconfig=kubeconfig)
    with pytest.raises(InvalidInputError, match=cause) as raised:
        fast(ensure_namespace)(connection, "acme")
    assert str(raised.value).startswith("k8s:kubeconfig/current-context: the kubeconfig ")
    assert TOKEN not in "".join(traceback.format_exception(raised.value))
    assert TOKEN not in captured_logs.text
    assert " - Retry " not in captured_logs.text
