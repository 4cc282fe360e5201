"""Engine supervision: bringing a cluster's engines up, watching them, replacing and stopping them.

The hub hands this room every engine a launcher starts or the registration
socket admits.  It waits for each to answer, has the hub serve it, watches
for its death, and then restarts it (``--restart-engines``) or fails what it
owed; it also does the work of the client requests that start, stop and
restart engines, and knows each engine's state for the hub's status.

It sends nothing itself: what the router decides about an engine that came
or went goes back through the hub (:class:`HubSide`), which owns the sockets.
"""
from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from pathlib import Path
from socket import gethostname
from collections.abc import Callable
from typing import Protocol

from jupyter_client.session import Session

from ..usage import Usage, UsageSampler
from .deadlines import Deadlines
from .engines import EngineLink, EngineStartError, LocalEngine
from .heartbeat import HeartMonitor
from .launchers import LaunchContext, Launcher
from .launchers.local import LocalLauncher
from .registration import RegisteredEngine
from .router import Failure, Router, Routing
from .status import EngineFacts

log = logging.getLogger("pxmagic.hub")


class HubSide(Protocol):
    """What supervision needs of the hub: serving an engine's sockets, and sending what the router decides."""

    def serve_engine(self, engine: EngineLink) -> None: ...

    def unserve_engine(self, engine: EngineLink) -> None: ...

    def route(self, routing: Routing) -> None: ...

    def send_failures(self, failures: list[Failure]) -> None: ...

    def announce(self, engine_id: int, state: str) -> None: ...


class Supervisor:
    """The engines of one cluster, from their start to their end."""

    def __init__(self, hub: HubSide, router: Router, deadlines: Deadlines, session: Session, launcher: Launcher,
                 heart: HeartMonitor, security_dir: Path, start_timeout: float, restart_engines: bool) -> None:
        self.hub = hub
        self.router = router
        self.deadlines = deadlines
        self.session = session
        self.launcher = launcher
        self.heart = heart
        self.security_dir = security_dir
        self.start_timeout = start_timeout
        #: replace an engine that dies by a fresh kernel with the same id
        self.restart_engines = restart_engines
        self.engines: dict[int, EngineLink] = {}
        #: where registered engines' connection files are (set once the registration socket is bound)
        self.registration_dir: Path | None = None
        self.usage = UsageSampler()
        #: what engines on other hosts last said of their memory and CPU
        self.reported_usage: dict[int, Usage] = {}
        self._watchers: dict[int, asyncio.Task] = {}
        self._starting: set[asyncio.Task] = set()
        self._tasks: list[asyncio.Task] = []
        #: engines that did not become ready while the cluster starts (None once it has started)
        self._start_failures: list[BaseException] | None = []

    # -- starting -------------------------------------------------------------
    async def start(self, n: int, context: LaunchContext, registered: Callable[[], int]) -> None:
        """Have the launcher start ``n`` engines; return once ``n`` are ready, or raise why not.

        ``registered`` counts the engines that registered themselves, for the error if too few did.
        """
        deadline = asyncio.get_running_loop().time() + self.start_timeout
        await self.launcher.start(n, context)
        self._tasks.append(asyncio.create_task(self._watch_launcher()))
        while len(self.router.load) < n:
            if self._start_failures:
                raise self._start_failures[0]
            if self.launcher.end_reason is not None:
                raise EngineStartError(f"the engines' {self.launcher.label} job ended before they were all "
                                       f"ready ({len(self.router.load)} of {n}): engines "
                                       f"{self.launcher.end_reason}; the hub log has their output")
            if asyncio.get_running_loop().time() > deadline:
                raise EngineStartError(f"only {len(self.router.load)} of {n} engines were ready within "
                                       f"{self.start_timeout:.0f} s ({registered()} registered)")
            await asyncio.sleep(0.05)
        self._start_failures = None

    def admit(self, engine: EngineLink) -> None:
        """Connect to a started or registered engine and serve it once it answers."""
        self.engines[engine.id] = engine
        if isinstance(engine, RegisteredEngine):
            self.heart.add(engine.id, engine.heartbeat_url, engine.mark_dead, engine.curve_serverkey)
        task = asyncio.create_task(self._make_ready(engine))
        self._starting.add(task)
        task.add_done_callback(self._starting.discard)

    async def _make_ready(self, engine: EngineLink) -> None:
        try:
            await engine.wait_ready(self.session, self.start_timeout)
        except Exception as error:
            log.error("%s", error)
            if self._start_failures is not None:
                self._start_failures.append(error)
            if not engine.restartable:  # a local engine stays, for shutdown (or a restart) to stop it
                self._forget(engine)
            return
        if self.engines.get(engine.id) is engine:
            self._serve(engine)

    def _serve(self, engine: EngineLink) -> None:
        self.hub.route(self.router.add_engine(engine.id))
        self.hub.serve_engine(engine)
        self._watchers[engine.id] = asyncio.create_task(self._watch_engine(engine))
        self.hub.announce(engine.id, "registered")

    async def start_more(self, n: object) -> list[int]:
        """Add ``n`` local kernels, with the lowest ids not in use; return their ids once all are ready."""
        if not isinstance(self.launcher, LocalLauncher):
            raise EngineStartError(f"the engines of a {self.launcher.label} cluster come and go with their job: "
                                   "only a local cluster adds engines one by one")
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"start_engines takes a number of engines, 1 or more, not {n!r}")
        ids = list(itertools.islice((i for i in itertools.count() if i not in self.engines), n))
        started = await asyncio.gather(*(self._start_local_engine(i) for i in ids), return_exceptions=True)
        failed = [error for error in started if isinstance(error, BaseException)]
        if failed:
            raise EngineStartError(f"{len(failed)} of {n} engines did not start: {failed[0]}")
        return ids

    async def _start_local_engine(self, engine_id: int) -> LocalEngine:
        engine = await LocalEngine.start(engine_id, self.session, self.security_dir, self.launcher.kernel_name)
        self.engines[engine_id] = engine
        try:
            await engine.wait_ready(self.session, self.start_timeout)
        except BaseException:
            del self.engines[engine_id]
            await engine.shutdown()
            raise
        self._serve(engine)
        return engine

    # -- deaths, restarts and stops ---------------------------------------------
    async def _watch_engine(self, engine: EngineLink) -> None:
        reason = await engine.until_dead()
        log.error("engine %d %s", engine.id, reason)
        self.deadlines.forget_engine(engine.id)
        if self.restart_engines and engine.restartable:
            self.hub.route(self.router.restart_engine(engine.id, reason))
            with contextlib.suppress(Exception):  # _replace logged it; the engine stays gone
                await self._replace(engine)
            return
        routing = self.router.remove_engine(engine.id, reason)
        if isinstance(engine, RegisteredEngine):  # it may only be frozen: it must not run this work later
            owed = [f.parent for f in routing.failures if f.engine_id == engine.id] + [r.parent for r in routing.retries]
            engine.let_go(self.session, [parent["msg_id"] for parent in owed])
        self.hub.route(routing)
        self.hub.announce(engine.id, "dead")
        if not engine.restartable:
            self._watchers.pop(engine.id, None)
            self._forget(engine)

    async def _watch_launcher(self) -> None:
        """When the launched job ends by itself, its engines are gone with it."""
        reason = await self.launcher.wait_ended()
        self._mark_job_dead(reason)

    def _mark_job_dead(self, reason: str) -> None:
        for engine in list(self.engines.values()):
            if engine.id in self.launcher.job_engine_ids and isinstance(engine, RegisteredEngine):
                engine.mark_dead(reason)

    def stop_stuck_job(self, stuck: list[int]) -> None:
        """Interrupted engines did not stop: their work fails now, and their whole job is stopped."""
        stuck = [e for e in stuck if e in self.launcher.job_engine_ids and e in self.router.load]
        if not stuck:
            return
        reason = self.launcher.stuck_reason(stuck)
        log.error("engines %s did not stop on an interrupt: stopping their job", stuck)
        self._mark_job_dead(reason)
        self._tasks.append(asyncio.create_task(self.launcher.stop_job()))

    async def restart(self, engine_id: object) -> None:
        """Replace an engine (alive or dead) by a fresh kernel with the same id."""
        engine = self.engines.get(engine_id) if isinstance(engine_id, int) else None
        if engine is None:
            raise IndexError(f"no engine {engine_id!r}: engines are {sorted(self.engines)}")
        if not engine.restartable:
            raise EngineStartError(f"engine {engine_id} registered itself (from {getattr(engine, 'host', '?')}); "
                                   "the hub did not start it and cannot restart it (MPI ranks restart only with "
                                   "their whole job: stop and start the cluster)")
        self._watchers.pop(engine.id).cancel()
        self.hub.route(self.router.restart_engine(engine.id, "was restarted"))
        await self._replace(engine)

    async def _replace(self, engine: EngineLink) -> None:
        """Start a fresh kernel in place of ``engine``, whose running work has already been failed.

        Requests for it wait in the router meanwhile; if it does not come back, they fail.
        """
        self.hub.announce(engine.id, "restarting")
        self.hub.unserve_engine(engine)
        try:
            fresh = await engine.restart(self.session, self.start_timeout)
        except Exception as error:
            log.exception("engine %d did not restart", engine.id)
            self.hub.send_failures(self.router.restart_failed(engine.id, f"did not restart: {error}"))
            self.hub.announce(engine.id, "dead")
            raise
        self.engines[engine.id] = fresh
        self._serve(fresh)
        log.info("engine %d restarted", engine.id)

    async def stop(self, engine_ids: object) -> None:
        """Stop some local engines for good: their work fails, their ids are free for new engines."""
        if not isinstance(engine_ids, list) or not all(type(i) is int for i in engine_ids):
            raise ValueError(f"stop_engines takes a list of engine ids, not {engine_ids!r}")
        missing = [i for i in engine_ids if i not in self.engines]
        if missing:
            raise IndexError(f"no engine {missing[0]}: engines are {sorted(self.engines)}")
        other = [i for i in engine_ids if not isinstance(self.engines[i], LocalEngine)]
        if other:
            raise EngineStartError(f"engine {other[0]} registered itself: the hub did not start it and cannot "
                                   "stop it alone (stop the cluster)")
        engines = [self.engines[i] for i in dict.fromkeys(engine_ids)]
        for engine in engines:
            watcher = self._watchers.pop(engine.id, None)
            if watcher is not None:
                watcher.cancel()
            self.deadlines.forget_engine(engine.id)
            if engine.id in self.router.load:
                self.hub.route(self.router.remove_engine(engine.id, "was stopped"))
            self._forget(engine)
            self.hub.announce(engine.id, "dead")
        await asyncio.gather(*(engine.shutdown() for engine in engines), return_exceptions=True)

    def _forget(self, engine: EngineLink) -> None:
        """Let go of an engine that cannot come back (registered engines are not restarted)."""
        self.heart.discard(engine.id)
        self.reported_usage.pop(engine.id, None)
        if self.engines.get(engine.id) is engine:
            del self.engines[engine.id]
        self.hub.unserve_engine(engine)
        engine.close_sockets()
        if isinstance(engine, RegisteredEngine) and self.registration_dir is not None:
            engine.remove_connection_file(self.registration_dir)

    async def shutdown(self) -> None:
        """Stop watching, and stop every engine and the launcher's job."""
        for task in [*self._tasks, *self._watchers.values(), *self._starting]:
            task.cancel()
        self.heart.close()
        by_class: dict[type[EngineLink], list[EngineLink]] = {}
        for engine in self.engines.values():
            by_class.setdefault(type(engine), []).append(engine)
        await asyncio.gather(*(kind.shutdown_all(engines, self.session) for kind, engines in by_class.items()),
                             return_exceptions=True)
        for engine in self.engines.values():
            if isinstance(engine, RegisteredEngine) and self.registration_dir is not None:
                engine.remove_connection_file(self.registration_dir)
        await self.launcher.stop()

    # -- what the status shows ----------------------------------------------------
    def facts(self, now: float) -> list[EngineFacts]:
        """Each engine's kind, host, process, state, last heartbeat (at monotonic time ``now``) and use."""
        facts = [self._engine_facts(engine, now) for engine in self.engines.values()]
        self.usage.forget({f.pid for f in facts if f.pid is not None})
        return facts

    def _engine_facts(self, engine: EngineLink, now: float) -> EngineFacts:
        watcher = self._watchers.get(engine.id)
        if engine.id in self.router.restarting:
            lifecycle = "restarting"
        elif engine.id in self.router.load:
            lifecycle = "up"
        else:
            lifecycle = "dead" if watcher is not None and watcher.done() else "starting"
        if isinstance(engine, LocalEngine):
            kind, host, same_host = "local", gethostname(), True
        else:
            kind = self.launcher.label if engine.id in self.launcher.job_engine_ids else "registered"
            host, same_host = getattr(engine, "host", "?"), engine.shares_memory
        if lifecycle == "dead":
            usage = None
        else:
            usage = self.usage.sample(engine.pid) if same_host else self.reported_usage.get(engine.id)
        last = self.heart.last_answer(engine.id)
        return EngineFacts(engine.id, kind, host, engine.pid, lifecycle, None if last is None else now - last, usage)
