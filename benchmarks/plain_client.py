"""A user's own Celery client against the farm, vs a stock Celery worker's no-op (issue 20).

One run, one private redis-server, three workers side by side (round trips in blocks of 50, the
kinds taking turns, so that each ratio compares samples taken side by side):

- the Procfile's ``inference`` line as written (threads pool, --concurrency=16), metrics port moved;
- a stock Celery worker (benchmarks/stock_noop.py, the same pool and concurrency) serving a no-op;
- for "old vs new", the inference worker of another git ref (``--old-ref``, default the commit
  before this transport: its idle workers woke only on OmniMind's doorbells), in turn with this one.

Clients: the plain client of tests/client/plain_client.py (a stock Celery app from the broker URL,
JSON, importing nothing of OmniMind's) in a subprocess, and OmniMind's own ``omnimind.app.app``
here. Measured: sequential round trips (p50/p99), a 2,000-task burst (sent at once, then all
awaited: tasks/s), the same on a RabbitMQ vhost whose default queue type is quorum, and SIGKILLs of
the inference worker during plain producers' bursts (a second inference worker serves on; lost =
sent - results).

    python benchmarks/plain_client.py [--round-trips 300] [--burst 2000] [--rounds 2] [--kills 3]

Writes benchmarks/results/plain_client.{json,md}. The machine has 2 cores shared with other work:
ratios measured in the same run matter, absolute figures less.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from harness import ROOT, free_port, private_redis, stop_all, summary_ms, wait_until, write_results
from overhead import export_tree, procfile_inference_argv

PLAIN_CLIENT = ROOT / "tests" / "client" / "plain_client.py"
INPUTS = [0.5] * 16
PREDICT = {"task": "tasks.inference.predict", "kwargs": {"inputs": INPUTS}, "queue": "inference", "timeout": 120}
NOOP = {"task": "stock.noop", "kwargs": {}, "queue": "stock", "timeout": 120}
#: The commit before keyspace wake-ups (doorbells only).
OLD_REF = "0d2108e"


def clean_env() -> dict:
    return {k: v for k, v in os.environ.items() if k != "PYTHONPATH" and not k.startswith("OMNIMIND_")}


def plain(broker: str, backend: str, steps: list[dict]) -> list[dict]:
    """Run steps through the plain client in a subprocess outside the project."""
    with tempfile.TemporaryDirectory() as folder:
        done = subprocess.run([sys.executable, str(PLAIN_CLIENT), broker, backend], input=json.dumps(steps),
                              capture_output=True, text=True, cwd=folder, env=clean_env(), timeout=900)
    if done.returncode != 0:
        raise RuntimeError(done.stderr[-3000:])
    report = json.loads(done.stdout)
    assert report["project_modules_imported"] == [], report
    return report["outcomes"]


def stock_worker(broker: str, backend: str, queue_type: str = "classic") -> subprocess.Popen:
    env = {**clean_env(), "STOCK_BROKER_URL": broker, "STOCK_RESULT_BACKEND": backend, "STOCK_QUEUE_TYPE": queue_type}
    return subprocess.Popen([sys.executable, "-m", "celery", "-A", "stock_noop", "worker", "-Q", "stock", "-n",
                             f"stock-{secrets.token_hex(3)}@%h", "--pool=threads", "--concurrency=16",
                             "--loglevel=WARNING"], cwd=ROOT / "benchmarks", env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)


def inference_worker(tree: Path, env: dict | None = None, name: str | None = None) -> subprocess.Popen:
    argv = procfile_inference_argv(free_port())
    if name:
        argv[argv.index("-n") + 1] = name
    return subprocess.Popen(argv, cwd=tree, env={**os.environ, "PYTHONPATH": str(tree), **(env or {})},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)


def own_client(broker_url: str, backend: str):
    """OmniMind's own client on another broker: ``omnimind.app.app``'s client settings and
    transport (it rings the doorbells), on ``broker_url``."""
    from celery import Celery

    from omnimind.app import app, capability_queues
    from omnimind.redelivery import transport_for

    keys = ("task_serializer", "result_serializer", "accept_content", "result_accept_content", "task_default_queue",
            "task_default_exchange", "task_default_routing_key", "task_routes")
    client = Celery("omnimind-client", set_as_current=False)
    client.conf.update({key: app.conf[key] for key in keys}, broker_url=broker_url, result_backend=backend,
                       broker_transport=transport_for(broker_url), task_queues=capability_queues(broker_url))
    return client


def own_round_trips(app, n: int) -> list[float]:
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        app.send_task(PREDICT["task"], kwargs=PREDICT["kwargs"]).get(timeout=60)
        out.append(time.perf_counter() - t0)
    return out


def own_burst(app, n: int) -> dict:
    t0 = time.perf_counter()
    results = [app.send_task(PREDICT["task"], kwargs=PREDICT["kwargs"]) for _ in range(n)]
    done = sum(1 for r in results if r.get(timeout=120) is not None)
    return {"sent": n, "done": done, "elapsed_s": time.perf_counter() - t0}


def answers_plain(broker: str, backend: str, step: dict) -> bool:
    try:
        return "result" in plain(broker, backend, [{**step, "timeout": 10}])[0]
    except Exception:
        return False


def measure(broker: str, backend: str, own_app, args, acc: dict, label: str) -> None:
    """One round: plain predict, plain stock no-op, own predict; round trips, then bursts."""
    rt = {"round_trips": args.round_trips}
    blocks = [{"round_trips": min(50, rt["round_trips"] - start)} for start in range(0, rt["round_trips"], 50)]
    outcomes = plain(broker, backend, [{**block, **kind} for block in blocks for kind in (PREDICT, NOOP)])
    for outcome, name in zip(outcomes, ["plain_predict", "stock_noop"] * len(blocks)):  # A B A B ...
        acc.setdefault(f"{label}{name}_rt", []).extend(outcome["latencies_s"])
    if own_app is not None:
        for start in range(0, args.round_trips, 50):
            acc.setdefault(f"{label}own_predict_rt", []).extend(own_round_trips(own_app, min(50, args.round_trips - start)))
    burst = {"burst": args.burst}
    a, b = plain(broker, backend, [{**burst, **PREDICT}, {**burst, **NOOP}])
    acc.setdefault(f"{label}plain_predict_burst", []).append(a)
    acc.setdefault(f"{label}stock_noop_burst", []).append(b)
    if own_app is not None:
        acc.setdefault(f"{label}own_predict_burst", []).append(own_burst(own_app, args.burst))


def throughput(bursts: list[dict]) -> float:
    return sum(b["done"] for b in bursts) / sum(b["elapsed_s"] for b in bursts)


def redis_part(url: str, args, report: dict) -> None:
    """This tree's inference worker and the stock worker on ``url``; the old tree's inference worker at
    the same time on a Redis of its own (the same queue names), measured in turn, round by round."""
    from omnimind.app import app
    from omnimind.embedded_redis import start_redis

    old_tree = export_tree(args.old_ref, Path(tempfile.mkdtemp()) / "old")
    old_port = free_port()
    old_server = start_redis(old_port)
    old_url = f"redis://127.0.0.1:{old_port}/0"
    old_env = {"OMNIMIND_BROKER_URL": old_url, "OMNIMIND_RESULT_BACKEND": old_url, "OMNIMIND_REDIS_URL": old_url}
    old_app = own_client(old_url, old_url)
    stock = stock_worker(url, url)
    worker = inference_worker(ROOT)
    old_worker = inference_worker(old_tree, old_env)
    acc: dict = {}
    try:
        wait_until(lambda: answers_plain(url, url, NOOP), timeout=120, message="the stock worker")
        wait_until(lambda: answers_plain(url, url, PREDICT), timeout=120, message="the inference worker")
        wait_until(lambda: answers_plain(old_url, old_url, PREDICT), timeout=120, message="the old inference worker")
        for broker in (url, old_url):  # warm-up
            plain(broker, broker, [{"round_trips": 50, **PREDICT}, {"burst": 200, **PREDICT}])
        for _ in range(args.rounds):
            measure(url, url, None, args, acc, "")
            # The own client's path, which this change must not slow: this worker and the old one in
            # turn, side by side (round trips in blocks of 50, A B A B ..., then bursts A B B A), and a
            # few plain round trips to the old one.
            for start in range(0, args.round_trips, 50):
                for label, client in (("", app), ("old_", old_app)):
                    acc.setdefault(f"{label}own_predict_rt", []).extend(
                        own_round_trips(client, min(50, args.round_trips - start)))
            for label, client in (("", app), ("old_", old_app), ("old_", old_app), ("", app)):
                acc.setdefault(f"{label}own_predict_burst", []).append(own_burst(client, args.burst))
            acc.setdefault("old_plain_predict_rt", []).extend(
                plain(old_url, old_url, [{"round_trips": min(args.round_trips, 20), **PREDICT}])[0]["latencies_s"])
        stop_all(old_worker)
        report["redis"] = summarize(acc)
        stop_all(worker)
        report["redis"]["sigkill"] = kills(url, args)
    finally:
        old_app.close()
        stop_all(stock, worker, old_worker, old_server)


def kills(url: str, args) -> list[dict]:
    """SIGKILL the inference worker while plain producers' bursts are in flight; count what is lost."""
    runs = []
    survivor = inference_worker(ROOT, name="survivor@%h")
    try:
        wait_until(lambda: answers_plain(url, url, PREDICT), timeout=120, message="the survivor")
        for _ in range(args.kills):
            victim = inference_worker(ROOT, name=f"victim-{secrets.token_hex(2)}@%h")
            steps = [{"burst": args.kill_burst, **PREDICT}]
            with tempfile.TemporaryDirectory() as folder:
                client = subprocess.Popen([sys.executable, str(PLAIN_CLIENT), url, url], stdin=subprocess.PIPE,
                                          stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=folder,
                                          env=clean_env())
                client.stdin.write(json.dumps(steps))
                client.stdin.close()
                import redis

                r = redis.Redis.from_url(url)
                held = wait_until(lambda r=r: any(r.scard(k) for k in r.scan_iter("omnimind:broker:held:victim-*")),
                                  timeout=120, interval=0.01, message="the victim to hold messages")
                held_n = sum(r.scard(k) for k in r.scan_iter("omnimind:broker:held:victim-*"))
                os.killpg(victim.pid, signal.SIGKILL)
                victim.wait(10)
                outcome = json.loads(client.stdout.read())["outcomes"][0]
                client.wait(60)
                r.close()
            runs.append({"sent": outcome["sent"], "done": outcome["done"], "lost": outcome["sent"] - outcome["done"],
                         "held_at_kill": int(held_n) if held else 0, "elapsed_s": round(outcome["elapsed_s"], 2)})
    finally:
        stop_all(survivor)
    return runs


def rabbitmq_part(backend: str, args, report: dict) -> None:
    vhost = f"omnimind-bench-{secrets.token_hex(3)}"
    subprocess.run(["rabbitmqctl", "-q", "add_vhost", vhost, "--default-queue-type", "quorum"], check=True)
    subprocess.run(["rabbitmqctl", "-q", "set_permissions", "-p", vhost, "guest", ".*", ".*", ".*"], check=True)
    broker = f"amqp://guest:guest@127.0.0.1:5672/{vhost}"
    stock = stock_worker(broker, backend, "quorum")
    worker = inference_worker(ROOT, {"OMNIMIND_BROKER_URL": broker})
    acc: dict = {}
    try:
        wait_until(lambda: answers_plain(broker, backend, NOOP), timeout=120, message="the stock worker (RabbitMQ)")
        wait_until(lambda: answers_plain(broker, backend, PREDICT), timeout=120, message="the inference worker (RabbitMQ)")
        plain(broker, backend, [{"round_trips": 50, **PREDICT}, {"burst": 200, **PREDICT}])
        own = own_client(broker, backend)
        try:
            for _ in range(args.rounds):
                measure(broker, backend, own, args, acc, "")
        finally:
            own.close()
        report["rabbitmq"] = summarize(acc)
    finally:
        stop_all(stock, worker)
        subprocess.run(["rabbitmqctl", "-q", "delete_vhost", vhost], check=False)


def summarize(acc: dict) -> dict:
    out: dict = {"round_trips": {}, "bursts": {}}
    for key, value in acc.items():
        if key.endswith("_rt"):
            out["round_trips"][key[:-3]] = summary_ms(value)
        else:
            out["bursts"][key[:-6]] = {"tasks_per_s": round(throughput(value), 1), "runs": len(value),
                                       "lost": sum(b["sent"] - b["done"] for b in value)}
    rt, bursts = out["round_trips"], out["bursts"]
    ratios = {}
    if "plain_predict" in rt and "stock_noop" in rt:
        ratios["plain_predict_p50_over_stock_noop_p50"] = rt["plain_predict"]["p50_ms"] / rt["stock_noop"]["p50_ms"]
        ratios["plain_predict_burst_over_stock_noop_burst"] = (bursts["plain_predict"]["tasks_per_s"]
                                                               / bursts["stock_noop"]["tasks_per_s"])
    if "own_predict" in rt:
        ratios["plain_p50_over_own_p50"] = rt["plain_predict"]["p50_ms"] / rt["own_predict"]["p50_ms"]
        ratios["plain_burst_over_own_burst"] = bursts["plain_predict"]["tasks_per_s"] / bursts["own_predict"]["tasks_per_s"]
    if "old_own_predict" in rt:
        ratios["own_p50_new_over_old"] = rt["own_predict"]["p50_ms"] / rt["old_own_predict"]["p50_ms"]
        ratios["own_burst_new_over_old"] = bursts["own_predict"]["tasks_per_s"] / bursts["old_own_predict"]["tasks_per_s"]
        ratios["plain_p50_new_over_old"] = rt["plain_predict"]["p50_ms"] / rt["old_plain_predict"]["p50_ms"]
    out["ratios"] = {k: round(v, 3) for k, v in ratios.items()}
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--round-trips", type=int, default=300)
    parser.add_argument("--burst", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--kills", type=int, default=3)
    parser.add_argument("--kill-burst", type=int, default=1000)
    parser.add_argument("--old-ref", default=OLD_REF)
    parser.add_argument("--skip-rabbitmq", action="store_true")
    args = parser.parse_args()
    report = {"machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
              "settings": {k: getattr(args, k) for k in ("round_trips", "burst", "rounds", "kills", "kill_burst",
                                                         "old_ref")},
              "head": subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                                     text=True).stdout.strip()}
    port, server = private_redis()
    url = f"redis://127.0.0.1:{port}/0"
    try:
        redis_part(url, args, report)
        write(report)
        if not args.skip_rabbitmq:
            rabbitmq_part(url, args, report)
            write(report)
    finally:
        stop_all(server)
    return 0


def write(report: dict) -> None:
    md = ["# A user's own Celery client vs a stock Celery worker (benchmarks/plain_client.py)", "",
          f"One run at {report['head']}, {report['machine']['cpus']} CPUs shared with other work: ratios from the same "
          "run matter, absolute figures less. Inference worker: the Procfile line (threads, 16); stock worker: "
          "benchmarks/stock_noop.py, same pool and concurrency, a no-op. Plain client: tests/client/plain_client.py "
          f"(a stock Celery app, JSON, nothing of OmniMind's). {report['settings']['round_trips']} sequential round trips "
          f"x {report['settings']['rounds']} rounds; bursts of {report['settings']['burst']} sent at once, then awaited.",
          ""]
    for broker in ("redis", "rabbitmq"):
        if broker not in report:
            continue
        part = report[broker]
        md += [f"## {broker}", "", "| client → task | p50 ms | p99 ms | burst tasks/s | lost in bursts |",
               "|---|---|---|---|---|"]
        names = {"plain_predict": "plain client → predict", "stock_noop": "plain client → stock worker's no-op",
                 "own_predict": "`omnimind.app.app` → predict",
                 "old_own_predict": f"`omnimind.app.app` → predict, old worker ({report['settings']['old_ref']})",
                 "old_plain_predict": f"plain client → predict, old worker ({report['settings']['old_ref']})"}
        for key, name in names.items():
            rt = part["round_trips"].get(key)
            burst = part["bursts"].get(key)
            if rt is None:
                continue
            md.append(f"| {name} | {rt['p50_ms']:.1f} | {rt['p99_ms']:.1f} | "
                      f"{burst['tasks_per_s'] if burst else '—'} | {burst['lost'] if burst else '—'} |")
        md += ["", "| ratio | value | target |", "|---|---|---|"]
        targets = {"plain_predict_p50_over_stock_noop_p50": "≤ 1.2", "plain_predict_burst_over_stock_noop_burst": "≥ 0.8",
                   "plain_p50_over_own_p50": "0.95–1.05", "plain_burst_over_own_burst": "0.95–1.05",
                   "own_p50_new_over_old": "≤ 1 (no regression)", "own_burst_new_over_old": "≥ 1 (no regression)",
                   "plain_p50_new_over_old": "(the fix)"}
        for key, value in part["ratios"].items():
            md.append(f"| {key} | **{value}** | {targets.get(key, '')} |")
        if "sigkill" in part:
            md += ["", "SIGKILL of the inference worker during a plain producer's burst (a second inference worker "
                   "serves on):", "", "| run | sent | done | held by the victim at the kill | **lost** |",
                   "|---|---|---|---|---|"]
            for n, run in enumerate(part["sigkill"], 1):
                md.append(f"| {n} | {run['sent']} | {run['done']} | {run['held_at_kill']} | **{run['lost']}** |")
        md.append("")
    write_results("plain_client", report, md)


if __name__ == "__main__":
    sys.exit(main())
