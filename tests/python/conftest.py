"""Starts the real `gatehouse` binary for the Python client tests.

The binary comes from $GATEHOUSE_BIN (default: target/debug/gatehouse). Each test module
gets its own broker on free loopback ports with a temporary data dir; /health on the admin
listener is polled against a deadline. On a failed test the broker log tail is attached to
the report.
"""

import os
import pathlib
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
import uuid

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
START_DEADLINE_S = 60.0
_RUNNING = []


def gatehouse_bin() -> str:
    path = os.environ.get("GATEHOUSE_BIN") or str(ROOT / "target" / "debug" / "gatehouse")
    if not os.access(path, os.X_OK):
        pytest.fail(f"gatehouse binary not found at {path}: run `cargo build --bin gatehouse` "
                    "or set GATEHOUSE_BIN", pytrace=False)
    return path


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


class Broker:
    def __init__(self, extra_args=()):
        self.dir = tempfile.mkdtemp(prefix="gatehouse-py-")
        self.data_dir = os.path.join(self.dir, "data")
        os.makedirs(self.data_dir)
        self.log_path = os.path.join(self.dir, "broker.log")
        self.port = free_port()
        self.admin_port = free_port()
        self.extra_args = list(extra_args)
        self.proc = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self):
        log = open(self.log_path, "ab")
        env = dict(os.environ)
        env.setdefault("RUST_LOG", "info")
        self.proc = subprocess.Popen(
            [gatehouse_bin(), "broker",
             "--data-dir", self.data_dir,
             "--broker-listen", self.bootstrap,
             "--admin-listen", f"127.0.0.1:{self.admin_port}",
             *self.extra_args],
            stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=env)
        log.close()
        deadline = time.monotonic() + START_DEADLINE_S
        last = "no attempt"
        while True:
            code = self.proc.poll()
            if code is not None:
                raise RuntimeError(f"gatehouse exited with {code} before /health was 200\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.admin_port}/health", timeout=2) as r:
                    if r.status == 200:
                        return
                    last = f"HTTP {r.status}"
            except (urllib.error.URLError, OSError) as e:
                last = str(e)
            if time.monotonic() > deadline:
                raise RuntimeError(f"gatehouse not healthy after {START_DEADLINE_S}s ({last})\n{self.log_tail()}")
            time.sleep(0.025)

    def kill(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def log_tail(self, lines: int = 200) -> str:
        try:
            with open(self.log_path, "rb") as f:
                text = f.read().decode("utf-8", "replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def cleanup(self, keep: bool):
        self.kill()
        if not keep:
            shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture(scope="module")
def broker(request):
    b = Broker()
    b.start()
    _RUNNING.append(b)
    failed_before = request.session.testsfailed
    yield b
    _RUNNING.remove(b)
    keep = request.session.testsfailed > failed_before
    if keep:
        print(f"\n(gatehouse data dir and log kept in {b.dir})")
    b.cleanup(keep)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if rep.failed:
        for b in _RUNNING:
            rep.sections.append(("gatehouse log (tail)", b.log_tail()))


# --- `gatehouse serve` with the security gateway (used by test_gateway*.py) ---------------

ADMIN_PASSWORD = "admin-" + uuid.uuid4().hex[:16]
MASTER_KEY = "7a" * 32
# Test tuning: consumer groups form at once (Kafka's 3 s initial rebalance delay would
# dominate the run time), and the failed-login rate limit (per client IP, and every test
# client is 127.0.0.1) is raised so tests that fail logins on purpose cannot lock out others.
SERVE_TEST_CONFIG = """
[broker]
group_initial_rebalance_delay_ms = 0

[gateway]
max_failures_per_minute = 100000
"""


class Serve:
    """`gatehouse serve` on free loopback ports: bundled broker, registry, and the gateway's
    TLS (`tls_port`) and plaintext SASL (`plain_port`) listeners. `admin` is a super user with
    password ADMIN_PASSWORD; the gateway's CA is `ca_path` (generated at first start).

    `config` is extra TOML written to a config file (e.g. `[gateway]` tuning)."""

    def __init__(self, extra_args=(), config: str = SERVE_TEST_CONFIG):
        self.dir = tempfile.mkdtemp(prefix="gatehouse-serve-")
        self.data_dir = os.path.join(self.dir, "data")
        os.makedirs(self.data_dir)
        self.log_path = os.path.join(self.dir, "serve.log")
        self.config_path = os.path.join(self.dir, "gatehouse.toml")
        with open(self.config_path, "w") as f:
            f.write(config)
        self.broker_port = free_port()
        self.tls_port = free_port()
        self.plain_port = free_port()
        self.registry_port = free_port()
        self.admin_port = free_port()
        self.extra_args = list(extra_args)
        self.admin_password = ADMIN_PASSWORD
        self.proc = None

    @property
    def ca_path(self) -> str:
        return os.path.join(self.data_dir, "tls", "ca.pem")

    @property
    def tls_bootstrap(self) -> str:
        return f"localhost:{self.tls_port}"

    @property
    def plain_bootstrap(self) -> str:
        return f"127.0.0.1:{self.plain_port}"

    def start(self):
        log = open(self.log_path, "ab")
        env = dict(os.environ)
        env.setdefault("RUST_LOG", "info")
        env["GATEHOUSE_ADMIN_PASSWORD"] = self.admin_password
        env["GATEHOUSE_MASTER_KEY"] = MASTER_KEY
        self.proc = subprocess.Popen(
            [gatehouse_bin(), "serve",
             "--config", self.config_path,
             "--data-dir", self.data_dir,
             "--broker-listen", f"127.0.0.1:{self.broker_port}",
             "--gateway-listen", f"127.0.0.1:{self.tls_port}",
             "--gateway-plain-listen", f"127.0.0.1:{self.plain_port}",
             "--gateway-advertised-host", "localhost",
             "--registry-listen", f"127.0.0.1:{self.registry_port}",
             "--admin-listen", f"127.0.0.1:{self.admin_port}",
             *self.extra_args],
            stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=env)
        log.close()
        deadline = time.monotonic() + START_DEADLINE_S
        last = "no attempt"
        while True:
            code = self.proc.poll()
            if code is not None:
                raise RuntimeError(f"gatehouse serve exited with {code} before /health was 200\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.admin_port}/health", timeout=2) as r:
                    if r.status == 200 and os.path.exists(self.ca_path):
                        return
                    last = f"HTTP {r.status}"
            except (urllib.error.URLError, OSError) as e:
                last = str(e)
            if time.monotonic() > deadline:
                raise RuntimeError(f"gatehouse serve not healthy after {START_DEADLINE_S}s ({last})\n{self.log_tail()}")
            time.sleep(0.025)

    def kill(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def log_tail(self, lines: int = 200) -> str:
        try:
            with open(self.log_path, "rb") as f:
                text = f.read().decode("utf-8", "replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def cleanup(self, keep: bool):
        self.kill()
        if not keep:
            shutil.rmtree(self.dir, ignore_errors=True)

    # confluent-kafka client settings for this gateway.
    def tls_conf(self, user="admin", password=None, mechanism="SCRAM-SHA-256", **extra):
        conf = {
            "bootstrap.servers": self.tls_bootstrap,
            "security.protocol": "SASL_SSL",
            "ssl.ca.location": self.ca_path,
            "sasl.mechanisms": mechanism,
            "sasl.username": user,
            "sasl.password": self.admin_password if password is None else password,
        }
        conf.update(extra)
        return conf

    def plain_conf(self, user="admin", password=None, mechanism="SCRAM-SHA-256", **extra):
        conf = {
            "bootstrap.servers": self.plain_bootstrap,
            "security.protocol": "SASL_PLAINTEXT",
            "sasl.mechanisms": mechanism,
            "sasl.username": user,
            "sasl.password": self.admin_password if password is None else password,
        }
        conf.update(extra)
        return conf


def start_serve(request, extra_args=(), config=SERVE_TEST_CONFIG):
    """Starts a Serve for a module-scoped fixture; returns (serve, finalizer)."""
    s = Serve(extra_args=extra_args, config=config)
    try:
        s.start()
    except Exception:
        s.cleanup(keep=True)
        raise
    _RUNNING.append(s)
    failed_before = request.session.testsfailed

    def finish():
        _RUNNING.remove(s)
        keep = request.session.testsfailed > failed_before
        if keep:
            print(f"\n(gatehouse serve data dir and log kept in {s.dir})")
        s.cleanup(keep)

    return s, finish


@pytest.fixture(scope="module")
def serve(request):
    s, finish = start_serve(request)
    yield s
    finish()
