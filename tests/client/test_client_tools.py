"""Producers other than OmniMind's own on a Redis broker: `celery call`, Flower's
``/api/task/async-apply``, and a plain client's burst while its worker is SIGKILLed.
Each is taken by an idle worker at once (the median pickup well under the 1 s an idle
worker used to wait for a doorbell), and nothing is lost."""
from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from datetime import datetime, timezone

import redis

from tests.client.conftest import PLAIN_CLIENT
from tests.client.test_client_plain import GOOD, PICKUP_MEDIAN_UNDER_S
from tests.conftest import ROOT
from tests.helpers import free_port, http_status, wait_until

SLOW_INPUT = [999.0] + [0.0] * 15


def result_ready(client: redis.Redis, task_id: str) -> dict | None:
    raw = client.get(f"celery-task-meta-{task_id}")
    return json.loads(raw) if raw else None


def pickup(client: redis.Redis, task_id: str, sent_at: float) -> float:
    """Seconds from ``sent_at`` (wall clock) until the task was done (its result's ``date_done``,
    the same clock: one machine); a predict itself takes about a millisecond."""
    meta = wait_until(lambda: result_ready(client, task_id), timeout=30, interval=0.01, message=f"task {task_id}")
    assert meta["status"] == "SUCCESS", meta
    done = datetime.fromisoformat(meta["date_done"])
    return (done if done.tzinfo else done.replace(tzinfo=timezone.utc)).timestamp() - sent_at


class Pushes:
    """When each message landed on a queue list: a subscription to its keyspace events (a
    ``celery call`` process takes a while to exit after it published)."""

    def __init__(self, client: redis.Redis, queue: str) -> None:
        self.client = client  # the pubsub's connection lives as long as its client
        client.config_set("notify-keyspace-events", "Kl")
        self.pubsub = client.pubsub()
        self.pubsub.subscribe(f"__keyspace@0__:{queue}")
        wait_until(lambda: (m := self.pubsub.get_message(timeout=0.1)) and m["type"] == "subscribe",
                   message="the subscription")
        self.times: list[float] = []
        self.thread = threading.Thread(target=self._listen, daemon=True)
        self.thread.start()

    def _listen(self) -> None:
        try:
            for message in self.pubsub.listen():
                if message["type"] == "message" and message["data"] in (b"lpush", b"rpush"):
                    self.times.append(time.time())
        except (redis.ConnectionError, ValueError, AttributeError):  # closed by close()
            return

    def landed(self, count: int) -> float:
        """When the ``count``-th message landed."""
        return wait_until(lambda: len(self.times) >= count and self.times[count - 1], timeout=30,
                          message=f"push {count}")

    def close(self) -> None:
        self.pubsub.close()
        self.thread.join(5)
        self.client.close()


def test_celery_call_is_taken_at_once(start_worker, redis_server, redis_client, tmp_path):
    start_worker("inf-call", concurrency=2)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH" and not k.startswith("OMNIMIND_")}
    pushes = Pushes(redis.Redis.from_url(redis_server.url), "inference")
    waits = []
    try:
        for n in range(1, 6):
            done = subprocess.run(
                [sys.executable, "-m", "celery", "-b", redis_server.url, "--result-backend", redis_server.url, "call",
                 "tasks.inference.predict", "--kwargs", json.dumps({"inputs": GOOD}), "--queue", "inference"],
                capture_output=True, text=True, cwd=tmp_path, env=env, timeout=60)
            assert done.returncode == 0, done.stderr
            waits.append(pickup(redis_client, done.stdout.strip(), pushes.landed(n)))
    finally:
        pushes.close()
    assert statistics.median(waits) < PICKUP_MEDIAN_UNDER_S, waits


def test_flowers_async_apply_is_taken_at_once(start_worker, redis_client, tmp_path):
    start_worker("inf-flower", concurrency=2)
    port = free_port()
    log = open(tmp_path / "flower.log", "wb")
    flower = subprocess.Popen([sys.executable, "-m", "celery", "-A", "omnimind", "flower", "--address=127.0.0.1",
                               f"--port={port}"], cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                              start_new_session=True, env={**os.environ, "FLOWER_UNAUTHENTICATED_API": "true"})
    try:
        wait_until(lambda: http_status(f"http://127.0.0.1:{port}/api/workers") == 200, timeout=60, message="flower")
        waits = []
        for _ in range(5):
            request = urllib.request.Request(
                f"http://127.0.0.1:{port}/api/task/async-apply/tasks.inference.predict",
                data=json.dumps({"kwargs": {"inputs": GOOD}, "queue": "inference"}).encode(), method="POST",
                headers={"Content-Type": "application/json"})
            sent_at = time.time()  # Flower publishes before it answers
            with urllib.request.urlopen(request, timeout=30) as response:
                task_id = json.loads(response.read())["task-id"]
            waits.append(pickup(redis_client, task_id, sent_at))
        assert statistics.median(waits) < PICKUP_MEDIAN_UNDER_S, waits
    finally:
        flower.terminate()
        flower.wait(20)
        log.close()


def test_a_plain_producers_burst_survives_a_sigkill_of_its_worker(start_worker, redis_server, redis_client, tmp_path):
    """Nothing a plain client sent is lost when the worker holding it is SIGKILLed mid-burst:
    every message was in its queue or recorded under the victim's holder, and comes back."""
    victim = start_worker("inf-victim", concurrency=4, OMNIMIND_MODEL_FACTORY="tests.farm.slow_model:build",
                          OMNIMIND_TEST_SLOW_SECONDS="0.3")
    survivor = start_worker("inf-survivor", concurrency=4)
    folder = tmp_path / "a-users-service"
    folder.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH" and not k.startswith("OMNIMIND_")}
    burst = [{"burst": 300, "task": "tasks.inference.predict", "kwargs": {"inputs": SLOW_INPUT},
              "queue": "inference", "timeout": 120}]
    (folder / "burst.json").write_text(json.dumps(burst))
    with open(folder / "burst.json") as steps, open(folder / "stderr", "w") as stderr:
        client = subprocess.Popen([sys.executable, str(PLAIN_CLIENT), redis_server.url, redis_server.url],
                                  stdin=steps, stdout=subprocess.PIPE, stderr=stderr, text=True, cwd=folder, env=env)

    def victim_holds():
        return any(redis_client.scard(key) for key in redis_client.scan_iter(f"omnimind:broker:held:{victim.hostname}/*"))

    wait_until(victim_holds, timeout=60, message="the victim to hold messages of the burst")
    victim.kill()
    out, _ = client.communicate(timeout=240)
    assert client.returncode == 0, (folder / "stderr").read_text()[-3000:]
    (outcome,) = json.loads(out)["outcomes"]
    assert outcome["sent"] == outcome["done"] == 300, outcome
    assert "Redelivered" in survivor.output() and "held by " + victim.hostname in survivor.output()
