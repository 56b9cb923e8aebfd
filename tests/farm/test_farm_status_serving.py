"""``omnimind status`` says which model version each worker serves, and MIXED when a
worker that refused the active version serves its last known good one."""
import json
import signal
import subprocess
import sys

from omnimind import keys
from omnimind.models.factory import build_model
from omnimind.models.store import ModelStore
from tests.helpers import wait_until


def status_json() -> dict:
    out = subprocess.run([sys.executable, "-m", "omnimind.cli", "status", "--json"], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def status_screen() -> str:
    out = subprocess.run([sys.executable, "-m", "omnimind.cli", "status"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_status_shows_mixed_versions(start_worker, redis_client):
    from omnimind.config import settings

    a, b = start_worker("serve-a"), start_worker("serve-b")
    store = ModelStore(redis_client)
    state = build_model(settings).state_dict()
    store.publish(state, fence=(1, 1))
    wait_until(lambda: {n: r.version for n, r in store.served_versions().items()} == {a.hostname: 1, b.hostname: 1},
               timeout=30, message="both workers on v1")
    serving = status_json()["serving"]
    assert serving["versions"] == {"1": sorted([a.hostname, b.hostname])} and serving["mixed"] is False
    assert "serving v1 on 2 nodes (active v1)" in status_screen()

    # b is paused while v2 is published and a loads it; then v2's blob is damaged: b refuses it.
    b.signal(signal.SIGSTOP)
    try:
        store.publish(state, fence=(1, 2))
        wait_until(lambda: store.served_versions().get(a.hostname) and store.served_versions()[a.hostname].version == 2,
                   timeout=30, message="a on v2")
        redis_client.set(keys.model_blob("default", 2), b"garbage" * 10)
    finally:
        b.signal(signal.SIGCONT)
    # Generous: b resumes from SIGSTOP on a possibly loaded machine, then its follower polls.
    wait_until(lambda: store.served_versions()[b.hostname].refused == 2, timeout=60, message="b to refuse v2")

    def mixed():
        serving = status_json()["serving"]
        return serving if serving["mixed"] else None

    serving = wait_until(mixed, timeout=30, interval=0.5, message="status to say MIXED")
    assert serving["active"] == 2 and serving["versions"] == {"1": [b.hostname], "2": [a.hostname]}
    (refusing,) = [n for n in serving["nodes"] if n["node_id"] == b.hostname]
    assert refusing["refused"] == 2 and refusing["reason"] == "checksum" and refusing["fallback"] is True
    assert f"MIXED: v1 on {b.hostname} (refused v2: checksum) | v2 on {a.hostname} (active v2)" in status_screen()
