"""Multiprocess mode without Celery: forked children add up, the folder is wiped
and locked, the metrics switch and the known series.

Switching modes changes process-wide state of prometheus-client, so those tests
run in a fresh interpreter.
"""
from __future__ import annotations

import fcntl
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

from omnimind.config import Settings
from omnimind.observability import metrics
from omnimind.observability.multiprocess import worker_dir

ROOT = Path(__file__).resolve().parents[2]


def _run(code: str, **env) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], cwd=ROOT, capture_output=True, text=True, timeout=120,
        env={**os.environ, **{k: str(v) for k, v in env.items()}},
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


FORK_AND_SUM = """
    import json, multiprocessing, sys
    from prometheus_client import generate_latest
    from omnimind.observability import metrics, multiprocess

    # Recorded before the switch (as at import in a worker): must not leak into the files.
    metrics.fence_rejections.inc(100)
    metrics.tasks_total.labels(task="t", state="succeeded").inc(100)
    path = multiprocess.enable(sys.argv[1] if len(sys.argv) > 1 else {path!r})

    def child(n):
        for _ in range(n):
            metrics.fence_rejections.inc()
            metrics.tasks_total.labels(task="t", state="succeeded").inc()
            metrics.cluster_latency_seconds.labels(node_id="n").observe(0.002)
        metrics.model_version.labels(node_id="n").set(n)

    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=child, args=(n,)) for n in (7, 11)]
    for p in procs: p.start()
    for p in procs:
        p.join()
        multiprocess.process_exited(p.pid)
    metrics.fence_rejections.inc()  # the parent counts too
    text = generate_latest(multiprocess.registry()).decode()

    def value(prefix):
        return sum(float(l.rsplit(" ", 1)[1]) for l in text.splitlines() if l.startswith(prefix))

    print(json.dumps({{
        "path": str(path),
        "fence": value("omnimind_fence_rejections_total "),
        "tasks": value('omnimind_tasks_total{{state="succeeded",task="t"}}'),
        "latency_count": value('omnimind_cluster_latency_seconds_count{{node_id="n"}}'),
        "model_version": value('omnimind_model_version{{node_id="n"}}'),
        "process_metrics": "process_resident_memory_bytes" in text,
        "files": sorted(p.name for p in path.iterdir()),
    }}))
"""


def test_forked_children_add_up_and_values_from_before_the_switch_are_dropped(tmp_path):
    folder = tmp_path / "w@h"
    folder.mkdir()
    (folder / "counter_99999999.db").write_bytes(b"stale run")  # a previous run's file
    (folder / "README").write_text("not ours")
    got = _run(FORK_AND_SUM.format(path=str(folder)))
    assert got["fence"] == 7 + 11 + 1
    assert got["tasks"] == 7 + 11
    assert got["latency_count"] == 7 + 11
    assert got["model_version"] == 11  # multiprocess_mode="max"
    assert got["process_metrics"]
    assert "counter_99999999.db" not in got["files"] and "README" in got["files"]


def test_a_live_worker_with_the_same_name_keeps_its_folder(tmp_path):
    folder = tmp_path / "w@h"
    folder.mkdir()
    (folder / "counter_1.db").write_bytes(b"in use")
    with open(folder / ".lock", "a") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)  # as the running worker holds it
        got = _run(FORK_AND_SUM.format(path=str(folder)))
    assert Path(got["path"]).name.startswith("w@h.") and got["fence"] == 19
    assert (folder / "counter_1.db").read_bytes() == b"in use"


def test_worker_dir_is_per_node_under_the_data_dir():
    assert worker_dir(Settings(), "inference@host").as_posix() == ".omnimind/metrics/inference@host"
    assert worker_dir(Settings(metrics_dir="/srv/m"), "a/b@c d").as_posix() == "/srv/m/a_b@c_d"
    assert Settings.from_env({"OMNIMIND_METRICS_DIR": "/srv/m"}).metrics_dir == "/srv/m"


def test_metrics_off_connects_no_recording_handler():
    code = """
        import json, weakref
        from celery import signals
        from omnimind.config import get_settings
        from workers import signals as handlers
        handlers.connect_worker_signals(get_settings())  # as a worker does when it loads its task modules
        deref = lambda r: r() if isinstance(r, weakref.ReferenceType) else r
        names = lambda sig: sorted(getattr(deref(r), "__name__", "") for _, r in sig.receivers)
        print(json.dumps({name: names(getattr(signals, name)) for name in
              ("task_received", "task_prerun", "task_postrun", "task_failure", "task_retry", "task_revoked")}))
    """
    off = _run(code, OMNIMIND_METRICS="0")
    assert off == {"task_received": [], "task_prerun": ["_time_prerun"], "task_postrun": ["_time_postrun"],
                   "task_failure": [], "task_retry": [], "task_revoked": []}
    on = _run(code, OMNIMIND_METRICS="1")
    assert on["task_received"] == ["_on_received"] and on["task_postrun"] == ["_on_postrun"]


def _series(metric):
    return {tuple(sorted(s.labels.items())) for family in metric.collect() for s in family.samples
            if not s.name.endswith("_created")}


def test_known_label_values_are_created_at_zero():
    from omnimind.app import app
    from workers.observability import precreate_known_series

    app.loader.import_default_modules()  # the task modules, as a worker imports them at start
    precreate_known_series(app, node_id="n-pre", queues=["inference"], capabilities=["inference"], raft_member="m-pre")
    tasks = _series(metrics.tasks_total)
    for state in metrics.TASK_STATES:
        assert (("state", state), ("task", "tasks.inference.predict")) in tasks
    assert not any(dict(labels).get("task", "").startswith("tasks.training.") for labels in tasks)
    assert {(("reason", r),) for r in metrics.MODEL_SWAP_REJECTION_REASONS} <= _series(metrics.model_swap_rejections)
    assert {(("reason", r),) for r in metrics.RAFT_DROP_REASONS} <= _series(metrics.raft_dropped_frames)
    assert (("node_id", "m-pre"),) in _series(metrics.raft_elections)
    assert {(("node_id", "n-pre"), ("status", s)) for s in metrics.REQUEST_STATUSES} <= _series(
        metrics.cluster_requests_total)
    assert (("reason", "shape"), ("task", "tasks.inference.predict")) in _series(metrics.bad_inputs)
    assert (("reason", "shape"), ("task", "tasks.inference.noop")) not in _series(metrics.bad_inputs)
