"""A real Redis Sentinel set-up: a master, a replica and one sentinel (or three, quorum 2),
on free loopback ports.

``down-after-milliseconds`` is 1000 here (Redis' default is 30000, so a default sentinel
declares a dead master down only after 30 s). The replica reaches its master through a
:class:`ReplicationLink` the tests can hold (a network partition between the two), so a
write can be made that the replica never gets. ``failover-timeout`` is 60000 (default
180000): it also delays a sentinel's "fix" of a replica that names another master
address than the one monitored (the link's), which must not happen during a test.
"""
from __future__ import annotations

import socket
import subprocess
import threading
from pathlib import Path

import pytest
import redis

from tests.helpers import free_ports, wait_until

MASTER_NAME = "mymaster"
DOWN_AFTER_MS = 1000


class ReplicationLink:
    """A TCP relay from the replica to its master. :meth:`hold` keeps what the master sends
    in the relay (the replica gets nothing more); :meth:`cut` drops it with the connection,
    and the replica can no longer reach the master through the link."""

    def __init__(self, master_port: int) -> None:
        self.master_port = master_port
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._open = threading.Event()
        self._open.set()
        self._cut = False
        self._sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def hold(self) -> None:
        self._open.clear()

    def cut(self) -> None:
        self._cut = True
        self._open.set()
        for sock in [self._listener, *self._sockets]:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()

    def _accept(self) -> None:
        while not self._cut:
            try:
                replica, _ = self._listener.accept()
                master = socket.create_connection(("127.0.0.1", self.master_port))
            except OSError:
                return
            self._sockets += [replica, master]
            threading.Thread(target=self._pump, args=(master, replica, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(replica, master, False), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket, from_master: bool) -> None:
        try:
            while data := source.recv(65536):
                if from_master:
                    self._open.wait()  # held: the bytes stay here, and a cut drops them
                if self._cut:
                    return
                sink.sendall(data)
        except OSError:
            return
        finally:
            for sock in (source, sink):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass


class SentinelCluster:
    """redis-server processes (a master, its replica) and ``sentinels`` sentinels monitoring
    them (quorum: a majority); the replica replicates through a :class:`ReplicationLink`
    unless ``through_link`` is False."""

    def __init__(self, root: Path, down_after_ms: int = DOWN_AFTER_MS, through_link: bool = True,
                 sentinels: int = 1) -> None:
        self.root = root
        self.down_after_ms = down_after_ms
        self.through_link = through_link
        self.link: ReplicationLink | None = None
        master, replica, *self.sentinel_ports = free_ports(2 + sentinels)
        self.first_master, self.first_replica = master, replica
        self.sentinel_port = self.sentinel_ports[0]
        self.procs: dict[int, subprocess.Popen] = {}
        self.url = ";".join(f"sentinel://127.0.0.1:{port}/0" for port in self.sentinel_ports)

    # --- processes ---------------------------------------------------------------
    def _spawn(self, port: int, *args: str) -> subprocess.Popen:
        folder = self.root / str(port)
        folder.mkdir(exist_ok=True)
        log = open(folder / "log", "wb")
        proc = subprocess.Popen(["redis-server", *args], cwd=folder, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        self.procs[port] = proc
        return proc

    def _server(self, port: int, *extra: str) -> None:
        self._spawn(port, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                    "--repl-diskless-sync-delay", "0", *extra)
        wait_until(lambda: _pings(port), timeout=15, message=f"redis-server on {port}")

    def start(self) -> "SentinelCluster":
        self._server(self.first_master)
        upstream = self.first_master
        if self.through_link:
            self.link = ReplicationLink(self.first_master)
            upstream = self.link.port
        self._server(self.first_replica, "--replicaof", "127.0.0.1", str(upstream))
        wait_until(lambda: self.replica_in_sync(self.first_replica), timeout=30, message="the replica's first sync")
        quorum = len(self.sentinel_ports) // 2 + 1
        for port in self.sentinel_ports:
            conf = self.root / f"sentinel-{port}.conf"
            conf.write_text("\n".join([
                f"port {port}", "bind 127.0.0.1", f"dir {self.root}",
                f"sentinel monitor {MASTER_NAME} 127.0.0.1 {self.first_master} {quorum}",
                f"sentinel down-after-milliseconds {MASTER_NAME} {self.down_after_ms}",
                f"sentinel failover-timeout {MASTER_NAME} 60000",
            ]) + "\n")
            self._spawn(port, str(conf), "--sentinel")
        for port in self.sentinel_ports:
            wait_until(lambda: self.sentinel_sees_replica(self.first_replica, port) and self.sentinels_known(port),
                       timeout=30, message=f"the sentinel on {port} to discover the replica and the other sentinels")
        return self

    def close(self) -> None:
        if self.link is not None:
            self.link.cut()
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.kill()
            proc.wait(10)

    def kill(self, port: int) -> None:
        self.procs[port].kill()
        self.procs[port].wait(10)

    def rejoin(self, port: int, timeout: float = 60.0) -> None:
        """Start the (empty) server on ``port`` again, as an operator restarts a failed
        master, and wait until the sentinel has made it a replica in sync with the new master,
        and the master counts it online (only then can a WAIT count its acknowledgement)."""
        self._server(port)
        wait_until(lambda: _info(port).get("role") == "slave" and self.replica_in_sync(port)
                   and self.master_counts_replica(port), timeout=timeout,
                   message=f"the sentinel to make {port} a replica of the new master")

    # --- what the servers and the sentinel say -------------------------------------
    def sentinel(self, port: int | None = None) -> redis.Redis:
        return redis.Redis(port=port or self.sentinel_port, socket_timeout=2, decode_responses=True)

    def master_port(self) -> int:
        with self.sentinel() as client:
            return int(client.execute_command("SENTINEL", "get-master-addr-by-name", MASTER_NAME)[1])

    def sentinels_known(self, port: int) -> bool:
        with self.sentinel(port) as client:
            return len(client.execute_command("SENTINEL", "sentinels", MASTER_NAME)) == len(self.sentinel_ports) - 1

    def sentinel_sees_replica(self, port: int, sentinel_port: int | None = None) -> bool:
        with self.sentinel(sentinel_port) as client:
            replicas = client.execute_command("SENTINEL", "replicas", MASTER_NAME)
        for entry in replicas:
            fields = dict(zip(entry[::2], entry[1::2])) if isinstance(entry, list) else entry
            if int(fields["port"]) == port and fields.get("master-link-status") == "ok" and "s_down" not in fields["flags"]:
                return True
        return False

    def master_counts_replica(self, port: int) -> bool:
        """Whether the current master lists the replica on ``port`` as online."""
        info = _info(self.master_port())
        return any(isinstance(v, dict) and int(v.get("port", 0)) == port and v.get("state") == "online"
                   for k, v in info.items() if k.startswith("slave"))

    def replica_in_sync(self, port: int) -> bool:
        info = _info(port)
        return info.get("master_link_status") == "up" and info.get("master_sync_in_progress") == 0

    def wait_failover(self, old_master: int, timeout: float = 30.0) -> int:
        """Wait until the sentinel names another master and that one is a master; its port."""
        def promoted():
            port = self.master_port()
            return port if port != old_master and _info(port).get("role") == "master" else None

        return wait_until(promoted, timeout=timeout, message="the sentinel to promote the replica")


def _info(port: int) -> dict:
    try:
        with redis.Redis(port=port, socket_timeout=2) as client:
            return client.info()
    except redis.RedisError:
        return {}


def _pings(port: int) -> bool:
    try:
        with redis.Redis(port=port, socket_timeout=1) as client:
            return client.ping()
    except redis.RedisError:
        return False


@pytest.fixture
def sentinel_cluster(tmp_path):
    cluster = SentinelCluster(tmp_path).start()
    yield cluster
    cluster.close()
