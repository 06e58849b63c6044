"""Pure helpers of the decision pipeline (no server)."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest
from authz_support import Idp, path_access
from hypothesis import given, settings
from hypothesis import strategies as st

from agentceiling.service.authz import REDACTED, _BoundedCache, _rar_key, _scrub, utc_timestamp


def test_utc_timestamp_matches_rfc3339_with_microseconds() -> None:
    cases = [0.0, 1.5, 1_700_000_000.123456, 1_700_000_000.999999, 1_700_000_001.000001, 4_102_444_799.5]
    cases += [1_700_000_000 + i / 997 for i in range(997)]
    for t in cases:
        want = dt.datetime.fromtimestamp(t, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        assert utc_timestamp(t) == want
    assert utc_timestamp().endswith("Z")


def test_scrub_redacts_jwts_and_bounds_nesting() -> None:
    idp = Idp()
    try:
        tok = idp.token("x", [path_access("a", "read")])
    finally:
        idp.close()
    value = {"a": [f"prefix {tok} suffix", {"b": tok}], tok: 1, "n": [1, 2.5, True, None]}
    out = _scrub(value)
    text = json.dumps(out)
    assert tok not in text and text.count(REDACTED) == 3
    assert out["n"] == [1, 2.5, True, None]
    deep: list[object] = []
    node = deep
    for _ in range(100):
        node.append([])
        node = node[0]  # type: ignore[assignment]
    assert "nested too deeply" in json.dumps(_scrub(deep))
    assert _scrub("eyJ is just text") == "eyJ is just text"


def test_bounded_cache_keeps_at_most_its_size_and_promotes_hits() -> None:
    cache = _BoundedCache(10)
    for i in range(100):
        cache.put(i, str(i))
        assert len(cache) <= 10
    assert cache.get(99) == "99" and cache.get(0) is None
    cache.put("hot", 1)
    for i in range(4):
        cache.put(("x", i), i)
        assert cache.get("hot") == 1  # promoted out of the old half each time it is used


def test_rar_key_tells_json_values_apart() -> None:
    keys = {_rar_key(v, True) for v in ([{"a": 1}], [{"a": 1.0}], [{"a": True}], [{"a": "1"}], [], None)}
    assert len(keys) == 6
    assert _rar_key(None, False) is None  # an absent claim ...
    assert _rar_key(None, True) is not None  # ... is not a null one


def test_directory_is_fresh_only_while_the_generation_is_read_in_time(tmp_path: Any) -> None:
    """A late poller is made up for by the deciding thread's own read; a database that cannot be
    read makes the directory stale after ``max_staleness`` seconds (fail closed)."""
    from agentceiling.service.directory import Directory, StaleDirectory
    from agentceiling.store import migrate
    from agentceiling.store.db import Database, sqlite_url

    db = Database(sqlite_url(tmp_path))
    migrate.upgrade(db)
    now = [1000.0]
    d = Directory(db, poll_interval=3600, max_staleness=1.0, clock=lambda: now[0])
    try:
        d.ensure_fresh()
        now[0] += 5  # the poller is asleep: ensure_fresh reads the counter itself
        d.ensure_fresh()
        d.ensure_fresh()
        db.dispose()
        (tmp_path / "agentceiling.db").unlink()
        (tmp_path / "agentceiling.db").mkdir()  # the database is gone: reads fail
        now[0] += 0.5
        d.ensure_fresh()  # still within the bound of the last good read
        now[0] += 1.0
        with pytest.raises(StaleDirectory) as err:
            d.ensure_fresh()
        assert err.value.age == pytest.approx(1.5)
    finally:
        d.close()


def test_directory_view_changes_when_the_counter_goes_back_or_a_read_failed(tmp_path: Any) -> None:
    """A restored database takes the counter back, and new writes take it up to numbers cached
    before, with other contents: nothing cached under the old number may be reused. Nor after a
    read that failed (what happened meanwhile is unknown)."""
    import sqlalchemy as sa

    from agentceiling.service.directory import Directory
    from agentceiling.store import migrate, repo
    from agentceiling.store.db import Database, sqlite_url

    db = Database(sqlite_url(tmp_path))
    migrate.upgrade(db)

    def set_generation(n: int) -> None:
        def run(conn: Any) -> None:
            repo.bump_generation(conn)
            conn.execute(sa.update(repo.meta).where(repo.meta.c.key == repo.GENERATION).values(value=n))

        db.write(run)

    d = Directory(db, poll_interval=3600)
    try:
        set_generation(10)
        d.refresh()
        cached = d.view
        assert d.memo(("k",), lambda: "before the restore") == "before the restore"
        set_generation(7)  # restored from a backup
        d.refresh()
        assert (d.generation, d.view != cached) == (7, True)
        set_generation(10)  # new writes reach the cached number again
        d.refresh()
        assert (d.generation, d.view != cached) == (10, True)
        assert d.memo(("k",), lambda: "after") == "after"
        same = d.view
        d.refresh()
        assert d.view == same  # an unchanged counter keeps the view (and the cache)
        db.dispose()
        live = tmp_path / "agentceiling.db"
        live.rename(tmp_path / "moved.db")
        live.mkdir()  # reads fail
        with pytest.raises(Exception):  # noqa: B017 - whatever the driver raises
            d.refresh()
        live.rmdir()
        (tmp_path / "moved.db").rename(live)
        d.refresh()
        assert (d.generation, d.view != same) == (10, True)
        assert d.memo(("k",), lambda: "after the gap") == "after the gap"
    finally:
        d.close()


def test_tokens_glued_to_text_or_with_spaced_headers_are_redacted() -> None:
    """A token right after other text (``x_<token>``), or whose header JSON starts with a space or
    a newline (base64url ``eyAi``, ``ewo``), is still a token: redacted, and refused by the log."""
    import base64

    from agentceiling.store.audit_log import looks_like_jwt

    def b64(raw: bytes) -> str:
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    body = b64(b'{"sub":"agent","exp":4102444800}') + "." + b64(b"s" * 64)
    tokens = [b64(h) + "." + body for h in (b'{"alg":"ES256"}', b'{ "alg":"ES256"}', b'{\n "alg":"ES256"}')]
    for tok in tokens:
        for text in (tok, f"secret/data/ci/x_{tok}", f"a{tok}b"):
            assert looks_like_jwt(text), text
            assert tok not in _scrub(text) and REDACTED in _scrub(text)
    for plain in ("secret/data/money-transfer-service.v1.config", "https://idp.example.com/x.y", "eyJ/monkeyJar.v1.2"):
        assert not looks_like_jwt(plain) and _scrub(plain) == plain


def test_lookups_that_find_nothing_are_remembered_but_bounded(tmp_path: Any) -> None:
    """Any ``iss`` at all can be sent unauthenticated: its misses must neither grow the directory's
    memory without bound nor push the real entries out."""
    from agentceiling.service.directory import MAX_MISSES, Directory
    from agentceiling.store import migrate
    from agentceiling.store.db import Database, sqlite_url

    db = Database(sqlite_url(tmp_path))
    migrate.upgrade(db)
    d = Directory(db, poll_interval=3600)
    try:
        d.memo(("real",), lambda: "kept")
        for i in range(3 * MAX_MISSES):
            assert d.profile_for_issuer("root", f"https://bogus-{i}.example") is None
        assert len(d._gen.misses) <= MAX_MISSES and len(d._gen.memo) == 1
        assert d.memo(("real",), lambda: "reloaded") == "kept"
        calls = []
        assert d.memo(("x",), lambda: calls.append(1), few_misses=True) is None  # type: ignore[func-returns-value]
        assert d.memo(("x",), lambda: calls.append(1), few_misses=True) is None  # type: ignore[func-returns-value]
        assert calls == [1]  # a miss is remembered
    finally:
        d.close()


_PIECES = st.sampled_from(
    ["eyJhbGciOiJFUzI1NiJ9", "eyLDqSI6MSwiYWxnIjoi", "ewogImFsZyI6", ".", "..", "a", "u", "\\", "\\u", "001",
     "e", "yJhbGciOiJIUzI1NiIs", "\x1e", "\xee", "\u200b", '"', "/", "\n", "-", "_", "7"]
)


@settings(max_examples=400, deadline=None)
@given(parts=st.lists(_PIECES, max_size=24), token_at=st.integers(min_value=-1, max_value=24))
def test_redaction_in_json_text_keeps_it_json_and_leaves_nothing_token_like(parts: list[str], token_at: int) -> None:
    """Whatever the text, its JSON escaped: after redaction it still parses, nothing in it looks
    like a token, the presented token is gone, and the text around the redactions is unchanged."""
    from agentceiling.store.audit_log import looks_like_jwt, redact_jwts_in_json

    token = "IHsiYWxnIjoiRVMyNTYifQ.eyJzdWIiOiJ4In0.c2lnbmF0dXJl"  # header " {...}": no pattern knows it
    if 0 <= token_at <= len(parts):
        parts = [*parts[:token_at], token, *parts[token_at:]]
    value = "".join(parts)
    record = json.dumps({"decision_id": "d", "path": value, "reason": f'read on "{value}"'}, sort_keys=True)
    out = redact_jwts_in_json(record, REDACTED, token)
    decoded = json.loads(out)
    assert not looks_like_jwt(out) and token not in out
    assert set(decoded) == {"decision_id", "path", "reason"} and decoded["decision_id"] == "d"
    if out == record:
        assert decoded["path"] == value
    else:
        assert REDACTED in decoded["path"]
        assert all(kept in value for kept in decoded["path"].split(REDACTED))


def test_what_would_block_the_event_loop_says_so(tmp_path: Any) -> None:
    """Inside never_block(), a directory lookup that is not memoised, a counter read of a stale
    directory, and waiting for a JWKS fetch raise WouldBlock (the endpoint then decides in a worker
    thread); what is in memory is answered as usual. Outside, they just do their I/O."""
    from agentceiling.domain.blocking import WouldBlock, never_block
    from agentceiling.service.directory import Directory
    from agentceiling.store import migrate
    from agentceiling.store.db import Database, sqlite_url
    from agentceiling.tokens.jwks import JwksClient

    db = Database(sqlite_url(tmp_path))
    migrate.upgrade(db)
    now = [1000.0]
    d = Directory(db, poll_interval=3600, max_staleness=1.0, clock=lambda: now[0])
    try:
        d.memo(("known",), lambda: "in memory")
        with never_block():
            assert d.memo(("known",), lambda: "reloaded") == "in memory"
            d.ensure_fresh()
            with pytest.raises(WouldBlock):
                d.memo(("unknown",), lambda: "needs the database")
            now[0] += 5
            with pytest.raises(WouldBlock):
                d.ensure_fresh()
        d.ensure_fresh()  # where blocking is allowed: reads the counter
        assert d.memo(("unknown",), lambda: "loaded") == "loaded"
    finally:
        d.close()
    client = JwksClient("http://127.0.0.1:9/keys", timeout=0.2)
    with never_block(), pytest.raises(WouldBlock):
        client.get_keys("kid-1")  # no keys yet: it would wait for a fetch
    # WouldBlock passes through `except Exception` (which turns failures into refusals)
    assert not issubclass(WouldBlock, Exception)
