"""Real engine servers owned by the tests: started on free loopback ports in temporary directories.

No test depends on a server that happens to be running: each `RedisServer` is a
``redis-server`` and each `NatsServer` a ``nats-server -js`` subprocess of this
test run, on 127.0.0.1 only, killed at the end.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"
NATS_SERVER = shutil.which("nats-server") or "/usr/sbin/nats-server"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def redis_available() -> bool:
    """Whether Debian's redis-server binary is installed."""
    return os.access(REDIS_SERVER, os.X_OK)


class RedisServer:
    """One ``redis-server`` on 127.0.0.1, with its data in *directory*.

    With ``persistent=True`` every write is in the append-only file before it is
    acknowledged (``appendfsync always``), so a kill and restart keeps what was stored.
    """

    def __init__(self, directory: Path, *, persistent: bool = False, port: int | None = None) -> None:
        self.directory = directory
        self.persistent = persistent
        self.port = port or free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> None:
        """Start the server and wait (bounded) until it answers PING."""
        args = [
            REDIS_SERVER,
            "--bind",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--dir",
            str(self.directory),
            "--save",
            "",
            "--appendonly",
            "yes" if self.persistent else "no",
            "--appendfsync",
            "always",
            "--daemonize",
            "no",
            "--logfile",
            str(self.directory / "redis.log"),
        ]
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                log = (self.directory / "redis.log").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"redis-server exited with {self.process.returncode}:\n{log}")
            if self.ping():
                return
            time.sleep(0.02)
        raise TimeoutError(f"redis-server on port {self.port} did not answer within {timeout} s")

    def ping(self) -> bool:
        """Whether the server answers PING (a raw RESP exchange, no client library)."""
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
        return False

    def kill(self) -> None:
        """SIGKILL the server (as a crash): nothing is flushed beyond what appendfsync wrote."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)
        self.process = None

    def wipe(self) -> None:
        """Delete the server's data files (for a restart without data)."""
        for path in self.directory.iterdir():
            if path.name != "redis.log":
                if path.is_dir():
                    shutil.rmtree(path)
                else:
                    path.unlink()

    def stop(self) -> None:
        """Stop the server."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        self.process = None


def nats_available() -> bool:
    """Whether Debian's nats-server binary is installed."""
    return os.access(NATS_SERVER, os.X_OK)


class NatsServer:
    """One ``nats-server -js`` on 127.0.0.1, with its JetStream store in *directory*.

    `kill` is a SIGKILL; a restart on the same store recovers what JetStream had
    written to it, `wipe` first makes it a restart without data.
    """

    def __init__(self, directory: Path, *, port: int | None = None) -> None:
        self.directory = directory
        self.store = directory / "jetstream"
        self.port = port or free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self, timeout: float = 10.0) -> None:
        """Start the server and wait (bounded) until it answers PING."""
        log = self.directory / "nats.log"
        args = [NATS_SERVER, "-js", "-a", "127.0.0.1", "-p", str(self.port), "-sd", str(self.store), "-l", str(log)]
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                text = log.read_text(errors="replace")[-2000:] if log.exists() else ""
                raise RuntimeError(f"nats-server exited with {self.process.returncode}:\n{text}")
            if self.ping():
                return
            time.sleep(0.02)
        raise TimeoutError(f"nats-server on port {self.port} did not answer within {timeout} s")

    def ping(self) -> bool:
        """Whether the server answers PING (the raw NATS protocol, no client library)."""
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
            sock.recv(4096)  # INFO {...}
            sock.sendall(b'CONNECT {"verbose":false}\r\nPING\r\n')
            return b"PONG" in sock.recv(64)
        return False

    def kill(self) -> None:
        """SIGKILL the server (as a crash)."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)
        self.process = None

    def wipe(self) -> None:
        """Delete the JetStream store (for a restart without data)."""
        shutil.rmtree(self.store, ignore_errors=True)

    def stop(self) -> None:
        """Stop the server."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        self.process = None
