"""At-least-once delivery: a worker SIGKILLed mid-task loses nothing."""
import os

from tests.helpers import wait_until

SLOW_INPUT = [999.0] + [0.0] * 15


def slow_env(tmp_path, name, seconds="2"):
    return {
        "OMNIMIND_MODEL_FACTORY": "tests.farm.slow_model:build",
        "OMNIMIND_TEST_SLOW_SECONDS": seconds,
        "OMNIMIND_TEST_SLOW_MARKER_DIR": str(tmp_path),
        "OMNIMIND_TEST_WORKER_NAME": name,
    }


def markers(tmp_path):
    return [p for p in tmp_path.iterdir() if p.name.startswith("started-")]


def test_task_of_killed_worker_completes_elsewhere(start_worker, celery_app, tmp_path):
    workers = {name: start_worker(name, pool="solo", concurrency=1, **slow_env(tmp_path, name)) for name in ("k1", "k2")}
    result = celery_app.send_task("tasks.inference.predict", kwargs={"inputs": SLOW_INPUT})
    first = wait_until(lambda: markers(tmp_path), message="the slow task to start")[0]
    victim = workers[first.read_text()]
    survivor = next(w for w in workers.values() if w is not victim)
    victim.kill()
    # Redelivered once the visibility timeout (8 s in tests) has passed.
    assert result.get(timeout=45)["node_id"] == survivor.hostname


def test_no_task_lost_when_a_worker_dies_under_load(start_worker, celery_app, tmp_path):
    workers = [start_worker(name, concurrency=2, **slow_env(tmp_path, name, "0.5")) for name in ("l1", "l2")]
    results = [
        celery_app.send_task("tasks.inference.predict", kwargs={"inputs": SLOW_INPUT if i % 4 == 0 else [0.1] * 16})
        for i in range(40)
    ]
    wait_until(lambda: sum(r.ready() for r in results) >= 8, message="some results")
    workers[0].kill()
    outcomes = [r.get(timeout=60) for r in results]
    assert len(outcomes) == 40 and all(o["model_version"] == 0 for o in outcomes)
    assert len({r.id for r in results}) == 40
