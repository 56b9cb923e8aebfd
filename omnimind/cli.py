"""The ``omnimind`` command: up, redis, flower, status, submit, model, raft, demo, stream."""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import signal
import sys
import time
from pathlib import Path

from omnimind.errors import OmniMindError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="omnimind", description="OmniMind worker farm")
    sub = parser.add_subparsers(dest="command", required=True)

    up = sub.add_parser("up", help="run a local farm from the Procfile (Ctrl-C stops it)")
    up.add_argument("--procfile", type=Path, help="Procfile to run (default: the checkout's)")
    up.add_argument("--without", action="append", default=[], metavar="NAME", help="skip a Procfile process")
    up.set_defaults(func=cmd_up)

    rds = sub.add_parser("redis", help="run an embedded redis-server in the foreground")
    rds.add_argument("--port", type=int, default=None, help="default: $OMNIMIND_REDIS_PORT or 6379")
    rds.set_defaults(func=cmd_redis)

    flower = sub.add_parser(
        "flower", help="run Flower with basic auth from the environment, not its command line",
        description="Runs `celery -A omnimind flower ARGS` with FLOWER_BASIC_AUTH set from OMNIMIND_FLOWER_USER and "
                    "OMNIMIND_FLOWER_PASSWORD (or the file OMNIMIND_FLOWER_PASSWORD_FILE), so that the password "
                    "never shows in `ps`; refuses to start without one.",
    )
    flower.add_argument("flower_args", nargs=argparse.REMAINDER, help="Flower options, e.g. --port=5555")
    flower.set_defaults(func=cmd_flower)

    status = sub.add_parser("status", help="nodes, health, load and queue depths")
    status.add_argument("--json", action="store_true", help="machine-readable output")
    status.set_defaults(func=cmd_status)

    submit = sub.add_parser("submit", help="send a predict or learn request and print the result")
    submit.add_argument("task", choices=["predict", "learn"])
    submit.add_argument("--inputs", required=True, help="JSON: one example or a batch")
    submit.add_argument("--targets", help="JSON targets (learn)")
    submit.add_argument("--node", help="send to this node's direct queue")
    submit.add_argument("--gpu", action="store_true", help="require a GPU node")
    submit.add_argument("--min-vram-gb", type=float, help="require this much free GPU memory")
    submit.add_argument("--timeout", type=float, default=30.0)
    submit.set_defaults(func=cmd_submit)

    from omnimind.models.cli import add_model_commands

    add_model_commands(sub)

    from omnimind.raft_cli import add_raft_commands

    add_raft_commands(sub)

    demo = sub.add_parser("demo", help="drive the farm's learner with a drifting stream and plot it")
    demo.add_argument("--stream", choices=["mean_shift", "sea", "hyperplane", "agrawal"], default="mean_shift")
    demo.add_argument("--batches", type=int, default=100)
    demo.add_argument("--batch-size", type=int, default=32)
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--out", default="omnimind-demo.png", help="PNG of the prequential loss")
    demo.set_defaults(func=cmd_demo)

    stream = sub.add_parser("stream", help="drive a drifting stream through the farm; plot the served loss")
    stream.add_argument("--stream", choices=["abrupt", "gradual", "recurring", "friedman"], default="abrupt")
    stream.add_argument("--phase-seconds", type=float, default=20.0, help="seconds per concept phase")
    stream.add_argument("--rate", type=float, default=320.0, help="feedback samples per second")
    stream.add_argument("--batch-size", type=int, default=32, help="samples per learn task")
    stream.add_argument("--probe-interval", type=float, default=0.5, help="seconds between predict probes")
    stream.add_argument("--seed", type=int, default=0)
    stream.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for a serving farm")
    stream.add_argument("--out", default="omnimind-stream.png", help="PNG of the served loss over time")
    stream.set_defaults(func=cmd_stream)

    args, unknown = parser.parse_known_args(argv)
    if args.command == "flower":
        args.flower_args = [*unknown, *args.flower_args]  # Flower's own options pass through
    elif unknown:
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    try:
        return args.func(args)
    except OmniMindError as exc:
        print(f"omnimind: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1


#: How long ``omnimind up`` waits for every worker to answer a ping before saying so.
UP_TIMEOUT_S = 120.0


def cmd_up(args) -> int:
    from omnimind.config import Settings, given
    from omnimind.farm import (REDIS_PROCESS, Farm, farm_environment, find_procfile, parse_procfile,
                               wait_until_answering, worker_nodenames)

    procfile = args.procfile or find_procfile()
    env, embedded = farm_environment(dict(os.environ))
    specs = [s for s in parse_procfile(procfile.read_text()) if s.name not in args.without]
    if not embedded:
        specs = [s for s in specs if s.name != REDIS_PROCESS]
    farm = Farm(specs, env)
    stopping = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(True))
    print(f"omnimind up: {', '.join(s.name for s in specs)} from {procfile}", flush=True)
    try:
        farm.start()
    except BaseException:
        farm.stop()
        raise
    settings = Settings.from_env(env)
    print(
        f"omnimind up: broker {settings.broker_url}"
        + (f", redis {settings.redis_url}" if settings.redis_url != settings.broker_url else "")
        + (" (embedded redis-server)" if embedded else "")
        + f"\nomnimind up: flower http://127.0.0.1:5555 user {settings.flower_user or 'admin'} password "
        + (f"in {settings.flower_password_file}" if not settings.flower_password
           else "from $OMNIMIND_FLOWER_PASSWORD")
        + "".join(
            f"\nomnimind up: metrics of {spec.name} on http://127.0.0.1:{port}/metrics"
            for spec in specs
            for port in re.findall(r"--metrics-port[= ](\d+)", spec.command)
        )
        + f"\nomnimind up: in another shell: export OMNIMIND_BROKER_URL={settings.broker_url}"
        + (f" OMNIMIND_REDIS_URL={settings.redis_url}" if given(env, "redis_url") else "")
        + "; omnimind status",
        flush=True,
    )
    # "Up" means answering: each worker pings back through the broker (its consumer runs).
    silent = wait_until_answering(env, worker_nodenames(specs), UP_TIMEOUT_S, lambda: stopping or farm.exited())
    if silent:
        print(f"omnimind up: no answer yet from {', '.join(silent)}; Ctrl-C to stop", flush=True)
    elif not (stopping or farm.exited()):
        print("omnimind up: farm is up, Ctrl-C to stop", flush=True)
    try:
        while not stopping:
            dead = farm.exited()
            if dead:
                print(f"omnimind up: process(es) exited: {dead}; stopping the farm", flush=True)
                break
            time.sleep(0.2)
    except KeyboardInterrupt:
        pass
    print("omnimind up: stopping", flush=True)
    farm.stop()
    print("omnimind up: stopped", flush=True)
    return 0


def cmd_redis(args) -> int:
    from omnimind.embedded_redis import redis_command

    from omnimind.config import get_settings

    port = args.port or get_settings().redis_port
    cmd = redis_command(port)
    os.execv(cmd[0], cmd)


def cmd_flower(args) -> int:
    from omnimind.config import get_settings, variable
    from omnimind.farm import flower_basic_auth

    env = dict(os.environ)
    settings = get_settings()
    if settings.flower_password or settings.flower_password_file or not env.get("FLOWER_BASIC_AUTH"):
        env["FLOWER_BASIC_AUTH"] = flower_basic_auth(settings)  # the environment is private to us; argv is not
    env.pop(variable("flower_password"), None)
    os.execve(sys.executable, [sys.executable, "-m", "celery", "-A", "omnimind", "flower", *args.flower_args], env)


def cmd_status(args) -> int:
    from omnimind.config import Settings
    from omnimind.redis_client import redis_client
    from omnimind.status import read_serving, read_status, render

    settings = Settings.from_env()
    status = read_status(settings)
    status.serving = read_serving(redis_client(settings.redis_url, settings.sentinel_master), status.nodes)
    print(json.dumps(status.as_dict(), indent=2) if args.json else render(status))
    return 0


def cmd_demo(args) -> int:
    from omnimind.demo import main as demo_main

    return demo_main(args)


def cmd_stream(args) -> int:
    from omnimind.stream import main as stream_main

    return stream_main(args)


def cmd_submit(args) -> int:
    from omnimind.scaling import ClusterLoadBalancer, ServiceRegistry, WorkloadType
    from omnimind.app import app
    from omnimind.config import get_settings

    settings = get_settings()

    try:
        payload = {"inputs": json.loads(args.inputs)}
        if args.task == "learn":
            if args.targets is None:
                print("omnimind: learn needs --targets", file=sys.stderr)
                return 2
            payload["targets"] = json.loads(args.targets)
    except json.JSONDecodeError as exc:
        print(f"omnimind: --inputs/--targets must be JSON: {exc}", file=sys.stderr)
        return 2
    requirements = {}
    if args.node:
        requirements["node_id"] = args.node
    if args.gpu:
        requirements["needs_gpu"] = True
    if args.min_vram_gb is not None:
        requirements["min_vram_gb"] = args.min_vram_gb
    workload = WorkloadType.INFERENCE if args.task == "predict" else WorkloadType.TRAINING
    balancer = ClusterLoadBalancer(ServiceRegistry.from_settings(settings), app=app)
    result = asyncio.run(balancer.submit(workload, payload, requirements or None))
    print(json.dumps(result.get(timeout=args.timeout)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
