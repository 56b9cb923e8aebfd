"""Unit tests of the log formatters and of how they are hooked into Celery."""
from __future__ import annotations

import io
import json
import logging

import pytest
from celery import Celery, signals
from celery.app import trace
from celery.utils.log import get_task_logger

from omnimind.config import Settings
from omnimind.errors import ConfigError
from omnimind.observability.logging import ConsoleFormatter, JsonFormatter, connect, make_formatter


def _record(msg="hello %s", args=("world",), level=logging.INFO, name="omnimind.test", exc_info=None, **extra):
    record = logging.LogRecord(name, level, __file__, 10, msg, args, exc_info)
    record.__dict__.update(extra)
    return record


def _json(record, node="node-1"):
    line = JsonFormatter(node_id=lambda: node).format(record)
    assert "\n" not in line
    return json.loads(line)


def test_json_line_has_the_core_fields():
    obj = _json(_record())
    assert obj["level"] == "INFO" and obj["logger"] == "omnimind.test"
    assert obj["message"] == "hello world" and obj["event"] == "hello %s"
    assert obj["node_id"] == "node-1" and isinstance(obj["pid"], int)
    assert obj["ts"].endswith("Z") and "T" in obj["ts"]
    assert "task_id" not in obj and "model_version" not in obj  # only where relevant


def test_json_exception_stays_on_one_line():
    try:
        raise ValueError("boom\nsecond line")
    except ValueError:
        import sys

        obj = _json(_record("failed", (), logging.ERROR, exc_info=sys.exc_info()))
    assert "ValueError: boom" in obj["exc"] and "Traceback" in obj["exc"]


def test_extra_fields_win():
    obj = _json(_record(event="model_swapped", model_version=7, task_id="t-9", task_name="tasks.x", queue="training"))
    assert (obj["event"], obj["model_version"], obj["task_id"], obj["task_name"], obj["queue"]) == (
        "model_swapped", 7, "t-9", "tasks.x", "training")


def test_celery_lifecycle_lines_carry_the_task():
    received = _record(trace.LOG_RECEIVED, ({"id": "abc", "name": "tasks.inference.predict", "args": "()",
                                              "kwargs": "{}", "eta": None},), name="celery.worker.strategy")
    obj = _json(received)
    assert (obj["event"], obj["task_id"], obj["task_name"]) == ("task_received", "abc", "tasks.inference.predict")
    assert obj["message"] == "Task tasks.inference.predict[abc] received"
    failed = _record(trace.LOG_FAILURE.strip(), ({"id": "f1", "name": "tasks.y", "description": "raised unexpected",
                                                    "exc": "KeyError()"},), logging.ERROR)
    assert _json(failed)["event"] == "task_failed"
    not_a_task = _record("%(id)s then %(name)s", ({"id": "x", "name": "y"},))
    assert "task_id" not in _json(not_a_task)  # a dict argument alone does not make a task line


def test_lines_logged_inside_a_running_task_carry_its_id_and_name():
    # A unit test of the formatter: apply() runs the task in this process (no broker
    # involved); the farm's own JSON log lines are checked with real workers elsewhere.
    app = Celery("obs-formatter-test", set_as_current=False)
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter(node_id=lambda: "node-x"))
    task_logger = get_task_logger("tests.obs.formatter")
    task_logger.addHandler(handler)
    task_logger.setLevel(logging.INFO)
    try:

        @app.task(name="tests.obs.log_something", shared=False)
        def log_something():
            task_logger.info("working on %d items", 3)

        result = log_something.apply()
        task_logger.info("outside any task")
    finally:
        task_logger.removeHandler(handler)
    inside, outside = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert inside["task_id"] == result.id and inside["task_name"] == "tests.obs.log_something"
    assert inside["message"] == "working on 3 items" and inside["node_id"] == "node-x"
    assert "task_id" not in outside


def test_console_format_is_readable_and_names_node_and_task():
    plain = ConsoleFormatter(node_id=lambda: "n1").format(_record())
    assert plain.startswith("[") and "INFO/" in plain and plain.endswith("n1 omnimind.test: hello world")
    in_task = ConsoleFormatter(node_id=lambda: "n1").format(
        _record("step done", (), task_id="t-1", task_name="tasks.z", model_version=4))
    assert "n1 omnimind.test tasks.z[t-1] v4: step done" in in_task
    # Celery's lifecycle lines already name the task: not repeated.
    line = ConsoleFormatter(node_id=lambda: "n1").format(
        _record(trace.LOG_RECEIVED, ({"id": "abc", "name": "tasks.q", "args": "", "kwargs": "", "eta": None},)))
    assert line.count("abc") == 1


def test_make_formatter_rejects_unknown_formats():
    assert isinstance(make_formatter("console"), ConsoleFormatter)
    with pytest.raises(ValueError):
        make_formatter("xml")


def test_log_format_setting_is_validated():
    assert Settings.from_env({}).log_format == "console"
    assert Settings.from_env({"OMNIMIND_LOG_FORMAT": " JSON "}).log_format == "json"
    with pytest.raises(ConfigError, match="OMNIMIND_LOG_FORMAT"):
        Settings.from_env({"OMNIMIND_LOG_FORMAT": "xml"})


def test_connect_formats_the_loggers_celery_sets_up():
    from omnimind.config import settings

    root, task = logging.getLogger("tests.obs.fake_root"), logging.getLogger("tests.obs.fake_task")
    for lg in (root, task):
        lg.addHandler(logging.StreamHandler(io.StringIO()))

    class FakeWorker:
        quiet = False

    worker = FakeWorker()
    try:
        connect("json")
        signals.after_setup_logger.send(sender=None, logger=root, loglevel=20, logfile=None, format="", colorize=False)
        signals.after_setup_task_logger.send(sender=None, logger=task, loglevel=20, logfile=None, format="",
                                             colorize=False)
        signals.celeryd_init.send(sender="w@h", instance=worker, conf=None, options={})
        assert all(isinstance(h.formatter, JsonFormatter) for lg in (root, task) for h in lg.handlers)
        assert worker.quiet is True  # no plain-text banner among the JSON lines
        connect("console")  # a later call replaces the format
        signals.after_setup_logger.send(sender=None, logger=root, loglevel=20, logfile=None, format="", colorize=False)
        assert all(isinstance(h.formatter, ConsoleFormatter) for h in root.handlers)
        worker.quiet = False
        signals.celeryd_init.send(sender="w@h", instance=worker, conf=None, options={})
        assert worker.quiet is False
    finally:
        connect(settings.log_format)
        for lg in (root, task):
            lg.handlers.clear()
