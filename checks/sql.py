"""SQL probe: connect to PostgreSQL (psycopg 3, async) or MySQL/MariaDB (PyMySQL in a thread) and time a query."""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, ClassVar
from urllib.parse import parse_qsl, unquote, urlsplit

from checks import MissingExtra, require
from checks.base import (
    AUTH_FAILED,
    CONNECTION_FAILED,
    DNS_ERROR,
    ERROR,
    MISMATCH,
    TIMEOUT,
    TLS_ERROR,
    CheckConfig,
    Probe,
    ProbeResult,
    probe_metrics,
)
from checks.catalogue import MetricSpec
from checks.config import ConfigError
from checks.model import Sample
from checks.tcp import ProbeFailure, failure_result, probe_deadline, resolve

POSTGRES_SCHEMES = ("postgresql", "postgres")
MYSQL_SCHEMES = ("mysql", "mariadb")
#: DSN query parameters accepted for MySQL/MariaDB
MYSQL_PARAMS = ("ssl_ca", "ssl_cert", "ssl_key", "ssl_verify_cert", "ssl_verify_identity", "charset")


#: PyMySQL is blocking: its calls run here, not in the loop's default executor, so that databases that hang
#: (each call holds a thread up to the check's timeout) cannot starve other checks' `to_thread` work.
_MYSQL_THREADS = 16
_mysql_executor: ThreadPoolExecutor | None = None


def _executor() -> ThreadPoolExecutor:
    global _mysql_executor
    if _mysql_executor is None:
        _mysql_executor = ThreadPoolExecutor(_MYSQL_THREADS, thread_name_prefix="infrawatch-sql")
    return _mysql_executor


def _scheme(dsn: str) -> str:
    return dsn.split("://", 1)[0].lower() if "://" in dsn else ""


@dataclass(frozen=True)
class _Dsn:
    """What the probe needs from a DSN, with the password kept apart from anything printed."""

    driver: str  # "postgres" | "mysql"
    host: str | None
    port: int
    user: str
    password: str | None
    database: str
    params: dict[str, str]

    @property
    def label(self) -> str:
        scheme = "postgresql" if self.driver == "postgres" else "mysql"
        host = self.host or "localhost"
        host = f"[{host}]" if ":" in host else host
        user = f"{self.user}@" if self.user else ""
        return f"{scheme}://{user}{host}:{self.port}/{self.database}"


def parse_dsn(dsn: str) -> _Dsn:
    """Parse and validate a postgresql:// or mysql:// DSN; ValueError names what is wrong (never the password)."""
    scheme = _scheme(dsn)
    if scheme in POSTGRES_SCHEMES:
        try:
            psycopg = require("psycopg", "postgres", "sql")
        except MissingExtra as e:
            raise ConfigError("target", str(e)) from None
        try:
            d = psycopg.conninfo.conninfo_to_dict(dsn)
        except psycopg.Error as e:
            raise ValueError(f"target: invalid PostgreSQL DSN: {str(e).splitlines()[0]}") from None
        port_s = str(d.get("port") or "5432").split(",")[0]
        return _Dsn(
            "postgres", d.get("host"), int(port_s) if port_s.isdigit() else 5432, str(d.get("user") or ""),
            d.get("password"), str(d.get("dbname") or d.get("user") or ""), {},
        )
    if scheme in MYSQL_SCHEMES:
        try:
            require("pymysql", "mysql", "sql")
        except MissingExtra as e:
            raise ConfigError("target", str(e)) from None
        u = urlsplit(dsn)
        try:
            port = u.port or 3306
        except ValueError as e:
            raise ValueError(f"target: {e}") from None
        params = dict(parse_qsl(u.query, keep_blank_values=True))
        unknown = sorted(set(params) - set(MYSQL_PARAMS))
        if unknown:
            raise ValueError(f"target: unknown DSN parameter(s) {', '.join(unknown)} (known: {', '.join(MYSQL_PARAMS)})")
        return _Dsn(
            "mysql", u.hostname or "localhost", port, unquote(u.username or ""),
            unquote(u.password) if u.password is not None else None, unquote(u.path.lstrip("/")), params,
        )
    raise ValueError(
        "target: expected a DSN starting with postgresql:// (PostgreSQL) or mysql:// (MySQL/MariaDB)"
        + (f", got {scheme}://" if scheme else "")
    )


@dataclass(frozen=True, kw_only=True)
class SqlConfig(CheckConfig):
    #: postgresql://user:password@host:5432/db?sslmode=require  or  mysql://user:password@host:3306/db
    target: str = field(repr=False)
    #: the query run after connecting
    query: str = "SELECT 1"
    #: expected value of the first column of the first row, compared as text (→ mismatch)
    expect: str | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        parse_dsn(self.target)
        if not self.query.strip():
            raise ValueError("query must not be empty")


class SqlCheck(Probe[SqlConfig]):
    """Connect, run the query, compare the first value; driver chosen by the DSN scheme."""

    Config: ClassVar[type[CheckConfig]] = SqlConfig
    METRICS = probe_metrics("sql", "database") + (
        MetricSpec("sql.connect_seconds", "seconds", "gauge", "time to connect and authenticate", ("target",)),
        MetricSpec("sql.query_seconds", "seconds", "gauge", "time to run the query and fetch its first row", ("target",)),
        MetricSpec("sql.rows", "count", "gauge", "rows the query returned or affected (as the driver reports it)", ("target",)),
        MetricSpec("sql.value", "value", "gauge", "first column of the first row, when numeric", ("target",)),
    )

    def __init__(self, config: SqlConfig, *, state_dir: str | None = None) -> None:
        super().__init__(config, state_dir=state_dir)
        self._dsn = parse_dsn(config.target)

    def target_label(self) -> str:
        return self._dsn.label

    def _scrub(self, text: str) -> str:
        pw = self._dsn.password
        return text.replace(pw, "***") if pw else text

    async def probe(self) -> ProbeResult:
        c = self.config
        deadline = probe_deadline(c)
        res = ProbeResult()
        phase = "resolving"
        ts = time.time()
        try:
            async with asyncio.timeout(deadline):
                ip = await self._resolve()
                phase = "connecting"
                if self._dsn.driver == "postgres":
                    connect_s, query_s, row, rows = await self._postgres(ip)
                else:
                    loop = asyncio.get_running_loop()
                    connect_s, query_s, row, rows = await loop.run_in_executor(_executor(), functools.partial(self._mysql, ip))
            res.samples += [Sample("sql.connect_seconds", connect_s, ts), Sample("sql.query_seconds", query_s, ts)]
            if rows is not None and rows >= 0:
                res.samples.append(Sample("sql.rows", float(rows), ts))
            value = row[0] if row else None
            num = _number(value)
            if num is not None:
                res.samples.append(Sample("sql.value", num, ts))
            if c.expect is not None:
                got = _text(value) if row else None
                if got != c.expect:
                    res.result = MISMATCH
                    res.reason = f"query returned {got!r}, expected {c.expect!r}" if row else f"query returned no row, expected {c.expect!r}"
        except (TimeoutError, ProbeFailure) as e:
            res.result, res.reason = failure_result(e, deadline, phase)
        res.reason = self._scrub(res.reason)
        return res

    async def _resolve(self) -> str | None:
        """Resolve the host now (an IP for the driver); None when the driver should handle it (sockets, lists)."""
        h = self._dsn.host
        if not h or h.startswith("/") or "," in h:
            return None
        try:
            ipaddress.ip_address(h)
            return h
        except ValueError:
            pass
        addrs = await resolve(h, self._dsn.port)
        return str(addrs[0][1][0])

    # ------------------------------------------------------------ PostgreSQL

    async def _postgres(self, ip: str | None) -> tuple[float, float, tuple[Any, ...] | None, int | None]:
        psycopg = require("psycopg", "postgres", "sql")
        kw: dict[str, Any] = {"autocommit": True, "connect_timeout": max(2, int(self.config.effective_timeout + 0.999))}
        if ip is not None and ip != self._dsn.host:
            kw["hostaddr"] = ip
        t0 = time.perf_counter()
        try:
            conn = await psycopg.AsyncConnection.connect(self.config.target, **kw)
        except psycopg.Error as e:
            raise ProbeFailure(*_pg_connect_failure(e)) from None
        t1 = time.perf_counter()
        try:
            cur = await conn.execute(self.config.query)
            row = await cur.fetchone() if cur.description else None
            rows = cur.rowcount
            t2 = time.perf_counter()
        except psycopg.Error as e:
            state = f" [{e.sqlstate}]" if getattr(e, "sqlstate", None) else ""
            raise ProbeFailure(ERROR, f"query failed{state}: {_first_line(e)}") from None
        finally:
            await conn.close()
        return t1 - t0, t2 - t1, tuple(row) if row is not None else None, rows

    # ------------------------------------------------------------ MySQL / MariaDB (blocking, in a thread)

    def _mysql(self, ip: str | None) -> tuple[float, float, tuple[Any, ...] | None, int | None]:
        pymysql = require("pymysql", "mysql", "sql")
        d = self._dsn
        p = d.params
        t = self.config.effective_timeout
        kw: dict[str, Any] = dict(
            host=ip or d.host, port=d.port, user=d.user or None, password=d.password or "", database=d.database or None,
            connect_timeout=t, read_timeout=t, write_timeout=t, autocommit=True, charset=p.get("charset", "utf8mb4"),
        )
        if any(k.startswith("ssl_") for k in p):
            kw.update(
                ssl_ca=p.get("ssl_ca"), ssl_cert=p.get("ssl_cert"), ssl_key=p.get("ssl_key"),
                ssl_verify_cert=_truthy(p.get("ssl_verify_cert", "true")),
                ssl_verify_identity=_truthy(p.get("ssl_verify_identity", "false")),
            )
            if kw["ssl_verify_identity"]:
                kw["host"] = d.host  # the name must match the certificate
        t0 = time.perf_counter()
        try:
            conn = pymysql.connect(**kw)
        except pymysql.err.MySQLError as e:
            raise ProbeFailure(*_mysql_connect_failure(e)) from None
        t1 = time.perf_counter()
        try:
            with conn.cursor() as cur:
                rows = cur.execute(self.config.query)
                row = cur.fetchone() if cur.description else None
            t2 = time.perf_counter()
        except pymysql.err.MySQLError as e:
            raise ProbeFailure(ERROR, f"query failed: {_mysql_text(e)}") from None
        finally:
            try:
                conn.close()
            except Exception:
                pass
        return t1 - t0, t2 - t1, tuple(row) if row is not None else None, rows


def _first_line(e: BaseException) -> str:
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    return lines[0] if lines else type(e).__name__


def _pg_connect_failure(e: Any) -> tuple[str, str]:
    text = " ".join(ln.strip() for ln in str(e).splitlines() if ln.strip())
    low = text.lower()
    state = str(getattr(e, "sqlstate", "") or "")
    if state.startswith("28") or "authentication failed" in low or "no password supplied" in low or "pg_hba.conf" in low:
        return AUTH_FAILED, text
    if "timeout expired" in low or "timed out" in low:
        return TIMEOUT, text
    if "ssl" in low and ("certificate" in low or "handshake" in low or "ssl error" in low or "does not support ssl" in low):
        return TLS_ERROR, text
    if "could not translate host name" in low:
        return DNS_ERROR, text
    if "connection refused" in low or "no route to host" in low or "could not connect" in low or "connection to server" in low:
        if "fatal" not in low:
            return CONNECTION_FAILED, text
    return ERROR, text


def _mysql_text(e: Any) -> str:
    if len(getattr(e, "args", ())) >= 2:
        return f"({e.args[0]}) {e.args[1]}"
    return str(e)


def _mysql_connect_failure(e: Any) -> tuple[str, str]:
    code = e.args[0] if e.args and isinstance(e.args[0], int) else 0
    text = _mysql_text(e)
    low = text.lower()
    if code in (1044, 1045, 1698, 1251):
        return AUTH_FAILED, text
    if "timed out" in low:
        return TIMEOUT, text
    if "ssl" in low or "certificate" in low:
        return TLS_ERROR, text
    if code == 2005:
        return DNS_ERROR, text
    if code in (2002, 2003, 2006, 2013):
        return CONNECTION_FAILED, text
    return ERROR, text


def _truthy(v: str | None) -> bool:
    return str(v).lower() in ("1", "true", "yes", "on")


def _number(v: Any) -> float | None:
    if isinstance(v, bool):
        return float(v)
    if isinstance(v, (int, float)):
        return float(v)
    try:
        from decimal import Decimal

        if isinstance(v, Decimal):
            return float(v)
    except ImportError:  # pragma: no cover
        pass
    return None


def _text(v: Any) -> str | None:
    if v is None:
        return None
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (bytes, bytearray)):
        return v.decode("utf-8", "replace")
    return str(v)
