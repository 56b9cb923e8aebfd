"""`omnimind stream` against real training and inference workers."""
import json
import os
import re
import subprocess
import sys

from omnimind import keys
from tests.helpers import wait_until

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PROBE_LINE = re.compile(r"^t=\s*\d+\.\ds\s+sent\s+\d+\s+served v(\d+)\s+served mse (\d+\.\d+)\s+"
                        r"learner loss (n/a|\d+\.\d+)\s+publications (\d+)", re.M)


def test_stream_command_drives_the_farm_and_plots_the_served_loss(start_worker, redis_client, tmp_path):
    learner = start_worker("stream-train", queues="training", pool="solo", concurrency=1, OMNIMIND_DATA_DIR=tmp_path / "data")
    start_worker("stream-infer", queues="inference", pool="threads", concurrency=4)
    png = tmp_path / "plots" / "stream.png"
    proc = subprocess.run(
        [sys.executable, "-m", "omnimind.cli", "stream", "--stream", "abrupt", "--phase-seconds", "2",
         "--out", str(png)],
        cwd=ROOT, env=dict(os.environ), capture_output=True, text=True, timeout=240,
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output
    assert "omnimind stream: abrupt, 1280 samples at 320/s, changes at 2s (A→B)" in output
    probes = PROBE_LINE.findall(output)
    assert len(probes) >= 3, output  # one line per second for at least the 4 s of sending
    assert all(float(mse) >= 0 for _, mse, _, _ in probes)
    assert re.search(r"omnimind stream: 1280 samples sent in [\d.]+s, learned by [\d.]+s; \d+ publication\(s\), "
                     r"served versions \[[\d, ]+\], 0 error\(s\); plot written to ", output), output
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    # Every sample reached the learner.
    status = wait_until(lambda: redis_client.get(keys.learner_status(learner.hostname)), timeout=10,
                        message="the learner status")
    assert json.loads(status)["samples"] == 1280


def test_stream_command_without_a_farm_says_so(redis_client):
    proc = subprocess.run(
        [sys.executable, "-m", "omnimind.cli", "stream", "--phase-seconds", "1", "--timeout", "2"],
        cwd=ROOT, env=dict(os.environ), capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 1
    assert "omnimind stream: no answer from the farm" in proc.stdout
