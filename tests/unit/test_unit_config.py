import re
from dataclasses import fields
from pathlib import Path

import pytest

from omnimind import config
from omnimind.config import Settings
from omnimind.errors import ConfigError


@pytest.mark.parametrize("method", config.DRIFT_METHODS)
def test_every_drift_method_the_settings_accept_builds_a_detector(method):
    from omnimind.learning import ConceptDriftDetector

    assert ConceptDriftDetector(method=method).method == method
    assert Settings.from_env({"OMNIMIND_DRIFT_METHOD": method}).drift_method == method


def test_the_learning_core_refuses_a_drift_method_the_settings_refuse():
    from omnimind.learning import ConceptDriftDetector

    with pytest.raises(ValueError):
        ConceptDriftDetector(method="magic")


def test_every_field_but_limits_has_one_variable_of_its_own():
    variables = [f.metadata["env"] for f in fields(Settings) if "env" in f.metadata]
    assert len(variables) == len(set(variables))
    assert {f.name for f in fields(Settings) if "env" not in f.metadata} == {"limits"}


def test_no_module_reads_an_omnimind_variable_but_the_config():
    """An ``OMNIMIND_*`` name looked up in a mapping anywhere but omnimind/config.py fails: settings
    are read in one place (a launcher names a variable it sets with ``config.variable``)."""
    root = Path(__file__).resolve().parents[2]
    # os.environ[...], os.getenv(...), and .get/.pop/.setdefault or [...] of a literal name on any mapping.
    read = re.compile(r"(\.get|\.pop|\.setdefault|getenv)\(\s*f?[\"']OMNIMIND_|\[\s*f?[\"']OMNIMIND_")
    offenders = [
        f"{path.relative_to(root)}:{number}"
        for package in ("omnimind", "workers", "tasks")
        for path in sorted((root / package).rglob("*.py"))
        if path != root / "omnimind" / "config.py"
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if read.search(line)
    ]
    assert offenders == []


@pytest.mark.parametrize(
    "env, message",
    [
        ({"OMNIMIND_MAX_BATCH_SIZE": "many"}, "OMNIMIND_MAX_BATCH_SIZE must be an integer"),
        ({"OMNIMIND_HEARTBEAT_INTERVAL": "0"}, "at least"),
        ({"OMNIMIND_VISIBILITY_TIMEOUT": "30"}, "must exceed the longest hard time limit"),
        ({"OMNIMIND_INFERENCE_SOFT_TIME_LIMIT": "90"}, "must be below the hard limit"),
        ({"OMNIMIND_DEVICE": "tpu"}, "OMNIMIND_DEVICE"),
        ({"OMNIMIND_TASK_EVENTS": "maybe"}, "boolean"),
        ({"OMNIMIND_LEARNING_LOSS": "hinge"}, "OMNIMIND_LEARNING_LOSS"),
        ({"OMNIMIND_DRIFT_METHOD": "magic"}, "OMNIMIND_DRIFT_METHOD"),
        ({"OMNIMIND_CHALLENGER_PUBLISH": "always"}, "OMNIMIND_CHALLENGER_PUBLISH"),
        ({"OMNIMIND_RAFT_HEARTBEAT_MS": "200"}, "OMNIMIND_RAFT_ timings"),
        # A head and what it is declared with must fit together: refused at settings time.
        ({"OMNIMIND_MODEL_HEAD": "binary", "OMNIMIND_LEARNING_LOSS": "mse"}, "does not fit a binary head"),
        ({"OMNIMIND_MODEL_HEAD": "binary", "OMNIMIND_MODEL_LABELS": "a,b,c"}, "two labels"),
        ({"OMNIMIND_CHALLENGER_METRIC": "error_rate"}, "OMNIMIND_CHALLENGER_METRIC=error_rate"),
        ({"OMNIMIND_MODEL_LABEL_POLICY": "maybe"}, "OMNIMIND_MODEL_LABEL_POLICY"),
    ],
)
def test_bad_settings_name_the_variable(env, message):
    with pytest.raises(ConfigError, match=message):
        Settings.from_env(env)


def test_defaults_are_consistent():
    s = Settings.from_env({})
    assert s.broker_url == s.result_backend == s.redis_url
    assert all(limit.soft < limit.hard < s.visibility_timeout for limit in s.limits.values())


def test_a_rabbitmq_broker_needs_a_redis_for_omnimind_keys():
    with pytest.raises(ConfigError, match="OMNIMIND_REDIS_URL must be a redis://"):
        Settings.from_env({"OMNIMIND_BROKER_URL": "amqp://guest:secret@rabbit:5672//"})
    s = Settings.from_env({"OMNIMIND_BROKER_URL": "amqp://rabbit//", "OMNIMIND_REDIS_URL": "redis://r:6379/2"})
    assert s.broker_is_amqp and s.result_backend == s.redis_url == "redis://r:6379/2"
    s = Settings.from_env({"OMNIMIND_BROKER_URL": "amqp://rabbit//", "OMNIMIND_REDIS_URL": "redis://r:6379/2",
                           "OMNIMIND_RESULT_BACKEND": "redis://r:6379/1"})
    assert s.result_backend == "redis://r:6379/1"
    # A Redis broker: results on the broker unless told otherwise, as always.
    s = Settings.from_env({"OMNIMIND_BROKER_URL": "redis://b:6379/0", "OMNIMIND_REDIS_URL": "redis://r:6379/2"})
    assert not s.broker_is_amqp and s.result_backend == "redis://b:6379/0"
