"""Model store benchmark: publish and fetch+verify latency against a bare SET/GET of the same bytes.

Two models: the default MLP (16-64-64-1, ~21 KB of float32 weights) and a ~50 MB one (three 2048x2048
linear layers). For each, in the same run against one local redis-server (no persistence, loopback):

* ``publish``: ``ModelStore.publish`` end to end — safetensors encoding, SHA-256, and the one Lua script
  (fence check, version number, write, pointer move, retention, PUBLISH);
* ``SET``: a bare ``SET`` of the same safetensors bytes (the floor for moving them into Redis);
* ``fetch+verify``: ``ModelStore.fetch(version)`` — MULTI of two HGETs, SHA-256 check, safetensors decode
  to CPU tensors;
* ``GET``: a bare ``GET`` of the same bytes;
* the local pieces on their own (encode, SHA-256, decode) and ``load_into`` a fresh module, so the
  overhead over SET/GET can be attributed.

Writes ``benchmarks/results/model_store.json`` and ``.md``. Run: ``python benchmarks/model_store.py``
(``--quick`` for fewer iterations).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import redis  # noqa: E402
from redis.utils import HIREDIS_AVAILABLE  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

from omnimind.config import Settings  # noqa: E402
from omnimind.embedded_redis import free_port, start_redis  # noqa: E402
from omnimind.models.factory import build_model  # noqa: E402
from omnimind.models.serialization import decode_state_dict, encode_state_dict, load_into, sha256_hex  # noqa: E402
from omnimind.models.store import ModelStore  # noqa: E402
from harness import RESULTS, summary_ms  # noqa: E402



def timed(fn, iterations: int, warmup: int) -> list[float]:
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(iterations):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return samples


def timed_pair(fn_a, fn_b, iterations: int, warmup: int) -> tuple[list[float], list[float]]:
    """Alternate the two so that a noisy neighbour slows both alike."""
    for _ in range(warmup):
        fn_a()
        fn_b()
    a, b = [], []
    for _ in range(iterations):
        start = time.perf_counter()
        fn_a()
        mid = time.perf_counter()
        fn_b()
        a.append(mid - start)
        b.append(time.perf_counter() - mid)
    return a, b


def big_model() -> nn.Module:
    return nn.Sequential(nn.Linear(2048, 2048), nn.ReLU(), nn.Linear(2048, 2048), nn.ReLU(), nn.Linear(2048, 2048))


def bench_model(client: redis.Redis, label: str, module: nn.Module, factory, iterations: int, warmup: int) -> dict:
    state = {k: v.detach().clone() for k, v in module.state_dict().items()}
    blob = encode_state_dict(state)
    store = ModelStore(client, f"bench-{label}", keep_versions=3, producer="benchmark")
    fence = [0]

    def publish():
        fence[0] += 1
        store.publish(state, {"validation_loss": 0.1, "samples_trained": 1000}, fence=(1, fence[0]))

    raw_key = f"omnimind:bench:raw:{label}"
    out = {"model": label, "parameters": sum(v.numel() for v in state.values()), "blob_bytes": len(blob)}
    published, sets = timed_pair(publish, lambda: client.set(raw_key, blob), iterations, warmup)
    out["publish"], out["set_same_bytes"] = summary_ms(published), summary_ms(sets)
    version = store.active_version()
    fetches, gets = timed_pair(lambda: store.fetch(version), lambda: client.get(raw_key), iterations, warmup)
    out["fetch_verify"], out["get_same_bytes"] = summary_ms(fetches), summary_ms(gets)
    out["encode"] = summary_ms(timed(lambda: encode_state_dict(state), iterations, warmup))
    out["sha256"] = summary_ms(timed(lambda: sha256_hex(blob), iterations, warmup))
    out["decode"] = summary_ms(timed(lambda: decode_state_dict(blob), iterations, warmup))
    fetched = store.fetch(version)[1]
    fresh = factory()
    out["load_into"] = summary_ms(timed(lambda: load_into(fresh, fetched), iterations, warmup))
    # Sanity: what we fetched is what we published, bit for bit.
    assert all(torch.equal(fetched[k], state[k]) for k in state)
    client.delete(raw_key)
    return out


def markdown(results: dict) -> str:
    setup = results["setup"]
    lines = [
        "# Model store: publish and fetch+verify vs bare SET/GET",
        "",
        f"Python {setup['python']}, torch {setup['torch']}, redis-py {setup['redis_py']} "
        f"({'hiredis' if setup['hiredis'] else 'pure-Python'} reply parser), redis-server {setup['redis']} on "
        f"loopback (no persistence), {setup['platform']} ({setup['cpus']} CPUs). Each store operation alternates "
        f"with its bare counterpart, so both see the same machine noise (1-min load average "
        f"{setup['load_average_at_start']} at start, {setup['load_average_at_end']} at end, on a shared machine). "
        f"Produced by `python benchmarks/model_store.py{' --tag ' + setup['tag'] if setup.get('tag') else ''}`"
        + (" with hiredis installed." if setup["hiredis"] else "."),
        "",
        "| model | blob | operation | n | p50 (ms) | p99 (ms) | mean (ms) |",
        "|---|---|---|---|---|---|---|",
    ]
    names = [("publish", "publish (encode + sha256 + staged SET + commit script)"), ("set_same_bytes", "bare SET, same bytes"),
             ("fetch_verify", "fetch + verify + decode"), ("get_same_bytes", "bare GET, same bytes"),
             ("encode", "  safetensors encode (local)"), ("sha256", "  sha256 (local)"),
             ("decode", "  safetensors decode (local)"), ("load_into", "  load_into fresh module (local)")]
    for model in results["models"]:
        size = f"{model['blob_bytes'] / 1e6:.2f} MB" if model["blob_bytes"] > 1e5 else f"{model['blob_bytes'] / 1e3:.1f} KB"
        for key, title in names:
            s = model[key]
            lines.append(f"| {model['model']} | {size} | {title} | {s['n']} | {s['p50_ms']} | {s['p99_ms']} | "
                         f"{s['mean_ms']} |")
    lines += ["", "Overhead over the bare command (p50):", ""]
    for model in results["models"]:
        lines.append(
            f"- {model['model']}: publish {model['publish']['p50_ms']} ms vs SET {model['set_same_bytes']['p50_ms']} ms "
            f"(x{model['publish']['p50_ms'] / max(model['set_same_bytes']['p50_ms'], 1e-9):.1f}); fetch+verify "
            f"{model['fetch_verify']['p50_ms']} ms vs GET {model['get_same_bytes']['p50_ms']} ms "
            f"(x{model['fetch_verify']['p50_ms'] / max(model['get_same_bytes']['p50_ms'], 1e-9):.1f})")
    lines += [
        "",
        "publish = local encode + SHA-256 + one pipelined round trip (SET of a staging key with the bytes, then "
        "EVALSHA of the commit script, which RENAMEs it into place); fetch = one MULTI (HGET metadata, GET blob) + "
        "SHA-256 + safetensors decode. For the small model both are dominated by round trips and Python overhead; "
        "for the large one by hashing, encoding and moving 50 MB through redis-py. With hiredis installed "
        "(`model_store_hiredis.md`) GET of large values gets faster but SET slower (redis-py then packs a command "
        "into one buffer, copying the 50 MB). A worker's swap adds `load_into` and a warm-up pass to the fetch "
        "figure.",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small-iterations", type=int, default=500)
    parser.add_argument("--large-iterations", type=int, default=40)
    parser.add_argument("--quick", action="store_true", help="50 / 5 iterations")
    parser.add_argument("--output", type=Path, default=RESULTS)
    parser.add_argument("--tag", default="", help="suffix of the result files, e.g. 'hiredis'")
    args = parser.parse_args(argv)
    if args.quick:
        args.small_iterations, args.large_iterations = 50, 5
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    port = free_port()
    server = start_redis(port)
    client = redis.Redis(port=port)
    try:
        client.config_set("proto-max-bulk-len", str(1024 * 1024 * 1024))
        settings = Settings()
        torch.manual_seed(0)
        results = {
            "setup": {"python": platform.python_version(), "platform": platform.platform(),
                      "cpus": os.cpu_count(), "torch": torch.__version__,
                      "redis_py": redis.__version__, "hiredis": HIREDIS_AVAILABLE,
                      "load_average_at_start": round(os.getloadavg()[0], 2), "tag": args.tag,
                      "redis": client.info("server")["redis_version"]},
            "models": [
                bench_model(client, "default-mlp-16-64-64-1", build_model(settings), lambda: build_model(settings),
                            args.small_iterations, warmup=20),
                bench_model(client, "linear-3x2048x2048", big_model(), big_model, args.large_iterations, warmup=3),
            ],
        }
        results["setup"]["load_average_at_end"] = round(os.getloadavg()[0], 2)
    finally:
        client.close()
        server.terminate()
        server.wait(10)
    args.output.mkdir(parents=True, exist_ok=True)
    stem = "model_store" + (f"_{args.tag}" if args.tag else "")
    (args.output / f"{stem}.json").write_text(json.dumps(results, indent=2) + "\n")
    (args.output / f"{stem}.md").write_text(markdown(results))
    print(markdown(results))
    return results


if __name__ == "__main__":
    main()
