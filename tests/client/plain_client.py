"""A user's own Celery client, as a service of theirs would run it: a stock Celery app
that knows only the broker URL and the result backend, JSON, importing nothing of
OmniMind's (checked at the end). Run as a script in a subprocess by the tests and by
benchmarks/plain_client.py:

    python plain_client.py BROKER_URL BACKEND_URL < calls.json > outcomes.json

``calls.json`` is a list of steps, run in order:

- ``{"task": name, "kwargs": {...}, "queue": q}``: ``send_task`` and wait for the result;
  the outcome is ``{"result": ...}`` or ``{"error": exception type name, "message": str}``
  (``"conf"``: client settings of this step only, e.g. ``task_create_missing_queue_type``);
- ``{"burst": n, "task": name, "kwargs": {...}, "queue": q}``: send n, then wait for all;
  the outcome is ``{"sent": n, "done": k, "errors": [...], "elapsed_s": s}``;
- ``{"round_trips": n, "task": ..., ...}``: n sequential calls; ``{"latencies_s": [...]}``.
"""
import json
import sys
import time

from celery import Celery


def client(broker: str, backend: str) -> Celery:
    app = Celery("a-users-service", broker=broker, backend=backend, set_as_current=False)
    app.conf.update(task_serializer="json", result_serializer="json", accept_content=["json"])
    return app


def outcome(async_result, timeout):
    try:
        return {"result": async_result.get(timeout=timeout)}
    except Exception as exc:  # noqa: BLE001 - the typed error is the outcome
        return {"error": type(exc).__name__, "message": str(exc)}


def run(app: Celery, step: dict) -> dict:
    if step.get("conf"):  # a step with a client setting of its own: a fresh app with it
        configured = client(app.conf.broker_url, app.conf.result_backend)
        configured.conf.update(step["conf"])
        try:
            return run(configured, {k: v for k, v in step.items() if k != "conf"})
        finally:
            configured.close()
    send = app.send_task
    task, kwargs, queue = step["task"], step.get("kwargs") or {}, step.get("queue")
    timeout = step.get("timeout", 60)
    if "burst" in step:
        started = time.perf_counter()
        results = [send(task, kwargs=kwargs, queue=queue) for _ in range(step["burst"])]
        outcomes = [outcome(r, timeout) for r in results]
        errors = [o for o in outcomes if "error" in o]
        return {"sent": len(results), "done": len(outcomes) - len(errors), "errors": errors[:5],
                "elapsed_s": time.perf_counter() - started}
    if "round_trips" in step:
        latencies = []
        for _ in range(step["round_trips"]):
            started = time.perf_counter()
            send(task, kwargs=kwargs, queue=queue).get(timeout=timeout)
            latencies.append(time.perf_counter() - started)
        return {"latencies_s": latencies}
    started = time.perf_counter()
    try:
        sent = send(task, kwargs=kwargs, queue=queue)
    except Exception as exc:  # noqa: BLE001 - refused by the broker: the outcome too
        return {"error": type(exc).__name__, "message": str(exc), "at": "send"}
    done = outcome(sent, timeout)
    done["elapsed_s"] = time.perf_counter() - started
    return done


def main() -> None:
    broker, backend = sys.argv[1], sys.argv[2]
    steps = json.load(sys.stdin)
    app = client(broker, backend)
    try:
        outcomes = [run(app, step) for step in steps]
    finally:
        app.close()
    ours = sorted(m for m in sys.modules if m.split(".")[0] in ("omnimind", "workers", "tasks"))
    json.dump({"outcomes": outcomes, "project_modules_imported": ours}, sys.stdout)


if __name__ == "__main__":
    main()
