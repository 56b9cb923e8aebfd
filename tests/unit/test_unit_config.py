import pytest

from omnimind import config
from omnimind.config import Settings
from omnimind.errors import ConfigError


def test_drift_methods_match_the_learning_core():
    from omnimind.learning import DRIFT_METHODS

    assert tuple(config.DRIFT_METHODS) == tuple(DRIFT_METHODS)


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
