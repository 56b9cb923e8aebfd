"""``/readyz`` verdicts and the WSGI routing (omnimind.health), without a worker or Redis."""
import json
from wsgiref.util import setup_testing_defaults

from omnimind.health import Check, consumer_check, health_app, model_check, raft_check, readiness


def call(app, path):
    environ = {"PATH_INFO": path}
    setup_testing_defaults(environ)
    seen = {}

    def start_response(status, headers):
        seen["status"], seen["headers"] = status, dict(headers)

    body = b"".join(app(environ, start_response))
    return seen["status"], seen["headers"], body


def test_ready_only_when_every_check_passes():
    ok = [consumer_check(True, True, ["inference"], ["inference"]), model_check(1.0, 3.0),
          raft_check({"state": "leader", "term": 2, "leader_id": "a"})]
    assert readiness(ok) == (200, {"ready": True, "checks": {
        "consumer": {"ok": True, "queues": ["inference"]}, "model": {"ok": True, "version": 3},
        "raft": {"ok": True, "state": "leader", "term": 2, "leader_id": "a"}}})
    status, body = readiness(ok[:2] + [raft_check({"state": "follower", "term": 2, "leader_id": None})])
    assert status == 503 and body["checks"]["raft"]["reason"] == "no leader known (follower in term 2)"


def test_consumer_reasons():
    assert consumer_check(True, False, ["inference"], ["inference"]).reason == "no broker connection"
    assert consumer_check(True, True, ["inference"], ["inference", "memory"]).reason == "not consuming memory"
    assert not consumer_check(False, True, ["inference"], ["inference"]).ok


def test_model_reasons():
    assert model_check(float("nan"), None).reason == "no model loaded yet"
    assert not model_check(0.0, 5.0).ok and model_check(0.0, 5.0).detail == {"version": 5}


def test_routes_and_fallback():
    app = health_app(lambda environ, start: (start("200 OK", []), [b"metrics"])[1],
                     lambda: readiness([Check("consumer", True)]))
    status, headers, body = call(app, "/healthz")
    assert status == "200 OK" and headers["Content-Type"] == "application/json" and json.loads(body)["alive"]
    assert call(app, "/readyz")[0] == "200 OK"
    assert call(app, "/metrics")[2] == b"metrics"


def test_a_failing_check_is_not_ready():
    def broken():
        raise RuntimeError("boom")

    status, _, body = call(health_app(None, broken), "/readyz")
    assert status.startswith("503") and json.loads(body) == {"ready": False, "error": "RuntimeError: boom"}
