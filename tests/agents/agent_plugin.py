"""Writes a tiny installed distribution that advertises agents under the
``omnimind.agents`` entry point group (what a real plugin package's wheel
installs), so tests exercise entry-point discovery in real worker processes."""
from pathlib import Path

MODULE = '''
import time
from omnimind.agents import agent


def echo(context, payload):
    return {"echo": payload}


def boom(context, payload):
    return 1 / 0


@agent("spin", time_limit=1.0)
def spin(context, payload):
    while True:  # never cooperates: only a real interrupt stops it
        pass


def ghost_memory(context, payload):
    return context.memory_search("no_such_collection", [1.0, 2.0], k=1)


def not_json(context, payload):
    return {"when": object()}


def nested(context, payload):
    return context.call("tasks.agents.run", agent="echo", payload={})
'''

ENTRY_POINTS = """[omnimind.agents]
echo = omnimind_test_agents:echo
boom = omnimind_test_agents:boom
spin = omnimind_test_agents:spin
ghost_memory = omnimind_test_agents:ghost_memory
not_json = omnimind_test_agents:not_json
nested = omnimind_test_agents:nested
broken = omnimind_test_agents_missing:nothing
"""


def write_plugin(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "omnimind_test_agents.py").write_text(MODULE)
    dist = root / "omnimind_test_agents-0.1.dist-info"
    dist.mkdir(exist_ok=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: omnimind-test-agents\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(ENTRY_POINTS)
    return root
