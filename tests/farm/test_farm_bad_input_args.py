"""Arguments that do not fit a task's signature: a typed InvalidInput("arguments"),
counted as bad input, and the worker goes on serving."""
import importlib
import inspect

import pytest

from omnimind.errors import InvalidInput
from tests.helpers import free_port, metric_value, scrape

GOOD = [0.25] * 16


def our_tasks(app):
    for module in app.conf.include:  # what a worker imports at start
        importlib.import_module(module)
    return sorted(name for name in app.tasks if name.startswith("tasks."))


def test_every_task_checks_its_arguments_before_its_body(celery_app):
    names = our_tasks(celery_app)
    assert {"tasks.inference.predict", "tasks.training.learn", "tasks.training.retrain", "tasks.memory.search",
            "tasks.agents.run"} <= set(names)
    for name in names:
        task = celery_app.tasks[name]
        params = inspect.signature(task.run).parameters.values()
        assert not any(p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD) for p in params), name
        # Called in-process: the check runs in the task class's __call__, before the body.
        for args, kwargs in (((), {"no_such_argument": 1}), ((None,) * (len(params) + 1), {})):
            with pytest.raises(InvalidInput) as caught:
                task(*args, **kwargs)
            assert caught.value.reason == "arguments" and name in caught.value.detail, (name, caught.value)


def expect_arguments_error(result):
    with pytest.raises(InvalidInput) as caught:
        result.get(timeout=20)
    assert caught.value.reason == "arguments", caught.value
    return caught.value


def test_predict_with_unknown_or_extra_arguments(start_worker, celery_app):
    port = free_port()
    worker = start_worker("inf-args", OMNIMIND_METRICS_PORT=port)
    predict = "tasks.inference.predict"
    error = expect_arguments_error(celery_app.send_task(predict, kwargs={"inputs": GOOD, "temperature": 0.5}))
    assert "temperature" in error.detail
    expect_arguments_error(celery_app.send_task(predict, args=[GOOD, 1, 2]))
    expect_arguments_error(celery_app.send_task(predict, args=[GOOD], kwargs={"inputs": GOOD}))  # given twice
    # The same worker serves the next good request, positional or by keyword.
    for good in (celery_app.send_task(predict, args=[GOOD]), celery_app.send_task(predict, kwargs={"inputs": GOOD})):
        result = good.get(timeout=20)
        assert result["node_id"] == worker.hostname and len(result["outputs"]) == 1
    assert metric_value(scrape(port), "omnimind_bad_inputs_total", task=predict, reason="arguments") == 3
    assert "TypeError" not in worker.output()


def test_training_tasks_with_unknown_or_extra_arguments(start_worker, celery_app, tmp_path):
    port = free_port()
    worker = start_worker("learn-args", queues="training", pool="solo", concurrency=1, OMNIMIND_DATA_DIR=tmp_path,
                          OMNIMIND_METRICS_PORT=port)
    expect_arguments_error(celery_app.send_task("tasks.training.learn",
                                                kwargs={"inputs": GOOD, "targets": 1.0, "weight": 2}))
    expect_arguments_error(celery_app.send_task("tasks.training.retrain", args=[100, "extra"]))
    expect_arguments_error(celery_app.send_task("tasks.training.retrain", kwargs={"windows": 100}))
    learned = celery_app.send_task("tasks.training.learn", kwargs={"inputs": GOOD, "targets": 1.0}).get(timeout=20)
    assert learned["accepted"] == 1 and learned["node_id"] == worker.hostname
    text = scrape(port)
    assert metric_value(text, "omnimind_bad_inputs_total", task="tasks.training.learn", reason="arguments") == 1
    assert metric_value(text, "omnimind_bad_inputs_total", task="tasks.training.retrain", reason="arguments") == 2
