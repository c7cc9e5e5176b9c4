"""PostgresEngine: one row per key in the seed's ``storage`` table, through psycopg 3.

Table (created with its two indexes when missing; the name is configurable)::

    CREATE TABLE storage (key text PRIMARY KEY, data text NOT NULL,
                          updated_at timestamptz NOT NULL DEFAULT clock_timestamp());
    CREATE INDEX idx_storage_prefix ON storage (key text_pattern_ops);
    CREATE INDEX idx_storage_updated ON storage (updated_at DESC);

Every write stamps ``updated_at`` with ``clock_timestamp()`` (not ``now()``, which is the
same for a whole transaction), so ``list`` is newest first, ties broken by key.
"""

from __future__ import annotations

import contextlib
import math
import threading
from collections.abc import Iterable, Iterator, Mapping

from ..engine import Engine
from ..errors import (
    BackendError,
    BackendUnavailableError,
    InvalidValueError,
    MissingDependencyError,
    NoSpaceError,
    WafsError,
)
from ..urls import WAFS, query_parameters, redact, with_query

try:
    import psycopg
    from psycopg import pq, sql
    from psycopg.conninfo import conninfo_to_dict
except ImportError as exc:
    raise MissingDependencyError("PostgreSQL support needs psycopg: pip install 'wafs[postgres]'") from exc

DEFAULT_TABLE = "storage"
#: Seconds: connect timeout and statement_timeout (``?timeout=`` in a URL).
DEFAULT_TIMEOUT = 5.0
#: Keys fetched per round trip by :meth:`PostgresEngine.iter_keys`.
BATCH = 1000

#: The query parameters of a PostgreSQL URL and who takes them: wafs, or libpq (passed on).
URL_PARAMETERS: dict[str, str] = {
    **dict.fromkeys(("table", "timeout"), WAFS),
    **dict.fromkeys((option.keyword.decode() for option in pq.Conninfo.get_defaults()), "libpq"),
}
# E'\\' is one backslash whatever standard_conforming_strings says.
_ESCAPE = sql.SQL("ESCAPE E'\\\\'")


def _like_escape(text: str) -> str:
    """Escape LIKE metacharacters so ``text`` matches only itself (escape character ``\\``)."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _text(key: str, value: str) -> str:
    """``value``, or :class:`InvalidValueError` when it holds NUL, which ``text`` cannot hold."""
    if "\0" in value:
        raise InvalidValueError(
            f"the value of {key!r} contains NUL (U+0000), which a PostgreSQL text column cannot hold; "
            "nothing was written"
        )
    return value


def _storable(key: str) -> bool:
    """True for strings a ``text`` column can hold (no NUL, encodable as UTF-8)."""
    if "\0" in key:
        return False
    try:
        key.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


class _Queries:
    """The statements of one table, composed once with its name quoted."""

    def __init__(self, table: str) -> None:
        parts = table.split(".")
        name = sql.Identifier(*parts)
        bare = parts[-1]
        fields = {"t": name, "escape": _ESCAPE}
        upsert = sql.SQL(
            " ON CONFLICT (key) DO UPDATE SET data = EXCLUDED.data, updated_at = clock_timestamp()"
        )

        def q(text: str) -> sql.Composed:
            return sql.SQL(text).format(**fields)

        self.create = [
            q(
                "CREATE TABLE IF NOT EXISTS {t} (key text PRIMARY KEY, data text NOT NULL,"
                " updated_at timestamptz NOT NULL DEFAULT clock_timestamp())"
            ),
            sql.SQL("CREATE INDEX IF NOT EXISTS {i} ON {t} (key text_pattern_ops)").format(
                i=sql.Identifier(f"idx_{bare}_prefix"), t=name
            ),
            sql.SQL("CREATE INDEX IF NOT EXISTS {i} ON {t} (updated_at DESC)").format(
                i=sql.Identifier(f"idx_{bare}_updated"), t=name
            ),
        ]
        self.get = q("SELECT data FROM {t} WHERE key = %s")
        self.set = q("INSERT INTO {t} (key, data) VALUES (%s, %s)") + upsert
        self.add = q("INSERT INTO {t} (key, data) VALUES (%s, %s) ON CONFLICT (key) DO NOTHING")
        self.cascade = q("DELETE FROM {t} WHERE key = %s OR key LIKE %s {escape}")
        self.list = q(
            "SELECT key FROM {t} WHERE key LIKE %s {escape}"
            ' ORDER BY updated_at DESC, key COLLATE "C" LIMIT %s OFFSET %s'
        )
        # ~<~ / ~>~ compare bytewise, the order of the text_pattern_ops index.
        self.keys_first = q("SELECT key FROM {t} WHERE key LIKE %s {escape} ORDER BY key USING ~<~ LIMIT %s")
        self.keys_after = q(
            "SELECT key FROM {t} WHERE key LIKE %s {escape} AND key ~>~ %s ORDER BY key USING ~<~ LIMIT %s"
        )
        self.get_many = q("SELECT key, data FROM {t} WHERE key = ANY(%s::text[])")
        self.sizes = q("SELECT key, octet_length(data) FROM {t} WHERE key = ANY(%s::text[])")
        self.set_many = q("INSERT INTO {t} (key, data) SELECT * FROM unnest(%s::text[], %s::text[])") + upsert
        self.delete = q("DELETE FROM {t} WHERE key = %s")
        self.delete_many = q("DELETE FROM {t} WHERE key = ANY(%s::text[])")
        # LIKE ANY takes no ESCAPE clause; its escape character is the default, backslash.
        self.delete_prefixes = q("DELETE FROM {t} WHERE key = ANY(%s::text[]) OR key LIKE ANY(%s::text[])")


class PostgresEngine(Engine):
    """One row per key in ``table``. ``list`` order: ``updated_at`` newest first, then key.

    ``dsn_or_connection`` is a libpq connection string or URI, or an open psycopg
    ``Connection`` (switched to autocommit; the engine cannot reconnect it and does not
    close it). With a DSN the engine connects on first use, reconnects after the connection
    is lost, and closes it in :meth:`close`. The table and its indexes are created when
    missing, on first use.

    Thread-safe: calls share one connection under a lock. ``timeout`` bounds connecting
    (``connect_timeout``), each statement (``statement_timeout``) and unacknowledged sends
    (``tcp_user_timeout``). Failures surface as :class:`~wafs.errors.BackendError`; a
    server that is down, unreachable, shutting down or timing out as
    :class:`~wafs.errors.BackendUnavailableError`, raised from the psycopg exception.
    """

    ordering = "newest-first"

    def __init__(
        self,
        dsn_or_connection: str | psycopg.Connection,
        table: str = DEFAULT_TABLE,
        *,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        if not table or not isinstance(table, str):
            raise ValueError(f"table must be a non-empty str, not {table!r}")
        if not timeout > 0:
            raise ValueError(f"timeout must be > 0 seconds, not {timeout!r}")
        self.table = table
        self.timeout = float(timeout)
        self._q = _Queries(table)
        self._lock = threading.Lock()
        self._ready = False
        if isinstance(dsn_or_connection, psycopg.Connection):
            self._dsn: str | None = None
            self._conn: psycopg.Connection | None = dsn_or_connection
            with self._translated("prepare the connection"):
                dsn_or_connection.autocommit = True
                self._prepare(dsn_or_connection)
        else:
            self._dsn = dsn_or_connection
            self._conn = None

    @classmethod
    def from_url(cls, url: str) -> PostgresEngine:
        """Open ``postgresql://user@host:port/db?table=storage&timeout=5`` (or ``postgres://``).

        ``table`` and ``timeout`` are taken out; libpq's own parameters (``sslmode``…) go to
        libpq; any other is a :class:`ValueError` listing them (:data:`URL_PARAMETERS`).
        """
        options, passed_on = query_parameters(url, URL_PARAMETERS)
        try:
            timeout = float(options.get("timeout", DEFAULT_TIMEOUT))
        except ValueError:
            raise ValueError(f"timeout in {redact(url)!r} must be a number of seconds") from None
        return cls(with_query(url, passed_on), options.get("table", DEFAULT_TABLE), timeout=timeout)

    # --- connection and errors ---------------------------------------------------------------

    def _where(self) -> str:
        if self._conn is not None and not self._conn.closed:
            info = self._conn.info
            return f"{info.host}:{info.port}/{info.dbname}"
        try:
            options = conninfo_to_dict(self._dsn or "")
        except psycopg.Error:
            return "?"
        return f"{options.get('host', '')}:{options.get('port', '')}/{options.get('dbname', '')}"

    def _connect(self) -> psycopg.Connection:
        if self._conn is not None and not self._conn.closed:
            return self._conn
        if self._dsn is None:
            raise BackendUnavailableError(
                "the connection given to PostgresEngine is closed; open the engine with a DSN to reconnect"
            )
        conn = psycopg.connect(
            self._dsn,
            autocommit=True,
            connect_timeout=max(2, math.ceil(self.timeout)),
            tcp_user_timeout=int(self.timeout * 1000),
        )
        self._conn = conn
        self._prepare(conn)
        return conn

    def _prepare(self, conn: psycopg.Connection) -> None:
        """Set the statement timeout and the UTF-8 client encoding of a new connection; create
        the table on first use.

        The encoding makes the server check every value it sends: in a ``SQL_ASCII`` database,
        which keeps any bytes, a value that is not UTF-8 fails as :class:`InvalidValueError`
        instead of reaching Python as ``bytes``.
        """
        conn.execute("SELECT set_config('statement_timeout', %s, false)", [str(int(self.timeout * 1000))])
        conn.execute("SELECT set_config('client_encoding', 'UTF8', false)")
        if not self._ready:
            for statement in self._q.create:
                conn.execute(statement)
            self._ready = True

    @contextlib.contextmanager
    def _session(self, action: str) -> Iterator[psycopg.Connection]:
        """Hold the lock and a ready connection; translate psycopg errors raised inside."""
        with self._lock, self._translated(action):
            yield self._connect()

    @contextlib.contextmanager
    def _translated(self, action: str) -> Iterator[None]:
        """The one place psycopg errors become wafs errors; drops a broken connection."""
        try:
            yield
        except WafsError:
            raise
        except (psycopg.errors.CharacterNotInRepertoire, psycopg.errors.UntranslatableCharacter) as exc:
            raise InvalidValueError(
                f"PostgreSQL at {self._where()} holds text that is not UTF-8 ({action}): {exc}"
            ) from exc
        except psycopg.errors.DiskFull as exc:
            raise NoSpaceError(f"PostgreSQL at {self._where()} is out of space ({action}): {exc}") from exc
        except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
            where = self._where()
            self._drop_broken()
            raise BackendUnavailableError(f"PostgreSQL at {where} is unavailable ({action}): {exc}") from exc
        except psycopg.Error as exc:
            raise BackendError(f"PostgreSQL at {self._where()} failed ({action}): {exc}") from exc

    def _drop_broken(self) -> None:
        if self._dsn is not None and self._conn is not None and (self._conn.broken or self._conn.closed):
            self._conn.close()
            self._conn = None

    # --- the contract ----------------------------------------------------------------------

    def get(self, key: str) -> str | None:
        with self._session(f"get {key!r}") as conn:
            row = conn.execute(self._q.get, [key]).fetchone()
        return None if row is None else row[0]

    def set(self, key: str, value: str | None) -> None:
        with self._session(f"set {key!r}") as conn:
            if value is None:
                conn.execute(self._q.cascade, [key, _like_escape(key) + "/%"])
            else:
                conn.execute(self._q.set, [key, _text(key, value)])

    def add(self, key: str, value: str) -> bool:
        """One ``INSERT … ON CONFLICT DO NOTHING``: atomic, True when the row was inserted."""
        with self._session(f"add {key!r}") as conn:
            return conn.execute(self._q.add, [key, _text(key, value)]).rowcount == 1

    def list(self, prefix: str = "", offset: int = 0, limit: int | None = 50) -> list[str]:
        with self._session(f"list {prefix!r}") as conn:
            rows = conn.execute(self._q.list, [_like_escape(prefix) + "%", limit, offset]).fetchall()
        return [key for (key,) in rows]

    # --- mixins, overridden for speed --------------------------------------------------------

    def iter_keys(self, prefix: str = "") -> Iterator[str]:
        """Stream the keys under ``prefix`` in byte order, 1000 per round trip (keyset paging)."""
        pattern = _like_escape(prefix) + "%"
        last: str | None = None
        while True:
            with self._session(f"list {prefix!r}") as conn:
                if last is None:
                    rows = conn.execute(self._q.keys_first, [pattern, BATCH]).fetchall()
                else:
                    rows = conn.execute(self._q.keys_after, [pattern, last, BATCH]).fetchall()
            for (key,) in rows:
                yield key
            if len(rows) < BATCH:
                return
            last = rows[-1][0]

    def get_many(self, keys: Iterable[str]) -> dict[str, str | None]:
        keys = list(keys)
        with self._session(f"read {len(keys)} keys") as conn:
            found = dict(conn.execute(self._q.get_many, [keys]).fetchall())
        return {key: found.get(key) for key in keys}

    def sizes(self, keys: Iterable[str]) -> dict[str, int | None]:
        keys = list(keys)
        with self._session(f"size {len(keys)} keys") as conn:
            found = dict(conn.execute(self._q.sizes, [keys]).fetchall())
        return {key: found.get(key) for key in keys}

    def set_many(self, items: Mapping[str, str]) -> None:
        """One statement, so one transaction: all values are stored or none."""
        values = [_text(key, value) for key, value in items.items()]
        with self._session(f"write {len(items)} keys") as conn:
            conn.execute(self._q.set_many, [list(items.keys()), values])

    def delete(self, key: str) -> None:
        with self._session(f"delete {key!r}") as conn:
            conn.execute(self._q.delete, [key])

    def delete_many(self, keys: Iterable[str]) -> None:
        storable = [key for key in keys if _storable(key)]
        with self._session(f"delete {len(storable)} keys") as conn:
            conn.execute(self._q.delete_many, [storable])

    def delete_prefixes(self, prefixes: Iterable[str]) -> None:
        """Cascade every prefix in one DELETE statement."""
        prefixes = list(prefixes)
        patterns = [_like_escape(prefix) + "/%" for prefix in prefixes]
        with self._session(f"cascade {len(prefixes)} prefixes") as conn:
            conn.execute(self._q.delete_prefixes, [prefixes, patterns])

    def close(self) -> None:
        """Close the connection the engine opened; a connection passed in is left open."""
        with self._lock:
            if self._dsn is not None and self._conn is not None:
                self._conn.close()
                self._conn = None

    def __repr__(self) -> str:
        return f"PostgresEngine({self._where()}, table={self.table!r})"


__all__ = ["PostgresEngine", "DEFAULT_TABLE", "DEFAULT_TIMEOUT"]
