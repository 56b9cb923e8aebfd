"""Raft membership inside a Celery worker: the bootstep (kept thin, as Celery keeps
``worker/consumer/heart.py`` and puts the service in ``worker/heartbeat.py``).

``celery -A omnimind worker -Q training --raft-id n1 --raft-peers n1=h1:7001,n2=h2:7001,n3=h3:7001``
(or ``OMNIMIND_RAFT_ID`` / ``OMNIMIND_RAFT_PEERS``; ``OMNIMIND_RAFT_JOIN=1`` starts a new member that
``omnimind raft add`` then adds to the group; the shared secret comes only
from ``OMNIMIND_RAFT_SECRET``, never the command line, where ``ps`` shows it).

The service is in three modules: ``workers/raft_member.py`` (the member's lifecycle:
its asyncio loop thread, the secret check, leadership), ``workers/raft_schedule.py``
(the coordinator thread that runs the fenced schedule while the member leads: genesis,
drift polling, the pause failpoint) and ``workers/raft_status.py`` (its status key
and metrics). A deposed leader's sends carry an old fence and are refused downstream.
"""
from __future__ import annotations

from celery import bootsteps

from omnimind.config import get_settings
from omnimind.scaling.raft import RaftConfigError
from workers import services
from workers.raft_member import CoordinatorMember, MemberConfig


class RaftStep(bootsteps.StartStopStep):
    """Makes the worker a Raft member when ``--raft-id`` (or ``OMNIMIND_RAFT_ID``) is given."""

    label = "OmniMind raft"

    def __init__(self, worker, raft_id=None, raft_peers=None, raft_data_dir=None, **kwargs):
        settings = get_settings()
        super().__init__(worker, **kwargs)
        member_id = raft_id or settings.raft_id
        self.member: CoordinatorMember | None = None
        if not member_id:
            return
        try:
            config = MemberConfig.build(
                member_id, raft_peers or settings.raft_peers, raft_data_dir or settings.raft_data_dir,
                settings.raft_secret, settings.raft_join,
            )
            self.member = CoordinatorMember(config, worker.app)
        except RaftConfigError as exc:
            raise SystemExit(f"omnimind: cannot start Raft member {member_id!r}: {exc}") from None

    def start(self, worker):
        if self.member is not None:
            try:
                self.member.start()
            except BaseException:
                self.member = None  # it stopped itself; the worker's shutdown must not stop it again
                raise
            services.set_coordinator(self.member)

    def stop(self, worker):
        if self.member is not None:
            services.set_coordinator(None)
            self.member.stop()
            self.member = None

    shutdown = stop
