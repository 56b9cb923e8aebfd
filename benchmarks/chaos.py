"""Chaos: a farm under steady predict and learn load, on Redis and on RabbitMQ.

Two inference workers (the Procfile's threads pool, concurrency 4) and a
three-member Raft group of training workers, with default reliability settings
(visibility timeout 1 h, heartbeat 2 s). Faults, 15 s apart: SIGKILL an
inference worker 5 times (restarted 10 s later, so a *survivor* must give its
messages back), SIGKILL the Raft leader (restarted 5 s later), restart Redis
(SIGTERM, AOF kept, started again on the same port). Reported per broker:
  - sent, lost (no result 60 s after the last fault) and duplicated tasks (a body
    that ran to the end on two workers);
  - per inference kill (20 ms after a burst of predicts begins, so that the victim
    holds messages), the time until the last task the victim held finished
    elsewhere (from the victim's log: received there, never finished there);
  - retrain slots accepted twice or skipped (the schedule runs every 2 s here,
    instead of 300 s, so that slots happen during the run);
  - predict p99 before / during / after each fault, and how long after Redis
    answers again the p99 of each 0.5 s bucket is back within 2x the steady p99.

    python benchmarks/chaos.py [--broker redis|rabbitmq|both] [--rate 30]

Writes benchmarks/results/chaos.{json,md}.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import random
import re
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path

from harness import ROOT, RESULTS, free_port, summary_ms, write_results

MEMBERS = ("n1", "n2", "n3")
INFERENCE = ("inf1", "inf2")
GAP_S = 15.0


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--broker", choices=("redis", "rabbitmq", "both"), default="both")
    parser.add_argument("--rate", type=float, default=30.0, help="predicts per second (plus one learn per 4)")
    parser.add_argument("--kills", type=int, default=5)
    args = parser.parse_args()
    if args.broker != "both":
        report = run(args)
        RESULTS.mkdir(parents=True, exist_ok=True)
        (RESULTS / f"chaos-{args.broker}.json").write_text(json.dumps(report, indent=2) + "\n")
        return 0
    RESULTS.mkdir(parents=True, exist_ok=True)
    reports = {}
    for broker in ("redis", "rabbitmq"):
        # One process per broker: the Celery app reads its broker URL once, at import.
        subprocess.run([sys.executable, __file__, "--broker", broker, "--rate", str(args.rate),
                        "--kills", str(args.kills)], check=True, cwd=ROOT)
        reports[broker] = json.loads((RESULTS / f"chaos-{broker}.json").read_text())
        (RESULTS / f"chaos-{broker}.json").unlink()
    write(reports)
    return 0


class Farm:
    """The worker processes of one run, each incarnation logging to a file of its own."""

    def __init__(self, run_dir: Path, env: dict) -> None:
        self.run_dir, self.env = run_dir, env
        self.procs: dict[str, subprocess.Popen] = {}
        self.logs: list[Path] = []
        self.current_log: dict[str, Path] = {}

    def start(self, name: str) -> None:
        log = self.run_dir / f"{name}-{len(self.logs)}.log"
        self.logs.append(log)
        self.current_log[name] = log
        raft = name in MEMBERS
        cmd = [sys.executable, "-m", "celery", "-A", "omnimind", "worker", "-n", f"chaos-{name}@%h",
               "-Q", "training" if raft else "inference", "--loglevel=INFO", "--without-mingle", "--without-gossip",
               *(["--pool=solo"] if raft else ["--pool=threads", "--concurrency=4"])]
        env = {**self.env, **({"OMNIMIND_RAFT_ID": name, "OMNIMIND_DATA_DIR": str(self.run_dir / name)} if raft else {})}
        self.procs[name] = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=open(log, "wb"), stderr=subprocess.STDOUT,
                                            start_new_session=True)

    def kill(self, name: str) -> None:
        os.killpg(self.procs[name].pid, 9)
        self.procs[name].wait()

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                os.killpg(proc.pid, 15)
        for proc in self.procs.values():
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, 9)


def run(args) -> dict:
    run_dir = Path(tempfile.mkdtemp(prefix=f"omnimind-chaos-{args.broker}-"))
    redis_port = free_port()
    redis_url = f"redis://127.0.0.1:{redis_port}/0"
    vhost = None
    broker_url = redis_url
    if args.broker == "rabbitmq":
        vhost = f"omnimind-chaos-{uuid.uuid4().hex[:8]}"
        subprocess.run(["rabbitmqctl", "-q", "add_vhost", vhost], check=True)
        subprocess.run(["rabbitmqctl", "-q", "set_permissions", "-p", vhost, "guest", ".*", ".*", ".*"], check=True)
        broker_url = f"amqp://guest:guest@127.0.0.1:5672/{vhost}"
    env = {"OMNIMIND_BROKER_URL": broker_url, "OMNIMIND_RESULT_BACKEND": redis_url, "OMNIMIND_REDIS_URL": redis_url,
           "OMNIMIND_RAFT_PEERS": ",".join(f"{m}=127.0.0.1:{free_port()}" for m in MEMBERS),
           "OMNIMIND_RAFT_SECRET": "chaos-secret-0123456789abcdef", "OMNIMIND_RETRAIN_INTERVAL": "2",
           "OMNIMIND_TASK_EVENTS": "0", "OMNIMIND_METRICS": "0"}
    os.environ.update(env)  # before the settings are first read (once per process)
    from omnimind.embedded_redis import start_redis, wait_for_redis

    redis_dir = run_dir / "redis"
    redis_proc = start_redis(redis_port, str(redis_dir), persist=True)

    import redis

    from omnimind import keys
    from omnimind.app import app

    # The load's client stores no AsyncResult (no per-task pub/sub subscription, which a
    # Redis restart would break): completion times are read from the result keys instead.
    app.conf.update(result_backend=None)
    client = redis.Redis.from_url(redis_url)
    farm = Farm(run_dir, {**os.environ, **env})
    sent: dict[str, dict] = {}
    stop_load = threading.Event()
    burst_sent = threading.Event()
    faults: list[dict] = []
    try:
        for name in INFERENCE + MEMBERS:
            farm.start(name)
        deadline = time.monotonic() + 90
        while not (len(app.control.ping(timeout=1.0)) >= 5 and leader(client)):
            if time.monotonic() > deadline:
                raise SystemExit("the farm did not come up")

        def load():
            # Bursts, so that workers hold several messages at any moment (prefetch x concurrency).
            rng = random.Random(0)
            burst = max(1, int(args.rate / 2))
            while not stop_load.is_set():
                for n in range(burst + burst // 4):
                    kind = "predict" if n < burst else "learn"
                    inputs = [rng.uniform(-1, 1) for _ in range(16)]
                    name, kwargs = ("tasks.inference.predict", {"inputs": inputs}) if kind == "predict" else \
                        ("tasks.training.learn", {"inputs": inputs, "targets": sum(inputs)})
                    t = time.time()
                    try:
                        task_id = app.send_task(name, kwargs=kwargs).id
                    except Exception as exc:  # a send the client knows failed is not a loss
                        print(f"send failed: {exc}", flush=True)
                        continue
                    sent[task_id] = {"kind": kind, "sent": t}
                    if n == 0:
                        burst_sent.set()
                stop_load.wait(0.5)

        loader = threading.Thread(target=load, daemon=True)
        loader.start()
        time.sleep(GAP_S)
        for k in range(args.kills):
            victim = INFERENCE[k % 2]
            log = farm.current_log[victim]
            # Just after a burst begins, when the victim holds messages.
            burst_sent.clear()
            burst_sent.wait(5)
            time.sleep(0.02)
            t = time.time()
            farm.kill(victim)
            faults.append({"fault": "kill_inference", "worker": victim, "at": t, "log": str(log)})
            print(f"killed {victim}", flush=True)
            time.sleep(10)
            farm.start(victim)
            time.sleep(GAP_S - 10)
        member = leader(client)
        t = time.time()
        farm.kill(member)
        faults.append({"fault": "kill_leader", "worker": member, "at": t})
        print(f"killed leader {member}", flush=True)
        time.sleep(5)
        client.delete(keys.raft_member(member))
        farm.start(member)
        time.sleep(GAP_S - 5)
        t = time.time()
        redis_proc.terminate()
        redis_proc.wait(30)
        redis_proc = start_redis(redis_port, str(redis_dir), persist=True)
        wait_for_redis(redis_port)
        faults.append({"fault": "restart_redis", "at": t, "answers_again": time.time()})
        print("restarted redis", flush=True)
        time.sleep(GAP_S)
        stop_load.set()
        loader.join()
        done = collect(client, sent, deadline=time.time() + 60)
        unacked, queued = set(), set()
        if args.broker == "redis":
            unacked = {json.loads(v)[0]["headers"]["id"] for v in client.hvals("unacked")}
            for name in [k for q in ("inference", "training") for k in keys.broker_queue_lists(q)]:
                queued.update(json.loads(v)["headers"]["id"] for v in client.lrange(name, 0, -1))
        slots = [int(f[b"slot"]) for _, f in client.xrange(keys.schedule_accepted("retrain"))]
    finally:
        stop_load.set()
        farm.stop()
        redis_proc.terminate()
        redis_proc.wait(30)
        if vhost:
            subprocess.run(["rabbitmqctl", "-q", "delete_vhost", vhost], check=False)
    return analyse(args, sent, done, unacked, queued, slots, faults, farm.logs)


def leader(client):
    from omnimind.status import raft_members

    leaders = [s for s in raft_members(client).values() if s["state"] == "leader"]
    return max(leaders, key=lambda s: s["term"])["member_id"] if leaders else None


def collect(client, sent: dict, deadline: float) -> dict[str, float]:
    """task id -> completion time (the result's date_done), waiting for stragglers."""
    done: dict[str, float] = {}
    while True:
        pending = [tid for tid in sent if tid not in done]
        for i in range(0, len(pending), 500):
            chunk = pending[i:i + 500]
            for tid, raw in zip(chunk, client.mget([f"celery-task-meta-{t}" for t in chunk])):
                if raw:
                    meta = json.loads(raw)
                    stamp = datetime.fromisoformat(meta["date_done"])
                    done[tid] = (stamp if stamp.tzinfo else stamp.replace(tzinfo=timezone.utc)).timestamp()
        if len(done) == len(sent) or time.time() > deadline:
            return done
        time.sleep(0.5)


def analyse(args, sent, done, unacked, queued, slots, faults, logs) -> dict:
    received, succeeded = {}, {}
    line = re.compile(r"Task (tasks\.\w+\.\w+)\[([0-9a-f-]{36})\] (received|succeeded)")
    for log in logs:
        for _task, tid, what in line.findall(log.read_text(errors="replace")):
            (received if what == "received" else succeeded).setdefault(tid, []).append(str(log))
    lost = sorted(set(sent) - set(done))
    predict = {tid: done[tid] - s["sent"] for tid, s in sent.items() if s["kind"] == "predict" and tid in done}
    steady = [lat for tid, lat in predict.items() if sent[tid]["sent"] < faults[0]["at"] - 1]
    steady_p99 = summary_ms(steady)["p99_ms"] if steady else None

    def window(a, b):
        lats = [lat for tid, lat in predict.items() if a <= sent[tid]["sent"] < b]
        return summary_ms(lats) if lats else None

    report_faults = []
    for f in faults:
        entry = {"fault": f["fault"], "worker": f.get("worker"), "at_s": round(f["at"] - faults[0]["at"], 1),
                 "p99_before": window(f["at"] - 10, f["at"]), "p99_during": window(f["at"], f["at"] + 5),
                 "p99_after": window(f["at"] + 5, f["at"] + 15)}
        if f["fault"] == "kill_inference":
            held = [tid for tid, where in received.items()
                    if f["log"] in where and f["log"] not in succeeded.get(tid, [])]
            finished = [done[tid] for tid in held if tid in done]
            entry["held"] = len(held)
            entry["held_done_elsewhere"] = len(finished)
            entry["held_done_after_s"] = round(max(finished) - f["at"], 2) if finished else None
        if f["fault"] == "restart_redis":
            entry["down_s"] = round(f["answers_again"] - f["at"], 2)
            entry["p99_steady_after_s"] = back_to_steady(predict, sent, f["answers_again"], steady_p99)
        report_faults.append(entry)
    repeated = sorted({s for s in slots if slots.count(s) > 1})
    missed = sorted(set(range(min(slots), max(slots) + 1)) - set(slots)) if slots else []
    return {
        "broker": args.broker, "rate_per_s": args.rate,
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                    "load_avg": os.getloadavg()},
        "sent": len(sent), "by_kind": {k: sum(s["kind"] == k for s in sent.values()) for k in ("predict", "learn")},
        "lost": len(lost), "lost_in_unacked": len(set(lost) & unacked), "lost_in_queue": len(set(lost) & queued),
        "lost_detail": [{"id": tid, "kind": sent[tid]["kind"], "sent_s": round(sent[tid]["sent"] - faults[0]["at"], 2),
                         "received": tid in received} for tid in lost[:20]],
        "duplicated": sum(len(set(v)) > 1 for v in succeeded.values()),
        "redelivered_runs": sum(len(v) > 1 for v in received.values()),
        "slots": {"accepted": len(slots), "repeated": repeated, "missed": missed},
        "steady_p99_ms": steady_p99, "faults": report_faults,
    }


def back_to_steady(predict, sent, since, steady_p99, bucket=0.5):
    """Seconds after ``since`` until each later 0.5 s bucket's p99 is within 2x the steady p99."""
    if not steady_p99:
        return None
    buckets = {}
    for tid, lat in predict.items():
        t = sent[tid]["sent"]
        if since <= t < since + 15:
            buckets.setdefault(int((t - since) / bucket), []).append(lat)
    bad = [b for b, lats in buckets.items() if summary_ms(lats)["p99_ms"] > 2 * steady_p99]
    return round((max(bad) + 1) * bucket, 2) if bad else 0.0


def write(reports: dict) -> None:
    md = ["# Chaos: worker kills, a leader kill and a Redis restart under load", "",
          "Default reliability settings; retrain schedule every 2 s. `python benchmarks/chaos.py`.", "",
          "| | " + " | ".join(reports) + " |", "|---|" + "---|" * len(reports)]

    def row(label, fn):
        md.append(f"| {label} | " + " | ".join(str(fn(r)) for r in reports.values()) + " |")

    row("sent (predict / learn)", lambda r: f"{r['sent']} ({r['by_kind']['predict']} / {r['by_kind']['learn']})")
    row("lost (of which in kombu's unacked)", lambda r: f"{r['lost']} ({r['lost_in_unacked']})")
    row("duplicated (ran to the end twice)", lambda r: r["duplicated"])
    row("redelivered runs", lambda r: r["redelivered_runs"])
    row("retrain slots accepted / repeated / missed",
        lambda r: f"{r['slots']['accepted']} / {len(r['slots']['repeated'])} / {len(r['slots']['missed'])}")
    row("held tasks done elsewhere, worst (s)",
        lambda r: max((f["held_done_after_s"] or 0) for f in r["faults"] if f["fault"] == "kill_inference"))
    row("held tasks per kill", lambda r: [f["held"] for f in r["faults"] if f["fault"] == "kill_inference"])
    row("steady predict p99 (ms)", lambda r: r["steady_p99_ms"])
    row("Redis down (s)", lambda r: next(f["down_s"] for f in r["faults"] if f["fault"] == "restart_redis"))
    row("p99 back to steady after Redis answers (s)",
        lambda r: next(f["p99_steady_after_s"] for f in r["faults"] if f["fault"] == "restart_redis"))
    md += ["", "## p99 (ms) before / during / after each fault", "",
           "| broker | fault | before | during (5 s) | after (5-15 s) |", "|---|---|---|---|---|"]
    for broker, r in reports.items():
        for f in r["faults"]:
            cells = [f"{f[k]['p99_ms']:.0f}" if f[k] else "-" for k in ("p99_before", "p99_during", "p99_after")]
            md.append(f"| {broker} | {f['fault']} {f['worker'] or ''} | " + " | ".join(cells) + " |")
    write_results("chaos", {"brokers": reports}, md)
    print("\n".join(md))


if __name__ == "__main__":
    sys.exit(main())
