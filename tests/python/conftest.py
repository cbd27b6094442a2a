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
