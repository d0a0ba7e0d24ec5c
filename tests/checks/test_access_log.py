"""access_log check: a real nginx writes its access logs (text and JSON) in a temp dir; counts, rates, quantiles, rotation, restarts."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest

from checks import build_check
from checks.access_log import AccessLogCheck, compile_format
from checks.config import ConfigError, load_yaml_file
from checks.model import Event, Sample
from tests.servers.nginx import TIMED_FORMAT, Nginx

ROOT = Path(__file__).resolve().parents[2]
DECLARED = {m.name for m in AccessLogCheck.METRICS}


def make(path: Path, *, state_dir: Path | None = None, **kw) -> AccessLogCheck:
    cfg = {"type": "access_log", "path": str(path), "format": "custom", "log_format": TIMED_FORMAT, **kw}
    return build_check(cfg, state_dir=str(state_dir) if state_dir else None)  # type: ignore[return-value]


def val(readings: list, name: str, pattern: str = "all", cls: str | None = None, quantile: str | None = None) -> float | None:
    out = [
        r.value
        for r in readings
        if isinstance(r, Sample)
        and r.name == name
        and r.tags.get("pattern", "all") == pattern
        and (cls is None or r.tags.get("status_class") == cls)
        and (quantile is None or r.tags.get("quantile") == quantile)
    ]
    assert len(out) <= 1, (name, pattern, cls, out)
    return out[0] if out else None


def counts(readings: list, pattern: str = "all") -> dict[str, int]:
    return {c: int(val(readings, "access_log.requests", pattern, c) or 0) for c in ("1xx", "2xx", "3xx", "4xx", "5xx")}


def requests(ngx: Nginx, spec: dict[str, int]) -> int:
    n = 0
    for path, times in spec.items():
        for _ in range(times):
            ngx.get(path)
            n += 1
    return n


MIX = {"/ok": 7, "/api/items?id=3": 3, "/moved": 2, "/missing": 4, "/err": 3}  # 10×2xx, 2×3xx, 4×4xx, 3×5xx
MIX_COUNTS = {"1xx": 0, "2xx": 10, "3xx": 2, "4xx": 4, "5xx": 3}


# ---------------------------------------------------------------- configuration


@pytest.mark.parametrize(
    ("raw", "path", "words"),
    [
        ({"type": "access_log"}, "path", "is required"),
        ({"type": "access_log", "path": "access.log"}, "path", "absolute"),
        ({"type": "access_log", "path": "/x.log", "format": "custom"}, "log_format", "is required"),
        ({"type": "access_log", "path": "/x.log", "format": "custom", "log_format": "$remote_addr $request"}, "log_format", "$status"),
        ({"type": "access_log", "path": "/x.log", "format": "custom", "log_format": "$status$request_time"}, "log_format", "directly followed"),
        ({"type": "access_log", "path": "/x.log", "log_format": "$status"}, "log_format", "only used with format: custom"),
        ({"type": "access_log", "path": "/x.log", "format": "apache"}, "format", "'common'"),
        ({"type": "access_log", "path": "/x.log", "patterns": [{"name": "api", "match": "^/api/("}]}, "patterns[0].match", "invalid regular expression"),
        ({"type": "access_log", "path": "/x.log", "patterns": [{"name": "all", "match": "x"}]}, "patterns[0].name", "'all'"),
        ({"type": "access_log", "path": "/x.log", "patterns": [{"name": "a", "match": "x"}, {"name": "a", "match": "y"}]}, "patterns", "duplicate"),
        ({"type": "access_log", "path": "/x.log", "patterns": [{"name": "a", "regex": "x"}]}, "patterns[0].regex", "unknown key"),
        ({"type": "access_log", "path": "/x.log", "max_line_bytes": "2MiB", "max_bytes_per_run": "1MiB"}, "max_line_bytes", "max_bytes_per_run"),
        ({"type": "access_log", "path": "/x.log", "request_time_unit": "min"}, "request_time_unit", "'us'"),
    ],
)
def test_invalid_config_names_the_problem(raw: dict, path: str, words: str) -> None:
    with pytest.raises(ConfigError) as ei:
        build_check(raw)
    assert ei.value.path == path
    assert words in ei.value.message


def test_example_config_is_valid() -> None:
    data, _ = load_yaml_file(ROOT / "config" / "checks" / "access_log.yaml")
    checks = [c for c in data["checks"] if c["type"] == "access_log"]
    assert len(checks) >= 2
    for i, c in enumerate(checks):
        assert isinstance(build_check(c, f"checks[{i}]"), AccessLogCheck)


def test_format_with_multiple_upstreams_and_repeated_variable() -> None:
    rx = compile_format('$status "$request" $upstream_response_time $request_time $status')
    m = rx.match('502 "GET /a HTTP/1.1" 0.010, 0.020 : 0.005 0.040 502')
    assert m and m.group("upstream_response_time") == "0.010, 0.020 : 0.005" and m.group("request_time") == "0.040"


# ---------------------------------------------------------------- against a real nginx


async def test_counts_rates_ratio_and_quantiles_per_pattern(nginx_server: Nginx) -> None:
    ngx = nginx_server
    ngx.get("/ok")  # before the check starts: not counted (it starts at the end of the file)
    ngx.wait_logged(ngx.log, 1)
    check = make(ngx.log, patterns=[{"name": "api", "match": "^/api/"}, {"name": "slow", "match": "^/slow$"}])
    t_first0 = time.time()
    first = await check.run()
    t_first1 = time.time()
    assert counts(first) == dict.fromkeys(MIX_COUNTS, 0)
    assert val(first, "access_log.requests_per_second", cls="2xx") is None  # no window yet

    n = requests(ngx, MIX) + requests(ngx, {"/slow?ms=60": 4, "/slow?ms=60&status=503": 1})
    ngx.wait_logged(ngx.log, 1 + n)
    t_second0 = time.time()
    second = await check.run()
    t_second1 = time.time()
    await check.close()

    assert {r.name for r in second if isinstance(r, Sample)} <= DECLARED
    assert not [r for r in second if isinstance(r, Event)]
    want = {**MIX_COUNTS, "2xx": 14, "5xx": 4}
    assert counts(second) == want
    assert counts(second, "api") == {**dict.fromkeys(MIX_COUNTS, 0), "2xx": 3}
    assert counts(second, "slow") == {**dict.fromkeys(MIX_COUNTS, 0), "2xx": 4, "5xx": 1}
    for cls, c in want.items():
        rate = val(second, "access_log.requests_per_second", cls=cls)
        # the window lies between the two runs: bounds, not timing
        assert c / (t_second1 - t_first0) <= rate <= c / (t_second0 - t_first1) + 1e-9, cls
        assert val(second, "access_log.requests_total", cls=cls) == c
    assert val(second, "access_log.server_error_ratio") == pytest.approx(4 / 24)
    assert val(second, "access_log.server_error_ratio", "slow") == pytest.approx(1 / 5)
    assert val(second, "access_log.server_error_ratio", "api") == 0.0
    # the upstream answers after 60 ms: nginx logs it in $request_time and $upstream_response_time
    for q in ("p50", "p95", "p99"):
        assert 0.055 <= val(second, "access_log.request_time_seconds", "slow", quantile=q) < 1.0
        assert 0.055 <= val(second, "access_log.upstream_time_seconds", "slow", quantile=q) < 1.0
        assert val(second, "access_log.request_time_seconds", "api", quantile=q) < 0.055
        assert val(second, "access_log.upstream_time_seconds", "api", quantile=q) is None  # no upstream: "-"
    assert val(second, "access_log.request_time_seconds", quantile="p50") < 0.055  # most requests are instant
    assert val(second, "access_log.request_time_seconds", quantile="p99") >= 0.055
    assert val(second, "access_log.unparsed_lines") == 0


async def test_json_log(nginx_server: Nginx) -> None:
    ngx = nginx_server
    check = build_check({"type": "access_log", "path": str(ngx.json_log), "format": "json", "from_beginning": True,
                         "patterns": [{"name": "slow", "match": "^/slow"}]})
    n = requests(ngx, MIX) + requests(ngx, {"/slow?ms=60": 2})
    ngx.wait_logged(ngx.json_log, n)
    r = await check.run()
    await check.close()
    assert counts(r) == {**MIX_COUNTS, "2xx": 12}
    assert counts(r, "slow")["2xx"] == 2
    assert val(r, "access_log.request_time_seconds", "slow", quantile="p50") >= 0.055
    assert val(r, "access_log.upstream_time_seconds", "slow", quantile="p99") >= 0.055
    assert val(r, "access_log.unparsed_lines") == 0


async def test_rename_rotation_with_reopen_loses_nothing(nginx_server: Nginx) -> None:
    """logrotate's default: rename, (nginx keeps writing to the renamed file), reopen → new file."""
    ngx = nginx_server
    check = make(ngx.log)
    await check.run()
    total = 0
    written = 0

    def burst(k: int) -> None:
        nonlocal written
        requests(ngx, {"/ok": k})
        written += k

    async def step() -> None:
        nonlocal total
        total += counts(await check.run())["2xx"]

    burst(5)
    await step()
    burst(3)  # not read before the rename
    os.rename(ngx.log, ngx.log.with_name("access.log.1"))
    burst(4)  # still written to the renamed file: nginx has not reopened yet
    await step()  # path missing: keeps reading the renamed file by its descriptor
    burst(2)
    ngx.reopen_logs()
    burst(6)  # into the new access.log
    ngx.wait_logged(ngx.log, 6)
    await step()
    burst(1)
    await step()
    await step()
    await step()  # the old file was idle for two runs: closed
    assert check._tailer.old == []  # type: ignore[attr-defined]
    await check.close()
    assert total == written == 21


async def test_copytruncate_rotation_no_double_count(nginx_server: Nginx) -> None:
    ngx = nginx_server
    check = make(ngx.log)
    await check.run()
    requests(ngx, {"/ok": 5, "/err": 1})
    ngx.wait_logged(ngx.log, 6)
    assert counts(await check.run()) == {**dict.fromkeys(MIX_COUNTS, 0), "2xx": 5, "5xx": 1}
    shutil.copyfile(ngx.log, ngx.log.with_name("access.log.1"))
    os.truncate(ngx.log, 0)  # nginx writes with O_APPEND: its next line starts the emptied file
    requests(ngx, {"/ok": 2, "/missing": 1})
    ngx.wait_logged(ngx.log, 3)
    assert counts(await check.run()) == {**dict.fromkeys(MIX_COUNTS, 0), "2xx": 2, "4xx": 1}
    # truncated again, then more written than we had read: detected by the first bytes, not the size
    os.truncate(ngx.log, 0)
    requests(ngx, {"/big": 8})
    ngx.wait_logged(ngx.log, 8)
    assert counts(await check.run())["2xx"] == 8
    await check.close()


async def test_partial_last_line_counted_once_complete(nginx_server: Nginx) -> None:
    ngx = nginx_server
    check = make(ngx.log)
    await check.run()
    ngx.get("/ok")
    ngx.wait_logged(ngx.log, 1)
    line = ngx.log.read_text().splitlines()[0].replace("GET /ok", "GET /half").replace(" 200 ", " 503 ")
    with open(ngx.log, "a") as f:  # what a writer flushing mid-line leaves behind
        f.write(line[:40])
    r = await check.run()
    assert counts(r)["2xx"] == 1 and counts(r)["5xx"] == 0 and val(r, "access_log.unparsed_lines") == 0
    assert counts(await check.run())["5xx"] == 0
    with open(ngx.log, "a") as f:
        f.write(line[40:] + "\n")
    ngx.get("/ok")
    ngx.wait_logged(ngx.log, 3)
    r = await check.run()
    assert counts(r) == {**dict.fromkeys(MIX_COUNTS, 0), "2xx": 1, "5xx": 1}
    await check.close()


async def test_position_and_totals_kept_across_restarts(nginx_server: Nginx, tmp_path: Path) -> None:
    ngx = nginx_server
    state = tmp_path / "state"
    c1 = make(ngx.log, state_dir=state)
    await c1.run()
    requests(ngx, {"/ok": 3})
    ngx.wait_logged(ngx.log, 3)
    assert counts(await c1.run())["2xx"] == 3
    await c1.close()

    requests(ngx, {"/ok": 2})  # while the agent is down
    ngx.wait_logged(ngx.log, 5)
    c2 = make(ngx.log, state_dir=state)
    r = await c2.run()
    assert counts(r)["2xx"] == 2
    assert val(r, "access_log.requests_total", cls="2xx") == 5
    assert val(r, "access_log.requests_per_second", cls="2xx") > 0  # window since the saved last run
    await c2.close()

    # rotated while the agent is down: the rest of the renamed file (found by inode), then the new file
    requests(ngx, {"/err": 2})
    ngx.wait_logged(ngx.log, 7)
    os.rename(ngx.log, ngx.log.with_name("access.log.1"))
    ngx.reopen_logs()
    requests(ngx, {"/missing": 4})
    ngx.wait_logged(ngx.log, 4)
    c3 = make(ngx.log, state_dir=state)
    r = await c3.run()
    assert counts(r) == {**dict.fromkeys(MIX_COUNTS, 0), "4xx": 4, "5xx": 2}
    assert val(r, "access_log.requests_total", cls="2xx") == 5
    assert counts(await c3.run()) == dict.fromkeys(MIX_COUNTS, 0)
    await c3.close()


async def test_unparsed_lines_reported_and_missing_file_raises(tmp_path: Path) -> None:
    """Apache combined with %D (µs) appended, written by the test (the parser is under test, not a server)."""
    log = tmp_path / "apache.log"
    check = build_check({"type": "access_log", "path": str(log), "format": "custom", "request_time_unit": "us", "from_beginning": True,
                         "log_format": '$remote_addr $ident $remote_user [$time_local] "$request" $status $body_bytes_sent "$http_referer" "$http_user_agent" $request_time'})
    with pytest.raises(FileNotFoundError, match="does not exist"):
        await check.run()
    log.write_text(
        '10.0.0.1 - - [04/Dec/2026:10:00:00 +0100] "GET /a HTTP/1.1" 200 5 "-" "ua x" 250000\n'
        '10.0.0.1 - bob [04/Dec/2026:10:00:01 +0100] "POST /b HTTP/1.1" 502 0 "http://r/" "ua" 1500000\n'
        "garbage line\n"
        '10.0.0.1 - - [04/Dec/2026:10:00:02 +0100] "GET /c HTTP/1.1" 999 5 "-" "ua" 1\n'
    )
    r = await check.run()
    await check.close()
    assert counts(r) == {"1xx": 0, "2xx": 1, "3xx": 0, "4xx": 0, "5xx": 1}
    assert val(r, "access_log.request_time_seconds", quantile="p50") == pytest.approx(0.25, rel=0.02)  # 250000 µs
    assert val(r, "access_log.request_time_seconds", quantile="p99") <= 1.5 * 1.02
    assert val(r, "access_log.unparsed_lines") == 2
    (ev,) = [e for e in r if isinstance(e, Event)]
    assert ev.kind == "access_log.unparsed" and "garbage line" in ev.message and ev.data["unparsed"] == 2


async def test_combined_format_ignores_trailing_fields(tmp_path: Path) -> None:
    log = tmp_path / "combined.log"
    log.write_text(
        '::1 - - [04/Dec/2026:10:00:00 +0000] "GET /x?q=1 HTTP/2.0" 304 0 "-" "Mozilla/5.0 (X11)" 0.002 "extra"\n'
        '::1 - - [04/Dec/2026:10:00:00 +0000] "GET /x HTTP/1.1" 101 0 "-" "ws"\n'
    )
    check = build_check({"type": "access_log", "path": str(log), "from_beginning": True, "patterns": [{"name": "x", "match": "^/x$"}]})
    r = await check.run()
    await check.close()
    assert counts(r, "x") == {"1xx": 1, "2xx": 0, "3xx": 1, "4xx": 0, "5xx": 0}
    assert val(r, "access_log.request_time_seconds", "x", quantile="p50") is None


async def test_apache_common_format(tmp_path: Path) -> None:
    log = tmp_path / "common.log"
    log.write_text(
        '192.0.2.7 - frank [10/Oct/2000:13:55:36 -0700] "GET /apache_pb.gif HTTP/1.0" 200 2326\n'
        '192.0.2.7 ident - [10/Oct/2000:13:55:37 -0700] "GET /x HTTP/1.0" 404 -\n'
    )
    check = build_check({"type": "access_log", "path": str(log), "format": "common", "from_beginning": True})
    r = await check.run()
    await check.close()
    assert counts(r) == {"1xx": 0, "2xx": 1, "3xx": 0, "4xx": 1, "5xx": 0}
    assert val(r, "access_log.unparsed_lines") == 0


async def test_backlog_read_over_several_runs_and_long_lines_skipped(tmp_path: Path) -> None:
    log = tmp_path / "big.log"
    line = '::1 - - [04/Dec/2026:10:00:00 +0000] "GET /{p} HTTP/1.1" {s} 0 "-" "ua"\n'
    with open(log, "w") as f:
        for i in range(300):
            f.write(line.format(p="a" * 20, s=200 + (i % 2) * 300))
        f.write(line.format(p="x" * 5000, s=200))  # longer than max_line_bytes
        for i in range(100):
            f.write(line.format(p="b", s=404))
    check = build_check({"type": "access_log", "path": str(log), "from_beginning": True, "max_bytes_per_run": 4096, "max_line_bytes": 1024})
    got = dict.fromkeys(MIX_COUNTS, 0)
    unparsed = 0
    for _ in range(20):
        r = await check.run()
        for k, v in counts(r).items():
            got[k] += v
        unparsed += int(val(r, "access_log.unparsed_lines"))
    await check.close()
    assert got == {**dict.fromkeys(MIX_COUNTS, 0), "2xx": 150, "5xx": 150, "4xx": 100}
    assert unparsed == 1


async def test_corrupt_state_file_starts_afresh(tmp_path: Path) -> None:
    log = tmp_path / "a.log"
    log.write_text('::1 - - [04/Dec/2026:10:00:00 +0000] "GET / HTTP/1.1" 200 0 "-" "ua"\n')
    state = tmp_path / "state"
    state.mkdir()
    (state / "access_log.state.json").write_text("{not json")
    check = build_check({"type": "access_log", "path": str(log), "from_beginning": True}, state_dir=str(state))
    r = await check.run()
    await check.close()
    assert counts(r)["2xx"] == 1
    assert b'"offset"' in (state / "access_log.state.json").read_bytes()
