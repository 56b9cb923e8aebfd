"""Hosts in network namespaces, wired by veth pairs into bridges, with links to cut.

One :class:`Network` per test module (or benchmark run). Every name it makes starts with
``omh`` + the creating process's pid in base 36 (4 characters), so a run cleans up what a
crashed earlier run left behind (its pid is gone) without touching a concurrent one.

Each *net* is a bridge in the root namespace; each host is a namespace with one veth
pair per net it is on (``eth-<net>`` inside, ``<prefix><host#><net>`` outside, on the
bridge). Cutting a host off a net sets the outside end down: the host keeps its
address, its sockets and its other nets, and packets to or from it on that net are
dropped until the link is set up again (TCP retransmits, nothing is reset).

The first net may give the root namespace an address on its bridge (``gateway``), so
the test process talks to the hosts directly.
"""
from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass, field

PREFIX = "omh"


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    done = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)
    if check and done.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)} failed: {done.stderr.strip()}")
    return done


def _base36(number: int, width: int = 4) -> str:
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    out = ""
    while number:
        number, rest = divmod(number, 36)
        out = digits[rest] + out
    return out.rjust(width, "0")[-width:]


def unavailable() -> str | None:
    """Why this process cannot build namespaces (None when it can)."""
    if os.geteuid() != 0:
        return "multi-host tests need root (network namespaces, veth pairs, bridges); run as root, as CI does"
    try:
        done = ip("netns", "list", check=False)
    except FileNotFoundError:
        return "multi-host tests need iproute2's `ip` (ip netns); not found on PATH"
    if done.returncode != 0:
        return f"`ip netns` is unavailable here: {done.stderr.strip()}"
    return None


def _owner_alive(name: str) -> bool:
    try:
        pid = int(name[len(PREFIX):len(PREFIX) + 4], 36)
    except ValueError:
        return True  # not ours after all
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def clean_stale() -> list[str]:
    """Remove namespaces and links that an earlier run (its process gone) left behind."""
    removed = []
    for line in ip("netns", "list", check=False).stdout.splitlines():
        name = line.split()[0] if line.strip() else ""
        if name.startswith(PREFIX) and not _owner_alive(name):
            ip("netns", "delete", name, check=False)
            removed.append(name)
    for line in ip("-o", "link", "show", check=False).stdout.splitlines():
        name = line.split(":")[1].strip().split("@")[0]
        if name.startswith(PREFIX) and not _owner_alive(name):
            ip("link", "delete", name, check=False)
            removed.append(name)
    return removed


def _free_subnet(first: int = 213) -> str:
    """``10.<first>.N`` (a /24) that no address in the root namespace uses."""
    used = ip("-4", "-o", "addr", "show", check=False).stdout
    for third in range(0, 256):
        base = f"10.{first}.{third}"
        if f" {base}." not in used:
            return base
    raise RuntimeError(f"no free 10.{first}.N.0/24 subnet")


@dataclass
class Host:
    name: str
    namespace: str
    index: int
    addresses: dict[str, str] = field(default_factory=dict)  # net -> address
    links: dict[str, str] = field(default_factory=dict)  # net -> outside veth end

    def address(self, net: str | None = None) -> str:
        return self.addresses[net] if net else next(iter(self.addresses.values()))

    def command(self, argv: list[str]) -> list[str]:
        """``argv`` run inside this host's namespace."""
        return ["ip", "netns", "exec", self.namespace, *argv]


class Network:
    """Builds bridges and hosts; :meth:`close` removes all of it (idempotent)."""

    def __init__(self) -> None:
        clean_stale()
        self.prefix = PREFIX + _base36(os.getpid())
        self.nets: dict[str, dict] = {}  # name -> {"bridge", "base", "letter"}
        self.hosts: dict[str, Host] = {}
        self._made_links: list[str] = []
        self._made_namespaces: list[str] = []

    def add_net(self, name: str, gateway: bool = False) -> str:
        """A bridge; with ``gateway`` the root namespace gets ``.1`` on it (returned)."""
        letter = "abcdefgh"[len(self.nets)]
        bridge = f"{self.prefix}br{letter}"
        ip("link", "add", bridge, "type", "bridge")
        self._made_links.append(bridge)
        base = _free_subnet() if gateway else f"10.213.{200 + len(self.nets)}"
        self.nets[name] = {"bridge": bridge, "base": base, "letter": letter}
        if gateway:
            ip("addr", "add", f"{base}.1/24", "dev", bridge)
        ip("link", "set", bridge, "up")
        return f"{base}.1"

    def add_host(self, name: str, nets: list[str]) -> Host:
        index = len(self.hosts) + 2  # .1 is the gateway
        host = Host(name, f"{self.prefix}-{name}", index)
        ip("netns", "add", host.namespace)
        self._made_namespaces.append(host.namespace)
        ip("-n", host.namespace, "link", "set", "lo", "up")
        for net in nets:
            spec = self.nets[net]
            outside, inside = f"{self.prefix}{index}{spec['letter']}", f"{self.prefix}{index}{spec['letter']}i"
            ip("link", "add", outside, "type", "veth", "peer", "name", inside)
            self._made_links.append(outside)
            ip("link", "set", inside, "netns", host.namespace)
            ip("-n", host.namespace, "link", "set", inside, "name", f"eth-{net}")
            address = f"{spec['base']}.{index}"
            ip("-n", host.namespace, "addr", "add", f"{address}/24", "dev", f"eth-{net}")
            ip("-n", host.namespace, "link", "set", f"eth-{net}", "up")
            ip("link", "set", outside, "master", spec["bridge"])
            ip("link", "set", outside, "up")
            host.addresses[net], host.links[net] = address, outside
        self.hosts[name] = host
        return host

    def cut(self, host: str, net: str) -> None:
        ip("link", "set", self.hosts[host].links[net], "down")

    def heal(self, host: str, net: str) -> None:
        ip("link", "set", self.hosts[host].links[net], "up")

    def close(self) -> None:
        for namespace in reversed(self._made_namespaces):
            ip("netns", "delete", namespace, check=False)  # takes the inside veth ends, and so the pairs
        for link in reversed(self._made_links):
            if ip("link", "show", link, check=False).returncode == 0:
                ip("link", "delete", link, check=False)
        self._made_namespaces.clear()
        self._made_links.clear()

    def leftovers(self) -> list[str]:
        """Names with this run's prefix still present (empty after :meth:`close`)."""
        names = [line.split()[0] for line in ip("netns", "list", check=False).stdout.splitlines() if line.strip()]
        names += [line.split(":")[1].strip().split("@")[0] for line in ip("-o", "link", "show").stdout.splitlines()]
        return [n for n in names if n.startswith(self.prefix)]
