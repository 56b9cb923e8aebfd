"""Agents without workers: registry (decorator + entry points), time limits,
contained failures, the example agent on a local context, balancer routing."""
import sys
import time

import pytest

from omnimind.agents import AgentRegistry, AgentSpec, Deadline, LocalAgentContext, agent, run_agent
from omnimind.agents.examples import recall_predict_store
from omnimind.errors import AgentError, AgentTimeout, InvalidInput
from omnimind.memory import InMemoryVectorMemory
from omnimind.scaling.balancer import CAPABILITY, DEFAULT_TASK, WorkloadType
from tests.agents.agent_plugin import write_plugin


@pytest.fixture
def plugin_registry(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(write_plugin(tmp_path / "plugin")))
    yield AgentRegistry(builtin_modules=("omnimind.agents.examples",))
    sys.modules.pop("omnimind_test_agents", None)


def test_entry_points_and_builtins_are_discovered(plugin_registry):
    names = plugin_registry.names()
    assert {"echo", "boom", "spin", "recall_predict_store"} <= set(names)
    assert plugin_registry.get("spin").time_limit == 1.0  # declared by @agent on the target
    assert plugin_registry.get("echo").time_limit is None
    assert plugin_registry.get("echo").source == "entry point omnimind_test_agents:echo"
    with pytest.raises(AgentError) as e:
        plugin_registry.get("broken")
    assert e.value.reason == "load_failed" and "ModuleNotFoundError" in e.value.detail
    with pytest.raises(InvalidInput) as e:
        plugin_registry.get("nobody")
    assert e.value.reason == "unknown_agent"
    with pytest.raises(InvalidInput) as e:
        plugin_registry.get(5)
    assert e.value.reason == "type"


def test_decorator_rules():
    registry = AgentRegistry(group="omnimind.agents.none", builtin_modules=())

    @agent("one", registry=registry)
    def one(context, payload):
        return 1

    agent("one", registry=registry)(one)  # the same function again is fine
    with pytest.raises(ValueError):
        agent("one", registry=registry)(lambda c, p: 2)
    with pytest.raises(ValueError):
        agent("bad name!", registry=registry)(one)
    with pytest.raises(ValueError):
        agent("neg", time_limit=0, registry=registry)(one)
    assert AgentSpec("x", one, time_limit=900).effective_time_limit(300) == 300
    assert AgentSpec("x", one).effective_time_limit(300) == 300
    assert AgentSpec("x", one, time_limit=2).effective_time_limit(300) == 2


def test_time_limit_interrupts_code_that_does_not_cooperate():
    def stubborn(context, payload):
        while True:
            try:
                while True:
                    pass
            except Exception:  # cannot swallow the interrupt
                pass

    started = time.monotonic()
    with pytest.raises(AgentTimeout) as e:
        run_agent(AgentSpec("stubborn", stubborn), {}, None, time_limit=0.2)
    assert 0.2 <= time.monotonic() - started < 2
    assert e.value.agent == "stubborn" and e.value.reason == "timeout"


def test_deadline_that_does_not_fire_leaves_no_pending_interrupt():
    for _ in range(50):
        with Deadline(0.001):
            pass
    time.sleep(0.01)
    x = 0
    for i in range(100000):  # an interrupt delivered late would land here
        x += i
    assert x > 0


def test_failures_are_contained_as_typed_errors():
    with pytest.raises(AgentError) as e:
        run_agent(AgentSpec("bad", lambda c, p: {"x": object()}), {}, None, time_limit=1)
    assert e.value.reason == "bad_result"
    with pytest.raises(AgentError) as e:
        run_agent(AgentSpec("raises", lambda c, p: [][1]), {}, None, time_limit=1)
    assert (e.value.agent, e.value.reason) == ("raises", "exception") and "IndexError" in e.value.detail

    def rejects(context, payload):
        raise InvalidInput("missing_field", "'inputs' is required")

    with pytest.raises(InvalidInput):  # the agent rejected its payload: bad input, not a crash
        run_agent(AgentSpec("rejects", rejects), {}, None, time_limit=1)


def test_local_context_rules():
    ctx = LocalAgentContext("a", {"tasks.memory.search": lambda **kw: 1 / 0})
    with pytest.raises(AgentError) as e:
        ctx.call("tasks.memory.search")
    assert e.value.reason == "subtask_failed"
    with pytest.raises(AgentError) as e:
        ctx.call("tasks.agents.run")
    assert e.value.reason == "forbidden_subtask"
    late = LocalAgentContext("late", {"tasks.inference.noop": lambda: None}, deadline=time.monotonic() - 1)
    with pytest.raises(AgentTimeout):
        late.call("tasks.inference.noop")
    assert ctx.calls == ["tasks.memory.search"]


def memory_handlers(memory):
    return {
        "tasks.memory.create_collection": lambda name, dim, distance: {"created": memory.create_collection(name, dim, distance)},
        "tasks.memory.upsert": lambda collection, id, vector, payload: {"upserted": memory.upsert(collection, [id], [vector], [payload])},
        "tasks.memory.search": lambda collection, vector, k, filter: {"hits": [h.to_json() for h in memory.search(collection, vector, k, filter)]},
        "tasks.inference.predict": lambda inputs: {"outputs": [sum(inputs)], "model_version": 3},
    }


def test_example_agent_recalls_predicts_and_stores():
    memory = InMemoryVectorMemory()
    ctx = LocalAgentContext("recall_predict_store", memory_handlers(memory))
    stored = []
    for vector in ([1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]):
        out = recall_predict_store(ctx, {"inputs": vector, "k": 2, "collection": "m"})
        stored.append(out["stored_id"])
        assert out["outputs"] == [1.0] and out["model_version"] == 3
    out = recall_predict_store(ctx, {"inputs": [0.1, 0.9, 0.2], "k": 2, "collection": "m"})
    assert [h["id"] for h in out["recalled"]] == [stored[1], stored[2]]
    assert memory.count("m") == 4
    (hit,) = memory.search("m", [0.1, 0.9, 0.2], k=1)
    assert hit.id == out["stored_id"] and hit.payload["recalled"] == [stored[1], stored[2]]
    with pytest.raises(InvalidInput):
        recall_predict_store(ctx, {})


def test_balancer_routes_memory_and_agents(celery_app):
    assert CAPABILITY[WorkloadType.MEMORY_OPS] == "memory"
    assert CAPABILITY[WorkloadType.AGENT_EXECUTION] == "agents"
    assert DEFAULT_TASK[WorkloadType.AGENT_EXECUTION] == "tasks.agents.run"
    assert WorkloadType.MEMORY_OPS not in DEFAULT_TASK  # memory needs an explicit task_name
    route = celery_app.amqp.router.route
    assert route({}, "tasks.agents.run")["queue"].name == "agents"
    for op in ("create_collection", "upsert", "search", "delete", "count"):
        assert route({}, f"tasks.memory.{op}")["queue"].name == "memory"
