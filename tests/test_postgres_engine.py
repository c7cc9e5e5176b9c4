"""PostgresEngine beyond the conformance suite, against the real PostgreSQL of tests/servers.py."""

from __future__ import annotations

import sys
import threading
import time
from typing import Any

import psycopg
import pytest
from psycopg import sql

from wafs import open_engine
from wafs.engines.postgres import PostgresEngine
from wafs.errors import BackendError, BackendUnavailableError, InvalidValueError, MissingDependencyError

from .helpers import Interleavings, assert_every_call_unavailable, unique


@pytest.fixture
def engine_kind() -> str:
    """``engine``: a PostgresEngine on the session's PostgreSQL, rows in ``table``; ``raw``: psycopg."""
    return "postgres"


# --- schema ------------------------------------------------------------------------------------


def test_creates_the_seed_table_and_indexes(
    engine: PostgresEngine, raw: psycopg.Connection, table: str
) -> None:
    engine.set("session/creds", "{}")
    columns = raw.execute(
        "SELECT column_name, data_type, is_nullable FROM information_schema.columns"
        " WHERE table_name = %s ORDER BY ordinal_position",
        [table],
    ).fetchall()
    assert columns == [
        ("key", "text", "NO"),
        ("data", "text", "NO"),
        ("updated_at", "timestamp with time zone", "NO"),
    ]
    query = "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = %s"
    indexes = dict(raw.execute(query, [table]).fetchall())
    assert "text_pattern_ops" in indexes[f"idx_{table}_prefix"]
    assert "updated_at DESC" in indexes[f"idx_{table}_updated"]
    assert raw.execute(f"SELECT key, data FROM {table}").fetchall() == [("session/creds", "{}")]


def test_table_name_is_quoted(postgres_server: Any, raw: psycopg.Connection) -> None:
    name = unique('Odd "name"; ')
    engine = postgres_server.engine(table=name)
    try:
        engine.set("k/1", "v")
        assert engine.list("") == ["k/1"]
        assert raw.execute("SELECT count(*) FROM pg_tables WHERE tablename = %s", [name]).fetchone() == (1,)
    finally:
        engine.close()


def test_uses_the_table_the_node_example_created(
    postgres_server: Any, raw: psycopg.Connection, table: str
) -> None:
    raw.execute(
        f"CREATE TABLE {table} (key TEXT PRIMARY KEY, data TEXT NOT NULL, updated_at TIMESTAMP DEFAULT NOW())"
    )
    raw.execute(f"CREATE INDEX idx_{table}_prefix ON {table} (key text_pattern_ops)")
    raw.execute(f"CREATE INDEX idx_{table}_updated ON {table} (updated_at DESC)")
    raw.execute(
        f"INSERT INTO {table} (key, data, updated_at) VALUES (%s, %s, NOW()) "
        "ON CONFLICT (key) DO UPDATE SET data = %s, updated_at = NOW()",
        ["contact/1@s.whatsapp.net/index", '{"name": "John"}', '{"name": "John"}'],
    )
    engine = postgres_server.engine(table=table)
    try:
        assert engine.get("contact/1@s.whatsapp.net/index") == '{"name": "John"}'
        engine.set("contact/2@s.whatsapp.net/index", "{}")
        assert engine.list("contact/") == ["contact/2@s.whatsapp.net/index", "contact/1@s.whatsapp.net/index"]
    finally:
        engine.close()


# --- LIKE metacharacters -------------------------------------------------------------------------


LIKE_KEYS = ["chat/1%/x", "chat/1_/x", "chat/1\\/x", "chat/1a/x", "chat/1/x", "chat/1%a/x", "chat/%/x"]


def test_like_metacharacters_are_literal(engine: PostgresEngine) -> None:
    engine.set_many(dict.fromkeys(LIKE_KEYS, "v"))
    assert set(engine.list("chat/1%", 0, None)) == {"chat/1%/x", "chat/1%a/x"}
    assert engine.list("chat/1_") == ["chat/1_/x"]
    assert engine.list("chat/1\\") == ["chat/1\\/x"]
    assert sorted(engine.iter_keys("chat/%")) == ["chat/%/x"]
    engine.set("chat/1%", None)
    engine.set("chat/1_", None)
    assert set(engine.list("", 0, None)) == set(LIKE_KEYS) - {"chat/1%/x", "chat/1_/x"}
    engine.delete_prefixes(["chat/1\\", "chat/%"])
    assert set(engine.list("", 0, None)) == {"chat/1a/x", "chat/1/x", "chat/1%a/x"}


# --- ordering ------------------------------------------------------------------------------------


def test_set_many_rows_are_ordered_by_clock_time(
    engine: PostgresEngine, raw: psycopg.Connection, table: str
) -> None:
    engine.set_many({"o/a": "1", "o/b": "2", "o/c": "3"})
    stamps = raw.execute(f"SELECT count(DISTINCT updated_at) FROM {table}").fetchone()
    assert stamps == (3,)  # clock_timestamp(), not the transaction's now()
    engine.set("o/a", "again")
    assert engine.list("o/") == ["o/a", "o/c", "o/b"]


def test_iter_keys_pages_through_many_keys(engine: PostgresEngine) -> None:
    keys = {f"s/{n}" for n in range(2500)}
    engine.set_many(dict.fromkeys(keys, "v"))
    streamed = list(engine.iter_keys("s/"))
    assert len(streamed) == 2500 and set(streamed) == keys
    assert dict(engine.items("s/", batch=700)) == dict.fromkeys(keys, "v")


def test_delete_many_ignores_keys_postgres_cannot_hold(engine: PostgresEngine) -> None:
    engine.set_many({"k/1": "a", "k/2": "b"})
    engine.delete_many(["k/1", "k/\0", "\ud800"])
    assert engine.list("") == ["k/2"]


# --- threads, connections, timeouts --------------------------------------------------------------


def test_threads_share_one_engine(engine: PostgresEngine) -> None:
    errors: list[BaseException] = []
    seen = Interleavings()

    def work(n: int) -> None:
        try:
            for i in range(40):
                with seen.running("call"):
                    engine.set(f"t/{n}/{i}", f"{n}:{i}")
                with seen.running("call"):
                    assert engine.get(f"t/{n}/{i}") == f"{n}:{i}"
            assert len(engine.list(f"t/{n}/", 0, None)) == 40
        except BaseException as exc:  # noqa: BLE001  (reported by the test)
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(engine.list("t/", 0, None)) == 320
    seen.assert_overlapped("call", "call")  # calls of several threads were in flight at once


def test_given_connection_is_used_and_left_open(postgres_server: Any, table: str) -> None:
    conn = psycopg.connect(postgres_server.dsn)
    engine = PostgresEngine(conn, table)
    engine.set("k/1", "v")
    engine.close()
    assert conn.autocommit
    assert conn.execute(f"SELECT data FROM {table}").fetchone() == ("v",)
    conn.close()
    with pytest.raises(BackendUnavailableError, match="closed"):
        engine.get("k/1")


def test_statement_timeout_is_unavailable(postgres_server: Any, raw: psycopg.Connection, table: str) -> None:
    engine = postgres_server.engine(table=table, timeout=1.0)
    try:
        engine.set("k/1", "v")
        with raw.transaction():
            raw.execute(f"LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE")
            started = time.monotonic()
            with pytest.raises(BackendUnavailableError) as raised:
                engine.get("k/1")
            assert time.monotonic() - started < 2.0
            assert isinstance(raised.value.__cause__, psycopg.errors.QueryCanceled)
        assert engine.get("k/1") == "v"
    finally:
        engine.close()


def test_other_sql_errors_are_backend_errors(
    engine: PostgresEngine, raw: psycopg.Connection, table: str
) -> None:
    engine.set("k/1", "v")
    raw.execute(f"ALTER TABLE {table} ADD CONSTRAINT short CHECK (length(data) < 3)")
    with pytest.raises(BackendError) as raised:
        engine.set("k/2", "too long")
    assert not isinstance(raised.value, BackendUnavailableError)
    assert isinstance(raised.value.__cause__, psycopg.errors.CheckViolation)
    assert engine.get("k/1") == "v"


def test_server_down_then_back_with_data_kept(postgres_server: Any, table: str) -> None:
    timeout = 2.0
    engine = postgres_server.engine(table=table, timeout=timeout)
    try:
        engine.set("keep/1", "kept")
        postgres_server.stop()
        try:
            assert_every_call_unavailable(engine, timeout, psycopg.Error)
        finally:
            postgres_server.start()
        assert engine.get("keep/1") == "kept"
        engine.set("k/1", "back")
        assert engine.list("") == ["k/1", "keep/1"]
    finally:
        engine.close()


# --- URLs ----------------------------------------------------------------------------------------


def test_open_engine_url_with_table_and_timeout(
    postgres_server: Any, raw: psycopg.Connection, table: str
) -> None:
    engine = open_engine(f"{postgres_server.url}?table={table}&timeout=3&application_name=wafs-url-test")
    try:
        assert isinstance(engine, PostgresEngine)
        assert (engine.table, engine.timeout) == (table, 3.0)
        engine.set("u/1", "v")
        assert raw.execute(f"SELECT data FROM {table} WHERE key = 'u/1'").fetchone() == ("v",)
        names = {name for (name,) in raw.execute("SELECT application_name FROM pg_stat_activity").fetchall()}
        assert "wafs-url-test" in names
        assert repr(engine) == f"PostgresEngine(127.0.0.1:{postgres_server.port}/postgres, table={table!r})"
    finally:
        engine.close()


def test_postgres_scheme_alias_and_default_table(postgres_server: Any) -> None:
    engine = open_engine(postgres_server.url.replace("postgresql://", "postgres://"))
    try:
        assert (engine.table, engine.timeout) == ("storage", 5.0)
        engine.set("alias/1", "v")
        assert engine.get("alias/1") == "v"
        engine.set("alias", None)
    finally:
        engine.close()


def test_missing_psycopg_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "psycopg", None)
    monkeypatch.delitem(sys.modules, "wafs.engines.postgres")
    with pytest.raises(MissingDependencyError, match=r"pip install 'wafs\[postgres\]'"):
        open_engine("postgresql://127.0.0.1/postgres")


def test_unknown_scheme_lists_the_known_ones() -> None:
    with pytest.raises(ValueError, match="postgresql://"):
        open_engine("mysql://127.0.0.1/db")


def test_a_value_that_is_not_utf8_is_a_permanent_invalid_value_error(
    postgres_server: Any, raw: psycopg.Connection, table: str
) -> None:
    """A SQL_ASCII database keeps any bytes: such a value is InvalidValueError, others are text."""
    database = unique("sqlascii_")
    create = "CREATE DATABASE {} ENCODING 'SQL_ASCII' TEMPLATE template0 LC_COLLATE 'C' LC_CTYPE 'C'"
    raw.execute(sql.SQL(create).format(sql.Identifier(database)))
    dsn = f"host={postgres_server.host} port={postgres_server.port} user=postgres dbname={database}"
    try:
        with PostgresEngine(dsn, table) as engine:
            engine.set("k/ok", "ñandú")
            insert = "INSERT INTO {} (key, data) VALUES ('k/bin', convert_from('\\xff'::bytea, 'SQL_ASCII'))"
            with psycopg.connect(dsn, autocommit=True) as other:  # another client, in the database's encoding
                other.execute(sql.SQL(insert).format(sql.Identifier(table)))
            assert engine.get("k/ok") == "ñandú"
            assert engine.list("k/", 0, None) == ["k/bin", "k/ok"]
            with pytest.raises(InvalidValueError, match="not UTF-8") as raised:
                engine.get("k/bin")
            assert not isinstance(raised.value, BackendError)
            with pytest.raises(InvalidValueError):  # the batch fails as a whole
                engine.get_many(["k/ok", "k/bin"])
            assert engine.get_many(["k/ok"]) == {"k/ok": "ñandú"}
    finally:
        raw.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(database)))


def test_a_value_with_nul_is_refused_with_a_permanent_error(engine: PostgresEngine) -> None:
    """NUL is valid UTF-8 (fine in Redis and files), but a text column cannot hold it: refused
    before the statement, InvalidValueError (EILSEQ at the mount), never a BackendError (EIO)."""
    engine.set("chat/1/index", "kept")
    for write in (lambda: engine.set("chat/1/index", "a\0b"), lambda: engine.add("chat/2/index", "\0"),
                  lambda: engine.set_many({"chat/3/index": "fine", "chat/4/index": "nul\0"})):
        with pytest.raises(InvalidValueError, match="NUL") as raised:
            write()
        assert not isinstance(raised.value, BackendError)
    assert dict(engine.items("")) == {"chat/1/index": "kept"}

