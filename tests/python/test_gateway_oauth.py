"""SASL/OAUTHBEARER through the gateway, against a real OpenID provider.

The issuer is tests/oidc/issuer.mjs (panva/oidc-provider on loopback; client `gateway-test` /
`secret-123`, client_credentials with scope `kafka`, access tokens are RS256 JWTs whose
audience is the requested resource, default `urn:kafka:gateway`). One issuer and one
`gatehouse serve --oidc-issuer <url> --oidc-audience urn:kafka:gateway` per module.

confluent-kafka fetches its own tokens (`sasl.oauthbearer.method=oidc`); the refusal cases hand
a prepared token over with `oauth_cb`.
"""

import base64
import json
import shutil
import subprocess
import threading
import time

import pytest
import requests
from confluent_kafka import (
    OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, Producer, TopicPartition,
)
from confluent_kafka.admin import (
    AclBinding, AclOperation, AclPermissionType, AdminClient, NewTopic, ResourcePatternType,
    ResourceType,
)

from conftest import ROOT, start_serve, unique

OIDC_DIR = ROOT / "tests" / "oidc"
CLIENT_ID = "gateway-test"
CLIENT_SECRET = "secret-123"
AUDIENCE = "urn:kafka:gateway"
OTHER_AUDIENCE = "urn:kafka:other"
PRINCIPAL = f"User:{CLIENT_ID}"
TIMEOUT_S = 30


# --- fixtures ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def issuer():
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not on PATH: the OIDC issuer (tests/oidc/issuer.mjs) needs Node.js")
    if not (OIDC_DIR / "node_modules" / "oidc-provider").is_dir():
        subprocess.run(["npm", "ci", "--prefix", str(OIDC_DIR), "--no-audit", "--no-fund"],
                       check=True, timeout=300)
    proc = subprocess.Popen([node, str(OIDC_DIR / "issuer.mjs"), "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = None
    lines = []
    deadline = time.monotonic() + 30
    try:
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
            if line.startswith("READY "):
                url = line.split()[1]
                break
        if url is None:
            raise RuntimeError("the OIDC issuer did not print READY:\n" + "".join(lines))
        # Keep draining its output so it never blocks on a full pipe.
        threading.Thread(target=lambda: [None for _ in proc.stdout], daemon=True).start()
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


@pytest.fixture(scope="module")
def token_endpoint(issuer):
    with requests.get(f"{issuer}/.well-known/openid-configuration", timeout=10) as r:
        r.raise_for_status()
        return r.json()["token_endpoint"]


@pytest.fixture(scope="module")
def serve(request, issuer):
    s, finish = start_serve(request, extra_args=[
        "--oidc-issuer", issuer, "--oidc-audience", AUDIENCE])
    yield s
    finish()


# --- helpers -------------------------------------------------------------------------------

def oidc_conf(serve, token_endpoint, **extra):
    conf = {
        "bootstrap.servers": serve.tls_bootstrap,
        "security.protocol": "SASL_SSL",
        "ssl.ca.location": serve.ca_path,
        "sasl.mechanisms": "OAUTHBEARER",
        "sasl.oauthbearer.method": "oidc",
        "sasl.oauthbearer.client.id": CLIENT_ID,
        "sasl.oauthbearer.client.secret": CLIENT_SECRET,
        "sasl.oauthbearer.token.endpoint.url": token_endpoint,
        "sasl.oauthbearer.scope": "kafka",
    }
    conf.update(extra)
    return conf


def token_conf(serve, token, expires_in=300):
    """OAUTHBEARER with a token the test provides (oauth_cb), instead of librdkafka's own."""
    def oauth_cb(_config):
        return token, time.time() + expires_in
    return {
        "bootstrap.servers": serve.tls_bootstrap,
        "security.protocol": "SASL_SSL",
        "ssl.ca.location": serve.ca_path,
        "sasl.mechanisms": "OAUTHBEARER",
        "oauth_cb": oauth_cb,
    }


def fetch_token(token_endpoint, resource=None):
    data = {"grant_type": "client_credentials", "scope": "kafka"}
    if resource:
        data["resource"] = resource
    r = requests.post(token_endpoint, data=data, auth=(CLIENT_ID, CLIENT_SECRET), timeout=10)
    assert r.status_code == 200, r.text
    return r.json()["access_token"]


def b64d(part):
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def b64e(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def claims(token):
    return json.loads(b64d(token.split(".")[1]))


def admin(serve):
    return AdminClient(serve.tls_conf())


def create_topic(serve, name):
    a = admin(serve)
    a.create_topics([NewTopic(name, 1, 1)])[name].result(timeout=TIMEOUT_S)


def grant(serve, name, *ops):
    a = admin(serve)
    bindings = [AclBinding(ResourceType.TOPIC, name, ResourcePatternType.LITERAL, PRINCIPAL,
                           "*", op, AclPermissionType.ALLOW) for op in ops]
    for f in a.create_acls(bindings).values():
        f.result(timeout=TIMEOUT_S)


def produce(conf, topic, values):
    p = Producer({**conf, "message.timeout.ms": 15000})
    errors = []
    for v in values:
        p.produce(topic, v, on_delivery=lambda err, msg: errors.append(err))
    assert p.flush(TIMEOUT_S) == 0
    return errors


def login_errors(conf, timeout=15):
    """Connects a producer; returns (authentication errors, every error seen) once an
    authentication error shows up or the timeout passes."""
    seen = []
    got = threading.Event()

    def on_error(err):
        seen.append(err)
        if err.code() == KafkaError._AUTHENTICATION:
            got.set()

    p = Producer({**conf, "error_cb": on_error})
    deadline = time.monotonic() + timeout
    while not got.is_set() and time.monotonic() < deadline:
        p.poll(0.2)
        if not got.is_set():
            try:
                p.list_topics(timeout=1)
            except KafkaException as e:
                seen.append(e.args[0])
                if e.args[0].code() == KafkaError._AUTHENTICATION:
                    got.set()
    return [e for e in seen if e.code() == KafkaError._AUTHENTICATION], seen


def assert_refused(conf, why):
    """The gateway refuses the login with Kafka's invalid-credentials text and `why` (one
    text, or a tuple of acceptable ones)."""
    auth, seen = login_errors(conf)
    assert auth, f"expected an authentication failure; saw {[str(e) for e in seen]}"
    text = auth[0].str()
    assert "Authentication failed" in text and "OAUTHBEARER" in text, text
    whys = (why,) if isinstance(why, str) else why
    assert any(w in text for w in whys), text


def can_log_in(conf):
    a = AdminClient(conf)
    try:
        a.list_topics(timeout=10)
        return True
    except KafkaException:
        return False


# --- tests ---------------------------------------------------------------------------------

def test_issuer_token_is_for_the_gateway(token_endpoint):
    c = claims(fetch_token(token_endpoint))
    assert c["sub"] == CLIENT_ID
    assert c["aud"] == AUDIENCE or AUDIENCE in c["aud"]


def test_oidc_client_with_acl_produces_and_consumes(serve, token_endpoint):
    topic = unique("oauth")
    create_topic(serve, topic)
    # The ACL names User:gateway-test only: it working proves the principal is the `sub`.
    grant(serve, topic, AclOperation.WRITE, AclOperation.READ)
    conf = oidc_conf(serve, token_endpoint)
    assert produce(conf, topic, [b"o1", b"o2", b"o3"]) == [None, None, None]
    c = Consumer({**conf, "group.id": unique("oauth-reader"), "enable.auto.commit": False})
    try:
        c.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
        got = []
        deadline = time.monotonic() + TIMEOUT_S
        while len(got) < 3 and time.monotonic() < deadline:
            m = c.poll(0.2)
            if m is None:
                continue
            if m.error():
                # No group ACL: the coordinator lookup for the reader's group.id is refused,
                # fetching (assign) goes on.
                assert m.error().code() in (KafkaError._PARTITION_EOF,
                                            KafkaError.GROUP_AUTHORIZATION_FAILED), m.error()
                continue
            got.append(m.value())
        assert got == [b"o1", b"o2", b"o3"]
    finally:
        c.close()


def test_oidc_client_without_acl_is_denied(serve, token_endpoint):
    topic = unique("oauth-denied")
    create_topic(serve, topic)
    conf = oidc_conf(serve, token_endpoint)
    errors = produce(conf, topic, [b"nope"])
    assert errors[0] is not None and errors[0].code() == KafkaError.TOPIC_AUTHORIZATION_FAILED
    a = AdminClient(conf)
    assert topic not in a.list_topics(timeout=TIMEOUT_S).topics


def test_token_via_oauth_cb_is_accepted(serve, token_endpoint):
    """Control for the refusal cases below: a good token handed over by oauth_cb works."""
    assert can_log_in(token_conf(serve, fetch_token(token_endpoint)))


def test_token_for_another_audience_is_refused(serve, token_endpoint):
    token = fetch_token(token_endpoint, resource=OTHER_AUDIENCE)
    assert claims(token)["aud"] in (OTHER_AUDIENCE, [OTHER_AUDIENCE])
    assert_refused(token_conf(serve, token), "token audience does not match")


def test_forged_signature_is_refused(serve, token_endpoint):
    header, payload, signature = fetch_token(token_endpoint).split(".")
    sig = bytearray(b64d(signature))
    sig[len(sig) // 2] ^= 0x01
    forged = ".".join([header, payload, b64e(bytes(sig))])
    assert_refused(token_conf(serve, forged), "token signature is invalid")


def test_modified_claims_are_refused(serve, token_endpoint):
    """The original signature over changed claims: here an attempt to become admin."""
    header, payload, signature = fetch_token(token_endpoint).split(".")
    c = json.loads(b64d(payload))
    c["sub"] = "admin"
    forged = ".".join([header, b64e(json.dumps(c).encode()), signature])
    assert_refused(token_conf(serve, forged), "token signature is invalid")


def test_expired_token_is_refused(serve, token_endpoint):
    """An expired token (exp an hour ago, beyond the 30 s clock skew). The issuer signs only
    fresh tokens, so this one's claims are changed too: it must fail either way."""
    header, payload, signature = fetch_token(token_endpoint).split(".")
    c = json.loads(b64d(payload))
    now = int(time.time())
    c["iat"] = now - 7200
    if "nbf" in c:
        c["nbf"] = now - 7200
    c["exp"] = now - 3600
    expired = ".".join([header, b64e(json.dumps(c).encode()), signature])
    assert_refused(token_conf(serve, expired, expires_in=60),
                   ("token expired", "token signature is invalid"))


def test_unsigned_token_is_refused(serve, token_endpoint):
    """alg=none with the admin as subject."""
    c = claims(fetch_token(token_endpoint))
    c["sub"] = "admin"
    header = {"alg": "none", "typ": "at+jwt"}
    unsigned = ".".join([b64e(json.dumps(header).encode()), b64e(json.dumps(c).encode()), ""])
    assert_refused(token_conf(serve, unsigned), "token algorithm is not allowed")


def test_gateway_still_serves_after_refusals(serve, token_endpoint):
    assert can_log_in(oidc_conf(serve, token_endpoint))
    assert can_log_in(serve.tls_conf())
