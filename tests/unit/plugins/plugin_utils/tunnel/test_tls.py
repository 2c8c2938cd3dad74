"""TLS context from a CA bundle (AWS_CA_BUNDLE / profile ca_bundle), against a real wss:// server."""

from __future__ import annotations

import datetime
import ipaddress
import pathlib
import ssl

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from websockets.asyncio.server import serve

from ansible_collections.trek10.ec2ssm.plugins.plugin_utils.tunnel.errors import (
    TlsConfigError,
    WebSocketFailed,
)
from ansible_collections.trek10.ec2ssm.plugins.plugin_utils.tunnel.tls import build_ssl_context
from ansible_collections.trek10.ec2ssm.plugins.plugin_utils.tunnel.websocket_driver import Tunnel
from ansible_collections.trek10.ec2ssm.tests.unit.plugins.plugin_utils.tunnel.fake_service import (
    HARD_TIMEOUT,
    FakeService,
    Resumer,
    run,
)

pytestmark = HARD_TIMEOUT


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, pathlib.Path]:
    """A throwaway CA and a server certificate for 127.0.0.1."""
    directory = tmp_path_factory.mktemp("pki")
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(_name("test CA"))
        .issuer_name(_name("test CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name("127.0.0.1"))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    paths = {"ca": directory / "ca.pem", "cert": directory / "server.pem", "key": directory / "server.key"}
    paths["ca"].write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    paths["cert"].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths["key"].write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return paths


def test_missing_bundle_is_a_clear_error(tmp_path: pathlib.Path) -> None:
    with pytest.raises(TlsConfigError, match="does not exist"):
        build_ssl_context(tmp_path / "nope.pem")


def test_unusable_bundle_is_a_clear_error(tmp_path: pathlib.Path) -> None:
    bad = tmp_path / "bad.pem"
    bad.write_text("-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n")
    with pytest.raises(TlsConfigError, match="cannot be loaded"):
        build_ssl_context(bad)


def test_verification_on_by_default_and_off_on_request(pki: dict[str, pathlib.Path]) -> None:
    context = build_ssl_context(pki["ca"])
    assert context.verify_mode is ssl.CERT_REQUIRED
    assert context.check_hostname
    insecure = build_ssl_context(None, verify=False)
    assert insecure.verify_mode is ssl.CERT_NONE


def _wss_tunnel(port: int, context: ssl.SSLContext | None) -> Tunnel:
    return Tunnel(
        stream_url=f"wss://127.0.0.1:{port}/v1/data-channel/sess-1?role=publish_subscribe",
        token="tok-1",
        session_id="sess-1",
        target="i-0123456789abcdef0",
        resume=Resumer(None),  # type: ignore[arg-type]
        ssl_context=context,
    )


def test_wss_with_the_ca_bundle_and_without(pki: dict[str, pathlib.Path]) -> None:
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.load_cert_chain(pki["cert"], pki["key"])

    async def main() -> None:
        service = FakeService()
        async with serve(service._handler, "127.0.0.1", 0, ssl=server_context) as server:
            port = next(iter(server.sockets)).getsockname()[1]
            trusted = _wss_tunnel(port, build_ssl_context(pki["ca"]))
            info = await trusted.connect()
            assert info.agent_version == "3.3.987.0"
            await trusted.aclose()
            untrusted = _wss_tunnel(port, build_ssl_context(None))  # system store: unknown CA
            with pytest.raises(WebSocketFailed, match="certificate"):
                await untrusted.connect()

    run(main())
