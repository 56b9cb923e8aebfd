"""What the farm benchmarks share: a private redis-server, worker processes, results.

Call :func:`private_redis` before importing anything from ``omnimind``: the Celery
app reads its settings (the broker URL among them) once, when first imported.
Results go to ``benchmarks/results/`` unless ``OMNIMIND_BENCH_RESULTS`` names
another folder (handy for a trial run that must not overwrite them).
"""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
RESULTS = Path(os.environ.get("OMNIMIND_BENCH_RESULTS", ROOT / "benchmarks" / "results"))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def private_redis(**extra_env: str) -> tuple[int, subprocess.Popen]:
    """Start a redis-server on a free port and point OmniMind at it; returns (port, process)."""
    port = free_port()
    url = f"redis://127.0.0.1:{port}/0"
    os.environ.update({"OMNIMIND_BROKER_URL": url, "OMNIMIND_RESULT_BACKEND": url, "OMNIMIND_REDIS_URL": url,
                       **extra_env})
    from omnimind.embedded_redis import start_redis

    return port, start_redis(port)


def spawn_worker(hostname: str, queues: str, pool: str, concurrency: int = 1, env: dict | None = None,
                 quiet: bool = False) -> subprocess.Popen:
    """A ``celery -A omnimind worker`` in a process group of its own."""
    output = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL} if quiet else {}
    return subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "omnimind", "worker", "-Q", queues, "-n", hostname,
         f"--pool={pool}", f"--concurrency={concurrency}", "--loglevel=WARNING", "--without-mingle",
         "--without-gossip"],
        cwd=ROOT, env={**os.environ, **(env or {})}, start_new_session=True, **output,
    )


def _signal(proc: subprocess.Popen, sig: int) -> None:
    try:
        os.killpg(proc.pid, sig)  # a worker and its pool children
    except ProcessLookupError:  # not a group leader (redis-server), or gone
        if proc.poll() is None:
            proc.send_signal(sig)


def stop_all(*processes: subprocess.Popen, timeout: float = 30.0) -> None:
    """Warm shutdown (SIGTERM), then SIGKILL whatever is left."""
    for proc in processes:
        _signal(proc, signal.SIGTERM)
    for proc in processes:
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            _signal(proc, signal.SIGKILL)
            proc.wait(5)


def percentiles_ms(samples_s) -> dict:
    """p50/p90/p99/mean in milliseconds of samples in seconds."""
    a = np.asarray(samples_s, dtype=float) * 1000
    return {"p50_ms": float(np.percentile(a, 50)), "p90_ms": float(np.percentile(a, 90)),
            "p99_ms": float(np.percentile(a, 99)), "mean_ms": float(a.mean()), "n": int(a.size)}


def summary_ms(samples_s) -> dict[str, float]:
    """n, p50/p99 (nearest rank), mean and max in milliseconds of samples in seconds."""
    ordered = sorted(sample * 1000 for sample in samples_s)

    def rank(fraction: float) -> float:
        return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]

    return {"n": len(ordered), "p50_ms": round(rank(0.50), 3), "p99_ms": round(rank(0.99), 3),
            "mean_ms": round(sum(ordered) / len(ordered), 3), "max_ms": round(ordered[-1], 3)}


def write_results(name: str, report: dict, markdown: list[str], output: Path = RESULTS) -> None:
    output.mkdir(parents=True, exist_ok=True)
    (output / f"{name}.json").write_text(json.dumps(report, indent=2) + "\n")
    (output / f"{name}.md").write_text("\n".join(markdown) + "\n")


def save_figure(fig, name: str) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(RESULTS / f"{name}.png", dpi=110)


def pyplot():
    """matplotlib's pyplot on the Agg backend, or None when matplotlib is missing."""
    try:
        import matplotlib
    except ImportError:
        return None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


# One implementation of these, shared with the tests (tests/helpers.py), not a copy.
from tests.helpers import metric_value, scrape, wait_until  # noqa: E402,F401


def procfile_farm(names: tuple[str, ...], run_dir: Path, procfile: Path | None = None) -> tuple[Path, dict]:
    """A Procfile of the checkout's lines ``names``, same commands and flags, with every
    ``--metrics-port`` and loopback ``host:port`` moved to a free port (so the benchmark's farm
    never collides with a `make up` farm on the same machine).

    A ``${SOME_PORT:-7001}`` in a command gets a free port through the environment instead.
    Returns (path of the written Procfile, {"commands", "metrics_ports", "env"}): pass ``env`` to
    :func:`omnimind_up`.
    """
    import re

    from omnimind.farm import find_procfile, parse_procfile

    specs = [s for s in parse_procfile((procfile or find_procfile()).read_text()) if s.name in names]
    moved: dict[str, int] = {}

    def port_for(old: str) -> str:
        return str(moved.setdefault(old, free_port()))

    commands, metrics_ports, env = {}, {}, {}
    for spec in specs:
        for var in re.findall(r"\$\{([A-Za-z0-9_]*PORT):-\d+\}", spec.command):
            env.setdefault(var, str(free_port()))
        command = re.sub(r"(--metrics-port[= ])(\d+)", lambda m: m.group(1) + port_for("metrics:" + spec.name),
                         spec.command)
        command = re.sub(r"\b(127\.0\.0\.1|localhost):(\d{2,5})\b", lambda m: f"{m.group(1)}:{port_for(m.group(2))}",
                         command)
        commands[spec.name] = command
        if "metrics:" + spec.name in moved:
            metrics_ports[spec.name] = moved["metrics:" + spec.name]
    missing = set(names) - set(commands)
    if missing:
        raise SystemExit(f"the Procfile has no {sorted(missing)} line(s)")
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / "Procfile"
    path.write_text("".join(f"{name}: {command}\n" for name, command in commands.items()))
    return path, {"commands": commands, "metrics_ports": metrics_ports, "env": env}


def omnimind_up(procfile: Path, run_dir: Path, env: dict | None = None) -> subprocess.Popen:
    """``omnimind up --procfile procfile`` in ``run_dir`` (its output in ``run_dir/farm.log``);
    stop it with :func:`stop_all` (SIGTERM: it stops its processes)."""
    log = open(run_dir / "farm.log", "ab")
    return subprocess.Popen([sys.executable, "-m", "omnimind.cli", "up", "--procfile", str(procfile)], cwd=run_dir,
                            env={**os.environ, **(env or {})}, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)


def answers(send) -> bool:
    """Whether ``send()`` (a task sent to a worker) gets its result within 5 s."""
    try:
        send().get(timeout=5)
        return True
    except Exception:
        return False
