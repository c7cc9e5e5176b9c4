"""RedisEngine beyond the conformance suite, against the real redis-server of tests/servers.py."""

from __future__ import annotations

import itertools
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis

from wafs import open_engine
from wafs.engine import Kind
from wafs.engines.redis import RedisEngine, _read_ahead
from wafs.errors import BackendError, BackendUnavailableError, InvalidValueError, ValueTooLargeError
from wafs.keys import is_valid_key

from .helpers import assert_every_call_unavailable, unique


@pytest.fixture
def engine_kind() -> str:
    """``engine``: a RedisEngine on the session's redis-server, keys under ``prefix``; ``raw``: redis-py."""
    return "redis"


# --- the Node layout ---------------------------------------------------------------------------


def test_reads_what_node_wrote_with_redis_cli(redis_server: Any, engine: RedisEngine, prefix: str) -> None:
    key = "chat/5491112345678@s.whatsapp.net/index"
    subprocess.run(
        ["redis-cli", "-h", redis_server.host, "-p", str(redis_server.port),
         "SET", f"{prefix}:{key}", '{"id": 1}'],
        check=True, capture_output=True,
    )
    assert engine.get(key) == '{"id": 1}'
    assert engine.list("chat/") == [key]


def test_reads_what_node_wrote_with_raw_set(raw: redis.Redis, engine: RedisEngine, prefix: str) -> None:
    raw.set(f"{prefix}:session/creds", "{}")
    raw.set(f"{prefix}:session/pre-key/1", "k1")
    expected = {"session/creds": "{}", "session/pre-key/1": "k1"}
    assert engine.get_many(["session/creds", "session/pre-key/1"]) == expected
    assert engine.children("session") == {"creds": Kind.FILE, "pre-key": Kind.DIR}


def test_writes_what_node_reads(raw: redis.Redis, engine: RedisEngine, prefix: str) -> None:
    engine.set("contact/1@s.whatsapp.net/index", "ñ")
    engine.set_many({"lid/1@lid": "1@s.whatsapp.net"})
    engine.set("session/creds", "")
    assert raw.get(f"{prefix}:contact/1@s.whatsapp.net/index") == "ñ".encode()
    assert raw.get(f"{prefix}:lid/1@lid") == b"1@s.whatsapp.net"
    assert raw.get(f"{prefix}:session/creds") == b""  # Node would have deleted on ""
    assert sorted(raw.keys(f"{prefix}:*")) == sorted(
        f"{prefix}:{key}".encode() for key in ["contact/1@s.whatsapp.net/index", "lid/1@lid", "session/creds"]
    )


def test_default_prefix_is_wa_default(redis_server: Any, raw: redis.Redis) -> None:
    engine = RedisEngine(raw)
    try:
        engine.set("test/default-prefix", "v")
        assert raw.get("wa:default:test/default-prefix") == b"v"
    finally:
        engine.set("test", None)
    assert raw.exists("wa:default:test/default-prefix") == 0


def test_decode_responses_client_works(redis_server: Any, prefix: str) -> None:
    client = redis_server.client(decode_responses=True)
    engine = RedisEngine(client, prefix)
    engine.set_many({"k/a": "ñandú", "k/b": ""})
    assert engine.get_many(["k/a", "k/b", "k/c"]) == {"k/a": "ñandú", "k/b": "", "k/c": None}
    assert engine.sizes(["k/a", "k/b", "k/c"]) == {"k/a": 7, "k/b": 0, "k/c": None}
    assert engine.list("k/") == ["k/a", "k/b"]
    engine.set("k", None)
    assert engine.list("") == []
    engine.close()
    assert client.ping()  # a client passed in is not closed by the engine
    client.close()


# --- glob metacharacters, other prefixes, foreign keys --------------------------------------------


GLOB_KEYS = ["chat/[1]/x", "chat/1*/x", "chat/1?/x", "chat/1\\/x", "chat/[1/x", "chat/1]/x"]


def test_cascade_never_leaves_its_subtree(redis_server: Any, raw: redis.Redis, prefix: str) -> None:
    other = RedisEngine(raw, "wa:other")
    engine = RedisEngine(raw, prefix)
    try:
        for key in GLOB_KEYS + ["chat/1/x", "chat/12/x"]:
            engine.set(key, "v")
            other.set(key, "other")
        engine.set("chat/1*", None)
        assert set(engine.list("", 0, None)) == set(GLOB_KEYS + ["chat/1/x", "chat/12/x"]) - {"chat/1*/x"}
        engine.delete_prefixes(["chat/[1]", "chat/1?", "chat/1\\"])
        assert set(engine.list("", 0, None)) == {"chat/1/x", "chat/12/x", "chat/[1/x", "chat/1]/x"}
        engine.set("chat", None)
        assert engine.list("", 0, None) == []
        assert set(other.list("", 0, None)) == set(GLOB_KEYS + ["chat/1/x", "chat/12/x"])
    finally:
        other.set("chat", None)


def test_prefix_with_glob_characters_is_literal(raw: redis.Redis) -> None:
    star, plain = RedisEngine(raw, "wa:*"), RedisEngine(raw, "wa:x")
    try:
        plain.set("chat/1/x", "plain")
        star.set("chat/1/x", "star")
        assert star.list("") == ["chat/1/x"]
        star.set("chat", None)
        assert raw.get("wa:x:chat/1/x") == b"plain"
        assert star.list("") == []
    finally:
        plain.set("chat", None)


def test_list_returns_stored_keys_that_break_the_rules(
    raw: redis.Redis, engine: RedisEngine, prefix: str
) -> None:
    raw.set(f"{prefix}:a//b", "1")
    raw.set(f"{prefix}:a/./c", "2")
    engine.set("a/ok", "3")
    assert engine.list("a/") == ["a/./c", "a//b", "a/ok"]
    engine.set("a", None)  # the cascade sweeps them too
    assert raw.keys(f"{prefix}:*") == []


def test_non_utf8_key_is_listed_invalid_and_deletable(
    raw: redis.Redis, engine: RedisEngine, prefix: str
) -> None:
    bad = f"{prefix}:chat/\xff".encode("latin-1") + b"\xfe/index"
    raw.set(bad, "v")
    engine.set("chat/ok/index", "v")
    listed = engine.list("chat/")
    assert len(listed) == 2
    strange = next(key for key in listed if key != "chat/ok/index")
    assert not is_valid_key(strange)
    engine.delete_many([strange])
    assert raw.exists(bad) == 0
    assert engine.list("chat/") == ["chat/ok/index"]


def test_non_utf8_value_is_a_permanent_invalid_value_error(
    raw: redis.Redis, engine: RedisEngine, prefix: str
) -> None:
    """Bytes another client wrote: InvalidValueError (EILSEQ in the mount), never a retryable BackendError."""
    raw.set(f"{prefix}:k/bin", b"\xff\xfe")
    raw.set(f"{prefix}:k/ok", b"fine")
    with pytest.raises(InvalidValueError, match="not UTF-8") as raised:
        engine.get("k/bin")
    assert not isinstance(raised.value, BackendError)
    with pytest.raises(InvalidValueError, match="not UTF-8"):  # the batch fails as a whole
        engine.get_many(["k/ok", "k/bin"])
    assert engine.get_many(["k/ok"]) == {"k/ok": "fine"}
    assert engine.sizes(["k/bin"]) == {"k/bin": 2}
    assert raw.get(f"{prefix}:k/bin") == b"\xff\xfe"


def test_list_sorts_by_code_point_and_pages_consistently(engine: RedisEngine) -> None:
    keys = [f"m/{n}" for n in range(300)] + ["m/é", "m/Z", "m/a"]
    engine.set_many({key: "v" for key in keys})
    pages = [engine.list("m/", offset, 37) for offset in range(0, 320, 37)]
    assert [key for page in pages for key in page] == sorted(keys)


def test_iter_keys_streams_every_key_once(engine: RedisEngine) -> None:
    keys = {f"s/{n}" for n in range(2500)}
    engine.set_many(dict.fromkeys(keys, "v"))
    streamed = list(engine.iter_keys("s/"))
    assert len(streamed) == len(keys)
    assert set(streamed) == keys


# --- round trips ---------------------------------------------------------------------------------


def _calls(raw: redis.Redis) -> dict[str, int]:
    return {name.removeprefix("cmdstat_"): stats["calls"] for name, stats in raw.info("commandstats").items()}


def _delta(raw: redis.Redis, action: Callable[[], object]) -> dict[str, int]:
    before = _calls(raw)
    action()
    after = _calls(raw)
    return {
        name: count - before.get(name, 0) for name, count in after.items() if count != before.get(name, 0)
    }


def test_round_trips_are_constant(redis_server: Any) -> None:
    raw = redis.Redis(host=redis_server.host, port=redis_server.port, db=1)
    raw.flushdb()
    engine = redis_server.engine(prefix="wa:rt", db=1)
    try:
        keys = [f"chat/{n % 5}/message/{n}/raw" for n in range(500)]
        written = _delta(raw, lambda: engine.set_many({key: "x" for key in keys}))
        assert written.get("mset") == 1 and "set" not in written

        read = _delta(raw, lambda: engine.get_many(keys))
        assert read.get("mget") == 1 and "get" not in read

        sized = _delta(raw, lambda: engine.sizes(keys))  # one script, its STRLENs inside
        assert sized.get("eval") == 1 and sized.get("strlen") == 500 and "get" not in sized

        one_pass = _delta(raw, lambda: engine.list("", 0, None))["scan"]
        cascaded = _delta(raw, lambda: engine.delete_prefixes(["chat/0", "chat/1", "chat/2"]))
        assert cascaded["scan"] == one_pass
        assert cascaded["del"] == 1  # 300 keys, one DEL
        assert set(engine.list("", 0, None)) == {key for key in keys if key.split("/")[1] in ("3", "4")}

        deleted = _delta(raw, lambda: engine.delete_many(engine.list("", 0, None)))
        assert deleted["del"] == 1
        assert raw.dbsize() == 0
    finally:
        engine.close()
        raw.flushdb()
        raw.close()


def _rejected_scripts(raw: redis.Redis) -> int:
    stats = raw.info("commandstats")
    return sum(stats.get(f"cmdstat_{name}", {}).get("rejected_calls", 0) for name in ("eval", "evalsha"))


def test_sizes_without_scripts_use_a_pipeline(redis_server: Any, raw: redis.Redis, prefix: str) -> None:
    """A user the server's ACL forbids scripts reads sizes with STRLEN (EXISTS for the zeros),
    and asks for a script once only."""
    raw.set(f"{prefix}:k/a".encode(), "ñandú".encode())
    raw.set(f"{prefix}:k/b".encode(), b"")
    user = unique("noscript")
    raw.acl_setuser(user, enabled=True, nopass=True, keys=["*"], channels=["*"],
                    commands=["+@all", "-eval", "-evalsha"])
    try:
        engine = RedisEngine.from_url(f"redis://{user}@{redis_server.host}:{redis_server.port}/0?prefix={prefix}")
        try:
            refused = _rejected_scripts(raw)
            sizes: dict[str, int | None] = {}
            sized = _delta(raw, lambda: sizes.update(engine.sizes(["k/a", "k/b", "k/c"])))
            assert sizes == {"k/a": 7, "k/b": 0, "k/c": None}
            assert sized.get("strlen") == 3 and sized.get("exists") == 2
            assert _rejected_scripts(raw) == refused + 1
            assert engine.sizes(["k/a"]) == {"k/a": 7}
            assert _rejected_scripts(raw) == refused + 1
        finally:
            engine.close()
    finally:
        raw.acl_deluser(user)


# --- faults --------------------------------------------------------------------------------------


def _assert_works(engine: RedisEngine) -> None:
    engine.set("k/1", "back")
    assert engine.get("k/1") == "back"
    assert engine.list("k/") == ["k/1"]
    engine.set("k", None)
    assert engine.list("k/") == []


def test_server_down_then_back(redis_server: Any, prefix: str) -> None:
    engine = redis_server.engine(prefix=prefix, timeout=1.0)
    try:
        _assert_works(engine)
        old_pid = redis_server.pid
        redis_server.stop()
        assert redis_server.pid is None
        try:
            assert_every_call_unavailable(engine, 1.0, redis.RedisError)
        finally:
            redis_server.start()
        assert redis_server.pid not in (None, old_pid)
        _assert_works(engine)
    finally:
        engine.close()


def test_client_pause_times_out_then_recovers(redis_server: Any, raw: redis.Redis, prefix: str) -> None:
    timeout = 0.25
    engine = redis_server.engine(prefix=prefix, timeout=timeout)
    try:
        _assert_works(engine)
        raw.execute_command("CLIENT", "PAUSE", "6000", "ALL")
        paused_at = time.monotonic()
        assert_every_call_unavailable(engine, timeout, redis.RedisError)
        assert time.monotonic() - paused_at < 6.0, "the pause ended before every call was checked"
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                engine.get("k/1")
                break
            except BackendUnavailableError:
                continue
        _assert_works(engine)
    finally:
        engine.close()


# --- URLs and construction ----------------------------------------------------------------------


def test_open_engine_url_prefix_and_timeout(redis_server: Any, raw: redis.Redis, prefix: str) -> None:
    engine = open_engine(f"redis://{redis_server.host}:{redis_server.port}/0?prefix={prefix}&timeout=1.5")
    try:
        assert isinstance(engine, RedisEngine)
        assert engine.prefix == prefix
        options = engine.client.connection_pool.connection_kwargs
        assert options["socket_timeout"] == 1.5
        assert options["socket_connect_timeout"] == 1.5
        assert "prefix" not in options and "timeout" not in options
        engine.set("u/1", "v")
        assert raw.get(f"{prefix}:u/1") == b"v"
        address = f"{redis_server.host}:{redis_server.port}"
        assert repr(engine) == f"RedisEngine(redis://{address}/0, prefix={prefix!r})"
    finally:
        engine.close()


def test_open_engine_url_defaults(redis_server: Any) -> None:
    engine = open_engine(f"redis://{redis_server.host}:{redis_server.port}/2")
    try:
        assert engine.prefix == "wa:default"
        options = engine.client.connection_pool.connection_kwargs
        assert (options["db"], options["socket_timeout"], options["socket_connect_timeout"]) == (2, 5.0, 2.0)
        assert engine.client.get_retry().get_retries() == 2
    finally:
        engine.close()


def test_close_releases_the_client_it_created(redis_server: Any, raw: redis.Redis) -> None:
    name = unique("wafs-close-")
    engine = open_engine(f"redis://{redis_server.host}:{redis_server.port}/0?client_name={name}")
    engine.get("k/1")
    assert name in {client["name"] for client in raw.client_list()}
    engine.close()
    assert name not in {client["name"] for client in raw.client_list()}


@pytest.mark.parametrize("timeout", ["abc", "0", "-1"])
def test_bad_timeout_is_refused(timeout: str) -> None:
    with pytest.raises(ValueError, match="timeout"):
        open_engine(f"redis://127.0.0.1:1/0?timeout={timeout}")


def test_decode_responses_client_reports_non_utf8_data_as_invalid_values(
    redis_server: Any, raw: redis.Redis, prefix: str
) -> None:
    raw.set(f"{prefix}:k/".encode() + b"\xff", "v")
    raw.set(f"{prefix}:v/bin", b"\xff")
    client = redis_server.client(decode_responses=True)
    try:
        with pytest.raises(InvalidValueError, match="decode_responses=False"):
            RedisEngine(client, prefix).list("k/")
        with pytest.raises(InvalidValueError, match="not UTF-8"):
            RedisEngine(client, prefix).get("v/bin")
    finally:
        client.close()
    assert RedisEngine(raw, prefix).list("k/") == ["k/\udcff"]


def test_a_value_over_512_mib_is_refused_at_once_with_a_permanent_error(engine: RedisEngine, raw: redis.Redis,
                                                                         prefix: str) -> None:
    """Redis drops the connection after reading such a value, and every retry again (12 s of
    retries, then 'unavailable'): refused before anything is sent, never EIO."""
    engine.set("chat/1/content", "kept")
    ascii_value = "x" * (512 * 1024 * 1024 + 1)
    multibyte = "ñ" * (256 * 1024 * 1024 + 1)  # fewer characters than the limit, more bytes
    for big in (ascii_value, multibyte):
        for write in (engine.set, engine.add, lambda key, value: engine.set_many({"chat/3/content": "small",
                                                                                    key: value})):
            started = time.monotonic()
            with pytest.raises(ValueTooLargeError, match="512 MiB") as raised:
                write("chat/1/content", big)
            assert time.monotonic() - started < 3.0
            assert isinstance(raised.value, InvalidValueError) and not isinstance(raised.value, BackendError)
    assert engine.get("chat/1/content") == "kept"
    assert raw.keys(f"{prefix}:*") == [f"{prefix}:chat/1/content".encode()]


def _scan_threads() -> list[threading.Thread]:
    return [thread for thread in threading.enumerate() if thread.name == "wafs-scan"]


def test_scan_read_ahead_passes_on_the_producers_error_after_its_items() -> None:
    def failing() -> Iterator[int]:
        yield 1
        yield 2
        raise redis.ConnectionError("gone")

    got = []
    with pytest.raises(redis.ConnectionError, match="gone"):
        for item in _read_ahead(failing()):
            got.append(item)
    assert got == [1, 2]


def test_scan_read_ahead_closed_early_stops_its_producer() -> None:
    produced: list[int] = []

    def endless() -> Iterator[int]:
        for number in itertools.count():
            produced.append(number)
            yield number

    before = set(_scan_threads())
    items = _read_ahead(endless(), depth=2)
    assert next(items) == 0
    (producer,) = set(_scan_threads()) - before
    items.close()
    producer.join(5.0)
    assert not producer.is_alive()
    assert len(produced) <= 5  # it stayed within depth of what was taken
