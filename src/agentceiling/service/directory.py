"""Read-side cache of the control plane's objects for the authorization endpoint.

Everything is memoised per key and thrown away as a whole when the database's generation counter
moves (every control-plane write bumps it in its own transaction). A poller reads the counter every
``poll_interval`` seconds, so a change made through any replica is enforced by every replica within
about that interval (the design target is 1 s; the default poll is 0.25 s).

The counter is compared for equality, not order, and the cache is tagged with a *view* number of
this process's own that changes whenever the counter is seen to change in either direction, or is
read again after a failed read. A database restored from a backup, or a failover to a standby that
lost the last commits, takes the counter back; new writes then take it up to numbers this replica
has cached under, with other contents: under a new view, nothing cached before is reused.

Fail closed: the cache is only used while the counter was read successfully within
``max_staleness`` seconds (1 s by default). When the poller is merely late, the deciding thread
reads the counter itself; when the read fails or hangs (the database is down or cut off), the
directory is stale and :meth:`ensure_fresh` raises :class:`StaleDirectory`, so that a replica cut
off from the database refuses rather than keep honouring what may have been revoked."""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar, cast

from agentceiling.domain.blocking import check_may_block
from agentceiling.domain.models import Alias, Entity, PolicyDoc, Profile, Registration
from agentceiling.store import repo
from agentceiling.store.db import Database

log = logging.getLogger(__name__)
K = TypeVar("K")
V = TypeVar("V")

_MISSING = object()


@dataclass
class _Generation:
    number: int
    view: int
    """This process's tag for one uninterrupted observation of ``number`` (see the module docstring)."""
    memo: dict[tuple[Any, ...], Any] = field(default_factory=dict)
    misses: dict[tuple[Any, ...], None] = field(default_factory=dict)
    """Lookups that found nothing, kept apart and few: their keys come from unverified tokens
    (any ``iss`` at all), so they must not crowd out, or grow, the real entries."""


#: Remembered lookups that found nothing, per generation (then the oldest half is dropped).
MAX_MISSES = 4096
#: Seconds after which a counter read still waiting for its answer no longer holds up the next one.
STUCK_READ_SECONDS = 5.0
#: Reads left waiting at most; past that no new one starts until one of them ends.
MAX_STUCK_READS = 3


class StaleDirectory(Exception):
    """The generation counter could not be confirmed recently enough to trust the cache."""

    def __init__(self, age: float) -> None:
        super().__init__(f"the directory was last confirmed current {age:.1f} s ago")
        self.age = age


def _unstorable(*keys: str) -> bool:
    """A lookup key holding NUL: no stored row can have it (the control plane refuses NUL in every
    text field), and PostgreSQL refuses it in a query (psycopg's DataError, which would read as the
    database being down). Such lookups find nothing, without asking the database."""
    return any("\x00" in k for k in keys)


class Directory:
    def __init__(
        self,
        db: Database,
        *,
        poll_interval: float = 0.25,
        max_entries: int = 200_000,
        max_staleness: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.db = db
        self.poll_interval = poll_interval
        self.max_entries = max_entries
        self.max_staleness = max(1.0, 3 * poll_interval) if max_staleness is None else max_staleness
        self._clock = clock
        self._state = threading.Lock()
        self._in_flight: list[float] = []  # when each counter read still waiting for its answer began
        self._applied = float("-inf")  # when the newest read whose answer counted began
        self._confirmed = clock()
        self._views = itertools.count(1)
        self._gap = False  # a read failed since the last successful one
        self._gen = _Generation(self._read_generation(), next(self._views))
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, name="directory-poller", daemon=True)
        self._thread.start()

    # ---------------------------------------------------------------- invalidation

    def _read_generation(self) -> int:
        pool = self.db.engine.pool
        try:
            with self.db.read() as conn:
                return repo.generation(conn)
        finally:
            if self.db.engine.pool is not pool:  # left behind meanwhile: close its connection too
                pool.dispose()

    def _poll(self) -> None:
        while not self._stop.wait(self.poll_interval):
            started = self._begin_read()
            if started is None:
                continue  # another read is under way
            self._read_logged(started)  # on failure the next poll retries; ensure_fresh fails closed

    def refresh(self) -> int:
        """Read the counter now (whatever other reads are under way) and return it."""
        started = self._clock()
        with self._state:
            self._in_flight.append(started)
        return self._read(started)

    def _begin_read(self) -> float | None:
        """Register a new read, unless one is under way: one at a time, but a read that has not
        answered for ``STUCK_READ_SECONDS`` is left behind (a server or network path that takes
        requests and never answers, or drops them before TCP notices, would otherwise stop every
        read until the kernel gives up on the connection), up to ``MAX_STUCK_READS`` of them."""
        now = self._clock()
        with self._state:
            stuck = bool(self._in_flight)
            if stuck and (now - max(self._in_flight) < STUCK_READ_SECONDS or len(self._in_flight) > MAX_STUCK_READS):
                return None
            self._in_flight.append(now)
        if stuck:
            log.warning(
                "the generation counter has not been read for %.0f s (a read is still waiting for the "
                "database's answer); trying new connections",
                now - self._confirmed,
            )
            # The pooled connections may all be as dead as the stuck one's (checking them takes as
            # long): a new pool for what follows. The old one's idle connections are closed aside
            # (closing a dead one may take a moment); the stuck one is closed when its read fails.
            old = self.db.engine.pool
            self.db.engine.dispose(close=False)
            threading.Thread(target=old.dispose, name="directory-old-pool", daemon=True).start()
        return now

    def _read(self, started: float) -> int:
        try:
            number = self._read_generation()
        except BaseException:
            with self._state:
                self._in_flight.remove(started)
                self._gap = True  # what happened meanwhile is unknown: the next read starts a new view
            raise
        with self._state:
            self._in_flight.remove(started)
            if started >= self._applied:  # not an answer older than one already counted
                self._applied = started
                if number != self._gen.number or self._gap:
                    self._gen = _Generation(number, next(self._views))
                    self._gap = False
                self._confirmed = max(self._confirmed, started)  # current as of when the read began
        return number

    def ensure_fresh(self) -> None:
        """Raise :class:`StaleDirectory` unless the counter was read within ``max_staleness``
        seconds. A late poller is covered by reading the counter here; a read already in progress
        is not waited for (unless it looks stuck: see :meth:`_begin_read`)."""
        if self._clock() - self._confirmed <= self.max_staleness:
            return
        check_may_block("reading the generation counter")
        started = self._begin_read()
        if started is not None:
            self._read_logged(started)
        age = self._clock() - self._confirmed
        if age > self.max_staleness:
            raise StaleDirectory(age)

    def is_stale(self) -> bool:
        """Whether the counter was last confirmed more than ``max_staleness`` seconds ago (every
        decision is then refused until a read succeeds)."""
        return self._clock() - self._confirmed > self.max_staleness

    def kick(self) -> None:
        """From a thread that must not wait (the event loop): when the counter is overdue, start a
        read in a thread of its own, if no read is under way (or the one under way is stuck)."""
        if not self.is_stale():
            return
        started = self._begin_read()
        if started is not None:
            threading.Thread(target=self._read_logged, args=(started,), name="directory-read", daemon=True).start()

    def _read_logged(self, started: float) -> None:
        try:
            self._read(started)
        except Exception as exc:
            log.warning("could not read the generation counter: %s", exc)

    @property
    def generation(self) -> int:
        """The database's generation counter, as last read."""
        return self._gen.number

    @property
    def view(self) -> int:
        """Tag for what is cached now: a cache entry made under another view is out of date
        (the counter moved, either way, or a failed read left a gap)."""
        return self._gen.view

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def memo(self, key: tuple[Any, ...], load: Callable[[], V], *, few_misses: bool = False) -> V:
        """Memoise ``load()`` under ``key`` for the current generation. Safe under races: the
        worst case is that two threads both load the same value. With ``few_misses`` a ``None``
        result is remembered in the small, bounded set of misses instead (for keys an
        unauthenticated caller chooses)."""
        gen = self._gen
        value = gen.memo.get(key, _MISSING)
        if value is _MISSING:
            if few_misses and key in gen.misses:
                return cast(V, None)
            check_may_block("a directory lookup")
            value = load()
            if value is None and few_misses:
                misses = gen.misses
                if len(misses) >= MAX_MISSES:
                    for old in list(misses)[: MAX_MISSES // 2]:
                        misses.pop(old, None)
                misses[key] = None
                return cast(V, None)
            if len(gen.memo) >= self.max_entries:
                gen.memo.clear()
            gen.memo[key] = value
        return cast(V, value)

    # ---------------------------------------------------------------- lookups

    def profile_for_issuer(self, namespace: str, issuer_norm: str) -> Profile | None:
        if _unstorable(namespace, issuer_norm):
            return None

        def load() -> Profile | None:
            with self.db.read() as conn:
                return repo.get_profile_by_issuer(conn, namespace, issuer_norm)

        return self.memo(("profile", namespace, issuer_norm), load, few_misses=True)

    def alias(self, namespace: str, issuer_norm: str, external_id: str) -> Alias | None:
        if _unstorable(namespace, issuer_norm, external_id):
            return None

        def load() -> Alias | None:
            with self.db.read() as conn:
                return repo.find_alias(conn, namespace, issuer_norm, external_id)

        return self.memo(("alias", namespace, issuer_norm, external_id), load)

    def entity(self, namespace: str, entity_id: str) -> Entity | None:
        if _unstorable(namespace, entity_id):
            return None

        def load() -> Entity | None:
            with self.db.read() as conn:
                return repo.get_entity(conn, namespace, id=entity_id)

        return self.memo(("entity", namespace, entity_id), load)

    def entity_aliases(self, entity_id: str) -> list[Alias]:
        def load() -> list[Alias]:
            with self.db.read() as conn:
                return repo.aliases_of_entity(conn, entity_id)

        return self.memo(("entity_aliases", entity_id), load)

    def registration_for_entity(self, namespace: str, entity_id: str) -> Registration | None:
        if _unstorable(namespace, entity_id):
            return None

        def load() -> Registration | None:
            with self.db.read() as conn:
                return repo.get_registration(conn, namespace, entity_id=entity_id)

        return self.memo(("registration", namespace, entity_id), load)

    def policy(self, namespace: str, name: str) -> PolicyDoc | None:
        if _unstorable(namespace, name):
            return None

        def load() -> PolicyDoc | None:
            with self.db.read() as conn:
                return repo.get_policy(conn, namespace, name)

        return self.memo(("policy", namespace, name), load)
