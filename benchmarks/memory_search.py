"""Vector memory search through the farm vs qdrant-client called directly.

One redis-server and one memory worker (solo pool: embedded Qdrant is served by
exactly one process) with OmniMind's default settings. The run:

1. loads ``--n`` random vectors of dimension ``--dim`` (cosine) through
   ``tasks.memory.upsert`` in batches of ``--batch`` (upsert throughput), and
   measures the throughput at a few batch sizes on a scratch collection, and the
   same upserts on qdrant-client directly on a scratch path;
2. ``--queries`` searches (k = ``--k``) through ``tasks.memory.search``, round trip;
3. runs the same queries on ``QdrantClient(path=...)`` in this process, on a
   copy of the worker's files (local mode admits one process per folder), in
   blocks interleaved with the farm's so that machine noise hits both alike.

If loading ``--n`` points takes more than ``--max-load-s`` seconds the load
stops there and the report says at which size it measured.

    python benchmarks/memory_search.py [--n 100000] [--dim 384] [--queries 300]

Writes benchmarks/results/memory_search.{json,md}.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
RESULTS = ROOT / "benchmarks" / "results"


def percentiles(samples_s):
    a = np.asarray(samples_s) * 1000
    return {"p50_ms": float(np.percentile(a, 50)), "p90_ms": float(np.percentile(a, 90)),
            "p99_ms": float(np.percentile(a, 99)), "mean_ms": float(a.mean()), "n": int(a.size)}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=100_000, help="points in the searched collection")
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--batch", type=int, default=1000, help="points per upsert task while loading")
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--max-load-s", type=float, default=300.0, help="stop loading after this long")
    parser.add_argument("--filtered-queries", type=int, default=20, help="local mode filters point by point: slow")
    parser.add_argument("--sweep-points", type=int, default=2000, help="points per batch size in the sweep")
    args = parser.parse_args()

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"redis://127.0.0.1:{port}/0"
    data_dir = tempfile.mkdtemp(prefix="omnimind-memory-bench-")
    # Before any omnimind import: the Celery app reads its settings once, at import.
    os.environ.update({"OMNIMIND_BROKER_URL": url, "OMNIMIND_RESULT_BACKEND": url, "OMNIMIND_REDIS_URL": url,
                       "OMNIMIND_DATA_DIR": data_dir, "OMNIMIND_MAX_BATCH_SIZE": str(max(1024, args.batch)),
                       "OMNIMIND_MEMORY_TIME_LIMIT": "600", "OMNIMIND_MEMORY_SOFT_TIME_LIMIT": "500"})
    from omnimind.embedded_redis import start_redis

    redis_proc = start_redis(port)

    def start_worker():
        return subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "omnimind", "worker", "-Q", "memory", "-n", "bench-memory@%h",
             "--pool=solo", "--loglevel=WARNING", "--without-mingle", "--without-gossip"],
            cwd=ROOT, env=os.environ.copy(), start_new_session=True,
        )

    def stop_worker(proc):
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(60)

    worker = start_worker()
    rng = np.random.default_rng(0)
    try:
        from omnimind.app import app
        from omnimind.config import settings

        def task(op, timeout=600, **kwargs):
            return app.send_task(f"tasks.memory.{op}", kwargs=kwargs).get(timeout=timeout)

        deadline = time.monotonic() + 90
        while True:  # wait until the worker answers
            try:
                task("create_collection", timeout=2, name="bench", dim=args.dim, distance="cosine")
                break
            except Exception:
                if time.monotonic() > deadline:
                    raise

        # 1. upsert throughput at a few batch sizes (scratch collections), farm and direct.
        sweep = {}
        for batch in (100, 500, 1000):
            name = f"sweep{batch}"
            task("create_collection", name=name, dim=args.dim, distance="cosine")
            vectors = rng.standard_normal((args.sweep_points, args.dim)).astype(np.float32)
            t0 = time.perf_counter()
            for start in range(0, args.sweep_points, batch):
                chunk = vectors[start:start + batch]
                task("upsert", collection=name, ids=list(range(start, start + len(chunk))),
                     vectors=chunk.tolist(), payloads=[{"i": start + j} for j in range(len(chunk))])
            sweep[batch] = {"farm_points_per_s": args.sweep_points / (time.perf_counter() - t0)}
        direct_dir = tempfile.mkdtemp(prefix="omnimind-memory-direct-")
        from qdrant_client import QdrantClient, models

        scratch = QdrantClient(path=direct_dir)
        for batch in (100, 500, 1000):
            name = f"sweep{batch}"
            scratch.create_collection(name, vectors_config=models.VectorParams(size=args.dim, distance=models.Distance.COSINE))
            vectors = rng.standard_normal((args.sweep_points, args.dim)).astype(np.float32)
            t0 = time.perf_counter()
            for start in range(0, args.sweep_points, batch):
                chunk = vectors[start:start + batch]
                scratch.upsert(name, points=models.Batch(ids=list(range(start, start + len(chunk))), vectors=chunk.tolist(),
                                                         payloads=[{"i": start + j} for j in range(len(chunk))]))
            sweep[batch]["direct_points_per_s"] = args.sweep_points / (time.perf_counter() - t0)
        scratch.close()
        shutil.rmtree(direct_dir, ignore_errors=True)

        # 2. load the searched collection through the farm, within the time budget.
        loaded, t0 = 0, time.perf_counter()
        while loaded < args.n and time.perf_counter() - t0 < args.max_load_s:
            size = min(args.batch, args.n - loaded)
            chunk = rng.standard_normal((size, args.dim)).astype(np.float32)
            task("upsert", collection="bench", ids=list(range(loaded, loaded + size)), vectors=chunk.tolist(),
                 payloads=[{"i": loaded + j, "bucket": (loaded + j) % 10} for j in range(size)])
            loaded += size
        load_s = time.perf_counter() - t0
        count = task("count", collection="bench")["count"]
        assert count == loaded, (count, loaded)

        # Restart the worker so that it serves the store as reopened from disk, and open
        # a copy of the same files here (local mode locks its folder to one process):
        # both sides then search identical data with the same in-memory layout.
        stop_worker(worker)
        copy_dir = tempfile.mkdtemp(prefix="omnimind-memory-copy-")
        shutil.copytree(settings.memory_path, copy_dir, dirs_exist_ok=True,
                        ignore=shutil.ignore_patterns(".lock"))
        t0 = time.perf_counter()
        worker = start_worker()
        task("count", collection="bench")
        farm_reopen_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        client = QdrantClient(path=copy_dir)
        open_s = time.perf_counter() - t0

        # 3. the same searches through the farm (round trip: client -> Redis -> worker ->
        # Redis -> client) and on qdrant-client directly, interleaved in blocks so that
        # machine noise hits both alike.
        queries = rng.standard_normal((args.queries, args.dim)).astype(np.float32).tolist()
        filt = models.Filter(must=[models.FieldCondition(key="bucket", match=models.MatchValue(value=3))])

        def farm_search(q, filtered=False):
            hits = task("search", collection="bench", vector=q, k=args.k, filter={"bucket": 3} if filtered else None)
            return [h["id"] for h in hits["hits"]]

        def direct_search(q, filtered=False):
            points = client.query_points("bench", query=q, limit=args.k, with_payload=True,
                                         query_filter=filt if filtered else None).points
            return [p.id for p in points]

        for q in queries[:10]:  # warm-up
            farm_search(q)
            direct_search(q)
        samples = {"farm": [], "direct": [], "farm_filtered": [], "direct_filtered": []}
        agree = 0
        block = 25
        for start in range(0, len(queries), block):
            for kind, search in (("farm", farm_search), ("direct", direct_search)):
                ids = []
                for q in queries[start:start + block]:
                    t = time.perf_counter()
                    ids.append(search(q))
                    samples[kind].append(time.perf_counter() - t)
                if kind == "farm":
                    farm_ids = ids
            agree += sum(a == b for a, b in zip(farm_ids, ids))
        for start in range(0, args.filtered_queries, 5):
            for kind, search in (("farm_filtered", farm_search), ("direct_filtered", direct_search)):
                for q in queries[start:min(start + 5, args.filtered_queries)]:
                    t = time.perf_counter()
                    search(q, filtered=True)
                    samples[kind].append(time.perf_counter() - t)
        client.close()
    finally:
        stop_worker(worker)
        redis_proc.terminate()
        redis_proc.wait(10)
        shutil.rmtree(data_dir, ignore_errors=True)
        if "copy_dir" in locals():
            shutil.rmtree(copy_dir, ignore_errors=True)
    farm, direct = samples["farm"], samples["direct"]
    farm_filtered, direct_filtered = samples["farm_filtered"], samples["direct_filtered"]

    from importlib.metadata import version

    report = {
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "python": platform.python_version()},
        "versions": {"qdrant-client": version("qdrant-client"), "celery": version("celery"), "numpy": version("numpy")},
        "setup": {"mode": "embedded (qdrant-client local mode)", "worker": "memory queue, solo pool",
                  "requested_points": args.n, "points": loaded, "dim": args.dim, "distance": "cosine", "k": args.k,
                  "load_batch": args.batch, "max_load_s": args.max_load_s, "queries": args.queries},
        "load": {"seconds": load_s, "farm_points_per_s": loaded / load_s, "truncated": loaded < args.n},
        "upsert_sweep": {"points_per_batch_size": args.sweep_points, "by_batch": sweep},
        "search": {"farm": percentiles(farm), "direct": percentiles(direct),
                   "farm_filtered": percentiles(farm_filtered), "direct_filtered": percentiles(direct_filtered)},
        "direct_open_s": open_s,
        "farm_restart_to_first_answer_s": farm_reopen_s,
        "same_ids_fraction": agree / len(queries),
    }
    s = report["search"]
    report["overhead"] = {"p50_ms": s["farm"]["p50_ms"] - s["direct"]["p50_ms"],
                          "p99_ms": s["farm"]["p99_ms"] - s["direct"]["p99_ms"],
                          "p50_ratio": s["farm"]["p50_ms"] / s["direct"]["p50_ms"]}
    write(report)
    print(json.dumps({"points": loaded, "search": {k: (v["p50_ms"], v["p99_ms"]) for k, v in s.items()},
                      "load_points_per_s": report["load"]["farm_points_per_s"]}, indent=2))
    return 0


def write(report) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "memory_search.json").write_text(json.dumps(report, indent=2) + "\n")
    setup, s, load = report["setup"], report["search"], report["load"]
    size_note = (
        f"**Measured at {setup['points']:,} points, not the {setup['requested_points']:,} asked for:** loading stopped "
        f"after the {setup['max_load_s']:.0f} s budget." if load["truncated"] else
        f"{setup['points']:,} points of dimension {setup['dim']} ({setup['distance']}), k = {setup['k']}."
    )
    md = [
        "# Vector memory: search through the farm vs qdrant-client directly",
        "",
        f"Machine: {report['machine']['platform']}, {report['machine']['cpus']} CPUs, Python "
        f"{report['machine']['python']}; qdrant-client {report['versions']['qdrant-client']}, "
        f"Celery {report['versions']['celery']}. Memory worker: {setup['worker']}, {setup['mode']}.",
        "",
        size_note,
        "",
        "| search | p50 ms | p90 ms | p99 ms | mean ms | n |",
        "|---|---|---|---|---|---|",
    ]
    for key, label in (("farm", "through the farm (tasks.memory.search)"), ("direct", "qdrant-client directly"),
                       ("farm_filtered", "farm, filter bucket=3 (10%)"), ("direct_filtered", "direct, filter bucket=3")):
        v = s[key]
        md.append(f"| {label} | {v['p50_ms']:.2f} | {v['p90_ms']:.2f} | {v['p99_ms']:.2f} | {v['mean_ms']:.2f} | {v['n']} |")
    md += [
        "",
        f"- farm overhead: p50 +{report['overhead']['p50_ms']:.2f} ms, p99 +{report['overhead']['p99_ms']:.2f} ms "
        f"(p50 ratio {report['overhead']['p50_ratio']:.2f}); same top-{setup['k']} ids as direct in "
        f"{report['same_ids_fraction']:.0%} of queries",
        f"- loading {setup['points']:,} points through the farm in batches of {setup['load_batch']}: "
        f"{load['seconds']:.1f} s = **{load['farm_points_per_s']:.0f} points/s**",
        f"- reopening the store (qdrant-client local mode reads every point back from SQLite): "
        f"{report['direct_open_s']:.1f} s directly; memory worker restart to first answer "
        f"{report['farm_restart_to_first_answer_s']:.1f} s. Both sides search the store as reopened from disk.",
        "",
        f"Upsert throughput by batch size ({report['upsert_sweep']['points_per_batch_size']} points each, "
        f"dimension {setup['dim']}, into a fresh collection):",
        "",
        "| batch | farm points/s | direct points/s |",
        "|---|---|---|",
    ]
    for batch, v in report["upsert_sweep"]["by_batch"].items():
        md.append(f"| {batch} | {v['farm_points_per_s']:.0f} | {v['direct_points_per_s']:.0f} |")
    md += [
        "",
        "Local mode is qdrant-client's embedded engine: exact (brute-force NumPy) search and SQLite persistence, "
        "one process only. A Qdrant server (OMNIMIND_QDRANT_URL) uses HNSW and lets several memory workers run.",
    ]
    (RESULTS / "memory_search.md").write_text("\n".join(md) + "\n")


if __name__ == "__main__":
    sys.exit(main())
