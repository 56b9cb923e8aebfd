"""Liveness and readiness of a worker: ``/healthz`` and ``/readyz`` on its metrics port.

``/healthz`` answers 200 while the process can answer at all (Kubernetes'
liveness probe: restart it when it cannot). ``/readyz`` answers 200 only when
every check passes, else 503; its JSON body gives each check and, for a failed
one, why:

* ``consumer``: the Celery consumer is running, connected to the broker and
  consuming every capability queue of the worker (``workers.worker_health`` follows
  the consumer blueprint: its steps stop while the consumer reconnects);
* ``model`` (workers serving a model): every pool process serves the store's
  active version (or nothing was published yet); a process still loading, or
  serving an older version because it refused the active one, is not ready;
* ``raft`` (Raft members): the member runs and knows the group's leader.

This module holds the pure part (the verdicts, the body, the WSGI routing);
``workers.worker_health`` gathers the facts in a running worker.

>>> status, body = readiness([Check("consumer", True), Check("model", False, "loading")])
>>> status, body["ready"], body["checks"]["model"]
(503, False, {'ok': False, 'reason': 'loading'})
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Callable, Iterable

__all__ = ["Check", "consumer_check", "model_check", "raft_check", "readiness", "health_app"]


@dataclass(frozen=True)
class Check:
    """One readiness check: its name, whether it passes, why not, and what was seen.

    >>> Check("raft", False, "no leader known", {"term": 3}).as_dict()
    {'ok': False, 'reason': 'no leader known', 'term': 3}
    """

    name: str
    ok: bool
    reason: str = ""
    detail: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        out: dict = {"ok": self.ok}
        if self.reason:
            out["reason"] = self.reason
        out.update(self.detail)
        return out


def consumer_check(consuming: bool, connected: bool, consumed: Iterable[str] | None,
                   expected: Iterable[str]) -> Check:
    """Ready when the consumer's steps run, its broker connection is up, and it
    consumes every queue the worker was started for.

    >>> consumer_check(True, True, ["inference", "celery"], ["inference"]).ok
    True
    >>> consumer_check(False, False, None, ["inference"]).reason
    'the consumer is not running (starting, or reconnecting to the broker)'
    >>> consumer_check(True, True, [], ["inference"]).reason
    'not consuming inference'
    """
    expected = sorted(expected)
    detail = {"queues": sorted(consumed) if consumed is not None else []}
    if not consuming:
        return Check("consumer", False, "the consumer is not running (starting, or reconnecting to the broker)", detail)
    if not connected:
        return Check("consumer", False, "no broker connection", detail)
    missing = [q for q in expected if consumed is None or q not in set(consumed)]
    if missing:
        return Check("consumer", False, "not consuming " + ", ".join(missing), detail)
    return Check("consumer", True, "", detail)


def model_check(at_active: float | None, serving: float | None) -> Check:
    """``at_active``: the least, over the live pool processes, of
    ``omnimind_model_at_active`` (1: serves the active version), None when no
    process has loaded a model yet; ``serving``: the newest version served.

    >>> model_check(1.0, 7.0).as_dict()
    {'ok': True, 'version': 7}
    >>> model_check(None, None).reason
    'no model loaded yet'
    >>> model_check(0.0, 6.0).reason
    'a pool process does not serve the active version (loading it, or refused it: see omnimind status)'
    """
    detail = {"version": int(serving)} if serving is not None and serving == serving else {}
    if at_active is None or at_active != at_active:  # absent, or NaN
        return Check("model", False, "no model loaded yet", detail)
    if at_active < 1:
        return Check("model", False, "a pool process does not serve the active version (loading it, or refused it: "
                                     "see omnimind status)", detail)
    return Check("model", True, "", detail)


def raft_check(status: dict | None) -> Check:
    """``status``: the member's ``RaftNode.status()``, None when it is not running.

    >>> raft_check({"node_id": "a", "state": "follower", "term": 4, "leader_id": "b"}).as_dict()
    {'ok': True, 'state': 'follower', 'term': 4, 'leader_id': 'b'}
    >>> raft_check({"node_id": "a", "state": "candidate", "term": 5, "leader_id": None}).reason
    'no leader known (candidate in term 5)'
    >>> raft_check(None).reason
    'the Raft member is not running'
    """
    if status is None:
        return Check("raft", False, "the Raft member is not running")
    detail = {k: status.get(k) for k in ("state", "term", "leader_id")}
    if status.get("leader_id") is None:
        return Check("raft", False, f"no leader known ({status.get('state')} in term {status.get('term')})", detail)
    return Check("raft", True, "", detail)


def readiness(checks: Iterable[Check]) -> tuple[int, dict]:
    """HTTP status (200 or 503) and the JSON body of ``/readyz``."""
    checks = list(checks)
    ready = all(c.ok for c in checks)
    return (200 if ready else 503), {"ready": ready, "checks": {c.name: c.as_dict() for c in checks}}


_REASONS = {200: "200 OK", 404: "404 Not Found", 503: "503 Service Unavailable"}


def health_app(fallback: Callable, ready: Callable[[], tuple[int, dict]]) -> Callable:
    """A WSGI app: ``/healthz``, ``/readyz`` (from ``ready()``), anything else to ``fallback``
    (the Prometheus ``/metrics`` app).

    >>> from wsgiref.util import setup_testing_defaults
    >>> app = health_app(None, lambda: readiness([Check("consumer", False, "down")]))
    >>> environ = {"PATH_INFO": "/readyz"}; setup_testing_defaults(environ)
    >>> seen = []
    >>> json.loads(b"".join(app(environ, lambda status, headers: seen.append(status))))["ready"], seen
    (False, ['503 Service Unavailable'])
    """

    def app(environ, start_response):
        path = environ.get("PATH_INFO") or "/"
        if path == "/healthz":
            return _json(start_response, 200, {"alive": True, "pid": os.getpid()})
        if path == "/readyz":
            try:
                status, body = ready()
            except Exception as exc:  # a check that cannot run is not ready, and says why
                status, body = 503, {"ready": False, "error": f"{type(exc).__name__}: {exc}"}
            return _json(start_response, status, body)
        return fallback(environ, start_response)

    return app


def _json(start_response, status: int, body: dict):
    data = json.dumps(body, sort_keys=True).encode()
    start_response(_REASONS.get(status, f"{status} Status"),
                   [("Content-Type", "application/json"), ("Content-Length", str(len(data))),
                    ("Cache-Control", "no-store")])
    return [data]


def probe(url: str, timeout: float = 5.0) -> tuple[int, dict | None]:
    """GET ``url``: its status (0 when nothing answers) and JSON body."""
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as error:
        try:
            return error.code, json.loads(error.read() or b"null")
        except ValueError:
            return error.code, None
    except (OSError, ValueError):
        return 0, None


def main(argv: list[str] | None = None) -> int:
    """``python -m omnimind.health [--port P] [--path /readyz] [--wait S]``: 0 when the worker's
    endpoint answers 200 (within ``--wait`` seconds, polling every second), else 1 with the
    last answer on stderr. The systemd unit's ``ExecStartPost`` and a manual health check."""
    import argparse
    import sys
    import time

    parser = argparse.ArgumentParser(prog="python -m omnimind.health", description=main.__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=None, help="default: $OMNIMIND_METRICS_PORT")
    parser.add_argument("--path", default="/readyz", choices=["/readyz", "/healthz"])
    parser.add_argument("--wait", type=float, default=0.0, help="keep trying for this many seconds")
    args = parser.parse_args(argv)
    if args.port is None:
        from omnimind.config import get_settings

        args.port = get_settings().metrics_port
    if not args.port:
        parser.error("no --port and no OMNIMIND_METRICS_PORT: the worker serves no endpoints")
    host = f"[{args.host}]" if ":" in args.host else args.host
    url = f"http://{host}:{args.port}{args.path}"
    deadline = time.monotonic() + args.wait
    while True:
        status, body = probe(url)
        if status == 200:
            print(json.dumps(body, sort_keys=True))
            return 0
        if time.monotonic() >= deadline:
            print(f"{url}: {status or 'no answer'} {json.dumps(body, sort_keys=True) if body else ''}".rstrip(),
                  file=sys.stderr)
            return 1
        time.sleep(1.0)


if __name__ == "__main__":
    raise SystemExit(main())
