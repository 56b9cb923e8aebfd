"""Small helpers shared by the tests."""
from __future__ import annotations

import json
import socket
import time
import urllib.error
import urllib.request
from base64 import b64encode


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def free_ports(count: int) -> list[int]:
    """``count`` distinct free loopback ports (all bound at once, so none repeats)."""
    sockets = [socket.socket() for _ in range(count)]
    for sock in sockets:
        sock.bind(("127.0.0.1", 0))
    ports = [sock.getsockname()[1] for sock in sockets]
    for sock in sockets:
        sock.close()
    return ports


def wait_until(predicate, timeout: float = 20.0, interval: float = 0.05, message: str = "condition"):
    """Poll ``predicate`` until it returns a truthy value or the deadline passes."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {message}")
        time.sleep(interval)


def scrape(port: int) -> str:
    """The text of a worker's /metrics page."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        return response.read().decode()


def metric_value(text: str, name: str, **labels) -> float:
    """Sum of the samples of ``name`` whose labels include ``labels``."""
    total = 0.0
    for line in text.splitlines():
        if not (line.startswith(name + "{") or line.startswith(name + " ")):
            continue
        if all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


def _get(url: str, auth: tuple[str, str] | None) -> urllib.request.Request:
    request = urllib.request.Request(url)
    if auth:
        request.add_header("Authorization", "Basic " + b64encode(f"{auth[0]}:{auth[1]}".encode()).decode())
    return request


def http_json(url: str, auth: tuple[str, str] | None = None):
    """The JSON body of a GET (with basic ``auth``)."""
    with urllib.request.urlopen(_get(url, auth), timeout=5) as response:
        return json.loads(response.read())


def http_status(url: str, auth: tuple[str, str] | None = None) -> int | None:
    """The HTTP status of a GET (with basic ``auth``), or None when nothing answers."""
    try:
        with urllib.request.urlopen(_get(url, auth), timeout=5) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return None


def raft_leader(client, among) -> str | None:
    """The member of ``among`` that leads in the newest term, by the statuses members publish."""
    from omnimind.status import newest_leader, raft_members  # on use: conftest imports this module first

    leader = newest_leader(s for m, s in raft_members(client).items() if m in among)
    return leader["member_id"] if leader else None
