"""Redis Sentinel URLs: the form OmniMind, kombu and Celery share, and a client that
follows failovers.

One URL names the sentinels, not a server: ``sentinel://[[user]:password@]host:port[/db]``,
several joined by ``;`` (kombu's broker form and Celery's result backend form, so
``OMNIMIND_BROKER_URL``, ``OMNIMIND_RESULT_BACKEND`` and ``OMNIMIND_REDIS_URL`` may all
be the same string). The monitored master's name is not in the URL (kombu and Celery
take it from transport options): it is ``OMNIMIND_SENTINEL_MASTER`` (default
``mymaster``). The database and the password (the master's, not the sentinels') come
from the first address.

>>> url = SentinelURL.parse("sentinel://:s3cret@10.0.0.1:26379/2;sentinel://10.0.0.2")
>>> url.sentinels, url.db, url.password
([('10.0.0.1', 26379), ('10.0.0.2', 26379)], 2, 's3cret')
>>> is_sentinel_url("sentinel://10.0.0.1:26379"), is_sentinel_url("redis://10.0.0.1:6379/0")
(True, False)

:func:`master_client` asks the sentinels where the master is when it connects, and
again after any connection error: a client whose master was killed reconnects to the
promoted replica once the sentinels have promoted it, and one still talking to a
demoted master (READONLY) drops that connection and asks again (redis-py's
``SentinelManagedConnection``). A command that fails meanwhile raises ``ConnectionError``
as on a plain Redis that went away; callers retry as they already do.
"""
from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

import redis
from redis.sentinel import Sentinel

__all__ = ["DEFAULT_MASTER", "DEFAULT_SENTINEL_PORT", "SentinelURL", "is_sentinel_url", "master_client",
           "transport_options"]

SCHEME = "sentinel"
DEFAULT_SENTINEL_PORT = 26379
DEFAULT_MASTER = "mymaster"
#: Seconds to wait for one sentinel before asking the next (a dead sentinel must not stall discovery).
SENTINEL_SOCKET_TIMEOUT = 1.0


def is_sentinel_url(url: str) -> bool:
    return url.partition("://")[0].lower() == SCHEME


@dataclass(frozen=True)
class SentinelURL:
    """The sentinels' addresses and the master's database and credentials, from one URL.

    >>> SentinelURL.parse("sentinel://127.0.0.1:26380").sentinels
    [('127.0.0.1', 26380)]
    """

    sentinels: list[tuple[str, int]]
    db: int = 0
    username: str | None = None
    password: str | None = None

    @classmethod
    def parse(cls, url: str) -> "SentinelURL":
        addresses, db, username, password = [], 0, None, None
        for position, chunk in enumerate(c for c in url.split(";") if c.strip()):
            parts = urlsplit(chunk.strip())
            if parts.scheme.lower() != SCHEME or not parts.hostname:
                raise ValueError(f"a Sentinel URL is sentinel://host:port[/db];sentinel://..., not {chunk!r}")
            addresses.append((parts.hostname, parts.port or DEFAULT_SENTINEL_PORT))
            if position == 0:
                path = parts.path.strip("/")
                db = int(path) if path else 0
                username = unquote(parts.username) if parts.username else None
                password = unquote(parts.password) if parts.password else None
        if not addresses:
            raise ValueError("a Sentinel URL names at least one sentinel")
        return cls(addresses, db, username, password)


def transport_options(url: str, master_name: str) -> dict:
    """What kombu's broker and Celery's result backend need besides a ``sentinel://`` URL.

    >>> transport_options("sentinel://10.0.0.1", "mymaster"), transport_options("redis://10.0.0.1", "mymaster")
    ({'master_name': 'mymaster'}, {})
    """
    return {"master_name": master_name} if is_sentinel_url(url) else {}


def master_client(url: str, master_name: str = DEFAULT_MASTER) -> redis.Redis:
    """A client of the master the sentinels at ``url`` monitor as ``master_name``,
    following failovers (see the module docstring). Connects on first use."""
    parsed = SentinelURL.parse(url)
    credentials = {k: v for k, v in (("username", parsed.username), ("password", parsed.password)) if v}
    sentinel = Sentinel(parsed.sentinels, sentinel_kwargs={"socket_timeout": SENTINEL_SOCKET_TIMEOUT,
                                                           "socket_connect_timeout": SENTINEL_SOCKET_TIMEOUT})
    return sentinel.master_for(master_name, db=parsed.db, **credentials)
