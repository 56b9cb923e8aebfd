"""PySyncObj benchmark, the cluster: the member process (run as `raft_pysyncobj.py --member`) and
the parent's Member and Cluster handles on three of them."""
from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from harness import free_port, wait_until

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "benchmarks" / "raft_pysyncobj.py"  # its --member flag runs member_main
MEMBERS = ("m1", "m2", "m3")


# --------------------------------------------------------------------------------------------------------
# member process
# --------------------------------------------------------------------------------------------------------

def member_main(args) -> int:
    from pysyncobj import SyncObj, SyncObjConf, replicated

    out_lock = threading.Lock()

    def emit(kind, **fields):
        fields.update(ev=kind, t=time.time())
        line = json.dumps(fields)
        with out_lock:
            sys.stdout.write(line + "\n")
            sys.stdout.flush()

    def on_state(old, new):
        emit("state", old=old, new=new)

    class Counter(SyncObj):
        def __init__(self, self_addr, peers, conf):
            self.value = 0
            super().__init__(self_addr, peers, conf)

        @replicated
        def incr(self):
            self.value += 1
            return self.value

    conf_kwargs = json.loads(args.conf)
    conf = SyncObjConf(onStateChanged=on_state, **conf_kwargs)
    obj = Counter(args.self_addr, args.peers.split(","), conf)
    # Constructed, not yet connected (the tick thread first sleeps 0.1 s): what was reloaded from disk.
    emit("start", term=obj.raftCurrentTerm, voted_for=obj._SyncObj__votedForNodeId,
         log_len=obj._getRaftLogSize(), pid=os.getpid())

    def poll():
        last = None
        others = sorted(obj.otherNodes, key=lambda n: n.id)
        last_conn_check = 0.0
        conn = ()
        while True:
            now = time.monotonic()
            if now - last_conn_check > 0.01:
                conn = tuple(n.id for n in others if obj.isNodeConnected(n))
                last_conn_check = now
            leader = obj._getLeader()
            view = (leader.id if leader is not None else None, obj.raftCurrentTerm, obj._isLeader(), conn,
                    obj.isReady())
            if view != last:
                emit("view", leader=view[0], term=view[1], is_leader=view[2], connected=list(view[3]),
                     ready=view[4])
                last = view
            time.sleep(0.001)

    threading.Thread(target=poll, daemon=True).start()

    for line in sys.stdin:
        cmd = line.split()
        if not cmd:
            continue
        if cmd[0] == "bench":
            n, warmup = int(cmd[1]), int(cmd[2])
            samples, errors = [], 0
            for i in range(warmup + n):
                t0 = time.perf_counter()
                try:
                    obj.incr(sync=True, timeout=10)
                except Exception:  # SyncObjException: timeout or fail reason
                    errors += 1
                    continue
                if i >= warmup:
                    samples.append((time.perf_counter() - t0) * 1000)
            t0 = time.perf_counter()
            for _ in range(200):  # throughput with PySyncObj's own batching: async calls, wait for the last
                obj.incr()
            obj.incr(sync=True, timeout=30)
            tput = 201 / (time.perf_counter() - t0)
            emit("bench", samples_ms=samples, errors=errors, value=obj.value, async_commits_per_s=tput)
        elif cmd[0] == "quit":
            break
    obj.destroy()
    return 0


# --------------------------------------------------------------------------------------------------------
# parent
# --------------------------------------------------------------------------------------------------------

class Member:
    def __init__(self, name, addr, peers, conf, events):
        self.name, self.addr, self.peers, self.conf, self.events = name, addr, peers, conf, events
        self.proc = None
        self.view = None  # latest "view" event
        self.start_event = None
        self.alive = False

    def start(self):
        self.view, self.start_event = None, None
        self.proc = subprocess.Popen(
            [sys.executable, str(SCRIPT), "--member", "--self-addr", self.addr, "--peers", ",".join(self.peers),
             "--conf", json.dumps(self.conf)],
            cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
            bufsize=1, start_new_session=True,
        )
        self.alive = True
        proc = self.proc

        def reader():
            for line in proc.stdout:
                try:
                    ev = json.loads(line)
                except ValueError:
                    continue
                ev["member"] = self.name
                ev["gen"] = id(proc)
                if proc is self.proc:
                    if ev["ev"] == "view":
                        self.view = ev
                    elif ev["ev"] == "start":
                        self.start_event = ev
                self.events.put(ev)

        threading.Thread(target=reader, daemon=True).start()

    def signal(self, sig):
        try:
            os.killpg(self.proc.pid, sig)
        except ProcessLookupError:
            pass

    def kill(self):
        self.signal(signal.SIGKILL)
        self.proc.wait()
        self.alive = False

    def send(self, text):
        self.proc.stdin.write(text + "\n")
        self.proc.stdin.flush()


class Cluster:
    def __init__(self, conf):
        ports = [free_port() for _ in MEMBERS]
        addrs = {m: f"127.0.0.1:{p}" for m, p in zip(MEMBERS, ports)}
        self.events: queue.Queue = queue.Queue()
        self.members = {m: Member(m, addrs[m], [addrs[o] for o in MEMBERS if o != m], conf, self.events)
                        for m in MEMBERS}
        self.by_addr = {addrs[m]: m for m in MEMBERS}

    def start(self):
        for m in self.members.values():
            m.start()

    def settled(self):
        """All three alive, connected to both peers, agreeing on one leader and term; returns the leader."""
        views = [m.view for m in self.members.values()]
        if not all(m.alive for m in self.members.values()) or any(v is None for v in views):
            return None
        if {(v["leader"], v["term"]) for v in views}.__len__() != 1 or views[0]["leader"] is None:
            return None
        if any(len(v["connected"]) != 2 or not v["ready"] for v in views):
            return None
        leader = self.members[self.by_addr[views[0]["leader"]]]
        return leader if leader.view["is_leader"] else None

    def wait(self, predicate, timeout):
        try:
            return wait_until(predicate, timeout=timeout, interval=0.005, message="condition")
        except AssertionError:  # the harness's timeout; the callers here catch TimeoutError
            raise TimeoutError("condition not met") from None

    def drain(self):
        out = []
        while True:
            try:
                out.append(self.events.get_nowait())
            except queue.Empty:
                return out

    def stop(self):
        for m in self.members.values():
            if m.proc is not None and m.proc.poll() is None:
                m.signal(signal.SIGKILL)
        for m in self.members.values():
            if m.proc is not None:
                try:
                    m.proc.wait(10)
                except subprocess.TimeoutExpired:
                    pass
