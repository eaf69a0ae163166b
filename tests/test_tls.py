"""TLS: the daemon on an ``ssl:`` endpoint with a self-signed certificate,
reached over wss:// with certificate verification on."""

import datetime
import ipaddress

from autobahn.twisted.websocket import WebSocketClientFactory
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from twisted.internet import reactor
from twisted.internet.endpoints import TCP4ClientEndpoint, wrapClientTLS
from twisted.internet.ssl import Certificate, optionsForClientTLS

from tests.support import WAIT, ChatClient, ChatTestCase, _ClientProtocol


def self_signed(common_name: str) -> tuple[bytes, bytes]:
    """A fresh key and a self-signed certificate for ``common_name`` (and
    127.0.0.1), both PEM."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [
                    x509.DNSName(common_name),
                    x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                ]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return key_pem, certificate.public_bytes(serialization.Encoding.PEM)


async def connect_wss(port: int, hostname: str, trusted_pem: bytes) -> ChatClient:
    """Open a wss:// connection that verifies the server's certificate
    against ``trusted_pem`` and checks it names ``hostname``."""
    client = ChatClient()
    factory = WebSocketClientFactory(f"wss://{hostname}:{port}/ws")
    factory.protocol = _ClientProtocol
    factory.chat_client = client
    options = optionsForClientTLS(hostname, trustRoot=Certificate.loadPEM(trusted_pem))
    endpoint = wrapClientTLS(options, TCP4ClientEndpoint(reactor, "127.0.0.1", port))
    await endpoint.connect(factory)
    await client._open.addTimeout(WAIT, reactor)
    return client


class TlsTests(ChatTestCase):
    """wss:// end to end."""

    async def start_tls(self) -> bytes:
        """Start the daemon on ``ssl:0`` with a new certificate for
        localhost; return the certificate."""
        key_pem, cert_pem = self_signed("localhost")
        key_path, cert_path = self.mktemp() + ".key", self.mktemp() + ".crt"
        with open(key_path, "wb") as key_file:
            key_file.write(key_pem)
        with open(cert_path, "wb") as cert_file:
            cert_file.write(cert_pem)
        endpoint = (
            f"ssl:0:interface=127.0.0.1:privateKey={key_path}:certKey={cert_path}"
        )
        await self.start(server={"endpoint": endpoint, "open_handshake_timeout": 5.0})
        return cert_pem

    async def test_verified_wss(self):
        """A client that trusts the certificate and checks the hostname
        (service-identity) registers and chats over wss://."""
        cert_pem = await self.start_tls()
        alice = await connect_wss(self.port, "localhost", cert_pem)
        self.addCleanup(alice.close)
        bob = await connect_wss(self.port, "localhost", cert_pem)
        self.addCleanup(bob.close)
        alice.user = (
            await alice.call("register", username="alice", password="correct horse")
        )["user"]
        bob.user = (
            await bob.call("register", username="bob", password="correct horse")
        )["user"]
        await self.befriend(alice, bob)
        await alice.call("send_message", to_user=bob.user["id"], content="secure")
        self.assertEqual(
            (await bob.next_event("message"))["message"]["content"], "secure"
        )

    async def test_other_ca_refused(self):
        """A client that trusts a different CA gets no connection."""
        await self.start_tls()
        _, other_pem = self_signed("localhost")
        with self.assertRaises(ConnectionError):
            await connect_wss(self.port, "localhost", other_pem)

    async def test_wrong_hostname_refused(self):
        """A client expecting another hostname rejects the certificate."""
        cert_pem = await self.start_tls()
        with self.assertRaises(ConnectionError):
            await connect_wss(self.port, "chat.example.com", cert_pem)
