"""Every Redis key OmniMind writes, in one place.

Celery's own broker/result keys are Celery's business; these are OmniMind's.
``PREFIX`` namespaces them so a farm can share a Redis with other software.
"""
from __future__ import annotations

PREFIX = "omnimind"

#: ZSET node_id -> last heartbeat (Redis server time, seconds).
NODES = f"{PREFIX}:nodes"
#: SET of every capability ever registered (lets pruning find capability sets).
CAPABILITIES = f"{PREFIX}:capabilities"
#: STREAM of accepted feedback samples (the experience window retraining reads).
EXPERIENCE = f"{PREFIX}:experience"


def node(node_id: str) -> str:
    """HASH describing one node.

    >>> node("inference@host")
    'omnimind:node:inference@host'
    """
    return f"{PREFIX}:node:{node_id}"


def capability(name: str) -> str:
    """SET of node ids that have a capability.

    >>> capability("inference")
    'omnimind:capability:inference'
    """
    return f"{PREFIX}:capability:{name}"


# kombu's Redis transport keeps one list per queue and priority step.
_KOMBU_PRIORITY_SEP = "\x06\x16"
_KOMBU_PRIORITY_STEPS = (0, 3, 6, 9)


def broker_queue_lists(queue: str) -> list[str]:
    """The Redis lists holding a Celery queue's waiting messages.

    >>> broker_queue_lists("inference")[:2]
    ['inference', 'inference\\x06\\x163']
    """
    return [queue if step == 0 else f"{queue}{_KOMBU_PRIORITY_SEP}{step}" for step in _KOMBU_PRIORITY_STEPS]


#: STREAM of concept-drift events from learners (the coordinator's early-retrain trigger).
DRIFT_EVENTS = f"{PREFIX}:drift"


def learner_status(node_id: str) -> str:
    """STRING (JSON) summary of a training worker's online learner.

    >>> learner_status("training@host")
    'omnimind:learner:training@host'
    """
    return f"{PREFIX}:learner:{node_id}"


def learner_status_pattern() -> str:
    return f"{PREFIX}:learner:*"


def fence(resource: str) -> str:
    """HASH ``term``/``index``: the newest fencing token a resource has accepted.

    >>> fence("schedule")
    'omnimind:fence:schedule'
    """
    return f"{PREFIX}:fence:{resource}"


def fence_pattern() -> str:
    """SCAN pattern matching every fence key (schedule entries, model stores)."""
    return f"{PREFIX}:fence:*"


def model_fence(name: str) -> str:
    """The fence of a model store (a :func:`fence` key, resource ``model:<name>``).

    >>> model_fence("default")
    'omnimind:fence:model:default'
    """
    return fence(f"model:{name}")


def model_active(name: str) -> str:
    """STRING: the active version number of a model (the source of truth workers poll).

    >>> model_active("default")
    'omnimind:model:default:active'
    """
    return f"{PREFIX}:model:{name}:active"


def model_seq(name: str) -> str:
    """STRING: the last version number assigned (INCR; never goes back, even on rollback).

    >>> model_seq("default")
    'omnimind:model:default:seq'
    """
    return f"{PREFIX}:model:{name}:seq"


def model_blob(name: str, version: int | str) -> str:
    """STRING: the safetensors bytes of one retained version (``version=""`` gives the prefix).

    >>> model_blob("default", 7)
    'omnimind:model:default:blob:7'
    """
    return f"{PREFIX}:model:{name}:blob:{version}"


def model_staging(name: str, token: str) -> str:
    """STRING with a TTL: weights uploaded by a publish, renamed into place by its script.

    >>> model_staging("default", "3f2a")
    'omnimind:model:default:staging:3f2a'
    """
    return f"{PREFIX}:model:{name}:staging:{token}"


def model_meta(name: str) -> str:
    """HASH version -> JSON metadata of every retained version.

    >>> model_meta("default")
    'omnimind:model:default:meta'
    """
    return f"{PREFIX}:model:{name}:meta"


def model_updates(name: str) -> str:
    """Pub/sub channel of a model's update notices (a hint; :func:`model_active` is the truth).

    >>> model_updates("default")
    'omnimind:model:default:updates'
    """
    return f"{PREFIX}:model:{name}:updates"


def schedule_slot(entry: str, slot: int) -> str:
    """STRING set once when a scheduled slot is accepted by its consumer.

    >>> schedule_slot("retrain", 12)
    'omnimind:schedule:retrain:slot:12'
    """
    return f"{PREFIX}:schedule:{entry}:slot:{slot}"


def schedule_fence(entry: str) -> str:
    """HASH with the newest fencing token accepted for a schedule entry.

    >>> schedule_fence("retrain")
    'omnimind:fence:schedule:retrain'
    """
    return fence(f"schedule:{entry}")


def schedule_accepted(entry: str) -> str:
    """STREAM of accepted dispatches of a schedule entry (slot, fence), newest last."""
    return f"{PREFIX}:schedule:{entry}:accepted"


def raft_member(member_id: str) -> str:
    """STRING (JSON) status of a Raft member, refreshed while it runs.

    >>> raft_member("n1")
    'omnimind:raft:member:n1'
    """
    return f"{PREFIX}:raft:member:{member_id}"


def raft_member_pattern() -> str:
    return f"{PREFIX}:raft:member:*"


#: LIST of signed membership change requests (``omnimind raft add|remove``); the leading member pops them.
RAFT_MEMBERSHIP_REQUESTS = f"{PREFIX}:raft:membership:requests"


def raft_membership_result(request_id: str) -> str:
    """STRING (JSON) with a TTL: the outcome of one membership change request, which the CLI waits for.

    >>> raft_membership_result("5f0c")
    'omnimind:raft:membership:result:5f0c'
    """
    return f"{PREFIX}:raft:membership:result:{request_id}"


def model_receipt(name: str, token: str) -> str:
    """STRING with a TTL: the version a publish (identified by its upload token) committed,
    so that a client retry after a lost reply does not publish the same weights twice.

    >>> model_receipt("default", "3f2a")
    'omnimind:model:default:receipt:3f2a'
    """
    return f"{PREFIX}:model:{name}:receipt:{token}"


def learn_done(task_id: str) -> str:
    """STRING (JSON outcome, with a TTL) marking that a ``learn`` task's feedback was
    learned and recorded: its redelivery is answered from here, not learned again.

    >>> learn_done("5b7e")
    'omnimind:learn-done:5b7e'
    """
    return f"{PREFIX}:learn-done:{task_id}"


def model_served(name: str) -> str:
    """HASH node id -> JSON: the version each serving process reported it serves
    (``omnimind.models.metadata.ServedVersion``), to show mixed versions in ``omnimind status``.

    >>> model_served("default")
    'omnimind:model:default:served'
    """
    return f"{PREFIX}:model:{name}:served"


#: ZSET holder -> last stamp (Redis server time) of every worker incarnation that takes
#: messages from a Redis broker (``omnimind.redelivery``). Lives in the *broker's* Redis.
BROKER_HOLDERS = f"{PREFIX}:broker:holders"


def broker_held(holder: str) -> str:
    """SET of the delivery tags a worker incarnation holds unacked, written in the same
    pipeline as kombu's own ``unacked`` entry (in the broker's Redis).

    >>> broker_held("inference@host/3f2a")
    'omnimind:broker:held:inference@host/3f2a'
    """
    return f"{PREFIX}:broker:held:{holder}"


def broker_restore_lease(holder: str) -> str:
    """STRING with a TTL: the one worker restoring a dead holder's messages.

    >>> broker_restore_lease("inference@host/3f2a")
    'omnimind:broker:restoring:inference@host/3f2a'
    """
    return f"{PREFIX}:broker:restoring:{holder}"


def broker_doorbell(queue: str) -> str:
    """LIST of wake-up tokens, one pushed with each message sent to ``queue`` (capped): idle
    workers block on it, then take the message itself atomically (``omnimind.redelivery``).

    >>> broker_doorbell("inference")
    'omnimind:broker:doorbell:inference'
    """
    return f"{PREFIX}:broker:doorbell:{queue}"


def keyspace_channel(db: int, key: str) -> str:
    """Pub/sub channel of Redis's keyspace events (``notify-keyspace-events`` ``K``) of ``key``
    in database ``db``: idle workers subscribe to their queue lists' (``omnimind.redelivery``).

    >>> keyspace_channel(0, "inference")
    '__keyspace@0__:inference'
    """
    return f"__keyspace@{db}__:{key}"
