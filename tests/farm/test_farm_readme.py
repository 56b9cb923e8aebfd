"""The README's Python snippets run as written, against real workers.

Each ```python block of the sections below is executed in order, in one namespace
per block, with the test farm's broker (``omnimind.app`` reads it from the
environment, as a user's shell exports it).
"""
import contextlib
import io
import re
from pathlib import Path

import pytest

from omnimind.errors import NoNodeAvailable

README = Path(__file__).resolve().parents[2] / "README.md"
SECTIONS = ("## Sending work", "## Vector memory and agents")


def snippets(section: str) -> list[str]:
    text = README.read_text()
    start = text.index(section)
    end = text.find("\n## ", start + len(section))
    return re.findall(r"```python\n(.*?)```", text[start:end if end > 0 else None], flags=re.S)


def test_the_readme_python_snippets_run_as_written(start_worker, tmp_path, redis_server, monkeypatch):
    monkeypatch.setenv("FARM_BROKER_URL", redis_server.url)  # the plain client's one setting
    start_worker("readme-inf", queues="inference")
    start_worker("readme-train", queues="training", pool="solo", concurrency=1, OMNIMIND_DATA_DIR=tmp_path / "train")
    start_worker("readme-mem", queues="memory", pool="solo", concurrency=1, OMNIMIND_DATA_DIR=tmp_path / "data")
    start_worker("readme-agents", queues="agents", pool="threads", concurrency=4)
    blocks = [block for section in SECTIONS for block in snippets(section)]
    assert len(blocks) == 4, blocks
    printed = io.StringIO()
    for block in blocks:
        with contextlib.redirect_stdout(printed):
            exec(compile(block, str(README), "exec"), {})
    lines = printed.getvalue().splitlines()
    assert "'model_version': 0" in lines[0] and "readme-inf@" in lines[0]   # the plain client's predict
    assert "'model_version': 0" in lines[1] and "'outputs'" in lines[1]   # omnimind.app's
    assert "readme-inf@" in lines[2]   # the balancer's, on the chosen node's queue


def test_the_readme_says_what_a_gpu_requirement_does_on_a_cpu_farm(start_worker):
    # "With requirements={"needs_gpu": True, ...} on a farm without a GPU node, submit raises NoNodeAvailable."
    import asyncio

    from omnimind.config import settings
    from omnimind.scaling import ClusterLoadBalancer, ServiceRegistry, WorkloadType

    start_worker("readme-cpu", queues="inference")
    balancer = ClusterLoadBalancer(ServiceRegistry.from_settings(settings))
    with pytest.raises(NoNodeAvailable):
        asyncio.run(balancer.submit(WorkloadType.INFERENCE, {"inputs": [0.0] * 16},
                                    requirements={"needs_gpu": True, "min_vram_gb": 2.0}))
