"""exception_log check: real Python (logging), Java (java launcher) and PHP (php-cli) traces tailed from files,
with rotation mid-test, a partial last line completed later, restarts — no loss, no duplicates."""

from __future__ import annotations

import logging
import logging.handlers
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from checks import build_check
from checks.exception_log import Grouper, parse_java, parse_python, parse_stack
from checks.config import ConfigError

JAVA_SRC = """
public class Shop {
    static void load(int id) { throw new IllegalStateException("db timeout for order " + id); }
    static void get(int id) {
        try { load(id); } catch (IllegalStateException e) { throw new RuntimeException("order " + id + " not found", e); }
    }
    public static void main(String[] a) {
        int n = Integer.parseInt(a[0]);
        for (int i = 0; i < n; i++) {
            try { get(40 + i); } catch (RuntimeException e) {
                System.out.println("2026-12-04 10:00:00 ERROR [main] com.shop.order.OrderController - request failed");
                e.printStackTrace(System.out);
            }
        }
        System.out.println("2026-12-04 10:00:09 INFO [main] com.shop.order.OrderController - done");
    }
}
"""

PHP_SRC = """<?php
function charge($id) { throw new RuntimeException("gateway timeout for payment $id"); }
charge(7);
"""


def _check(tmp: Path, paths: list[str], state: str = "state", **kw: Any):  # noqa: ANN202
    sd = tmp / state
    sd.mkdir(exist_ok=True)
    return build_check({"type": "exception_log", "paths": paths, "from_beginning": True, **kw}, state_dir=str(sd))


def _counts(readings: list[Any]) -> dict[str, int]:
    out: dict[str, int] = {}
    for r in readings:
        if getattr(r, "kind", None) == "app.exception":
            out[r.data["type"]] = out.get(r.data["type"], 0) + r.data["count"]
    return out


async def _drain(check: Any) -> list[Any]:
    """Two runs: the second finishes a record left pending at the end of the first (the file went idle)."""
    return (await check.run()) + (await check.run())


def _chained(n: int) -> None:
    def load(oid: int) -> None:
        raise KeyError(f"order {oid}")

    try:
        try:
            load(n)
        except KeyError as e:
            raise RuntimeError(f"cannot load order {n}") from e
    except RuntimeError:
        logging.getLogger("shop.order.api").exception("request failed")


async def test_python_chained_traces_rotation_partial_line_restart(tmp_path: Path) -> None:
    log_path = tmp_path / "app.log"
    h = logging.handlers.RotatingFileHandler(log_path, maxBytes=10**9, backupCount=3)
    h.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    lg = logging.getLogger("shop.order.api")
    lg.addHandler(h)
    lg.propagate = False
    rules = {"order": {"loggers": ["shop.order"]}}
    check = _check(tmp_path, [str(log_path)], module_rules=rules)
    try:
        for i in range(3):
            _chained(i)
        lg.info("an ordinary line")
        got = await _drain(check)
        assert _counts(got) == {"RuntimeError": 3}
        evs = [r for r in got if getattr(r, "kind", None) == "app.exception"]
        assert len({e.data["fingerprint"] for e in evs}) == 1  # one group
        ev = evs[0]
        assert ev.tags["module"] == "order" and ev.data["logger"] == "shop.order.api"
        assert "The above exception was the direct cause" in ev.data["stack"] and "KeyError" in ev.data["stack"]
        assert ev.data["frames"][-1]["function"] == "_chained"
        # rotation mid-test: two traces in the old file, two in the new one
        _chained(10)
        _chained(11)
        h.doRollover()
        _chained(12)
        _chained(13)
        assert _counts(await _drain(check)) == {"RuntimeError": 4}
        assert _counts(await _drain(check)) == {}  # nothing twice
        # a partial line at EOF, completed later
        with open(log_path, "a") as f:
            f.write('Traceback (most recent call last):\n  File "/srv/shop/pay.py", line 3, in charge\n    x()\nValueEr')
        assert _counts(await _drain(check)) == {}
        with open(log_path, "a") as f:
            f.write("ror: amount 12 invalid\n")
        got = _counts(await _drain(check))
        assert got == {"ValueError": 1}
    finally:
        await check.close()
    # restart with the same state dir: only what is new
    _chained(20)
    check2 = _check(tmp_path, [str(log_path)], module_rules=rules)
    try:
        assert _counts(await _drain(check2)) == {"RuntimeError": 1}
    finally:
        await check2.close()
        lg.removeHandler(h)
        h.close()


async def test_partial_trace_survives_restart(tmp_path: Path) -> None:
    p = tmp_path / "a.log"
    p.write_text("INFO start\nTraceback (most recent call last):\n  File \"/srv/a.py\", line 1, in f\n")
    c1 = _check(tmp_path, [str(p)])
    assert _counts(await c1.run()) == {}  # pending, still growing
    await c1.close()
    with open(p, "a") as f:
        f.write("ZeroDivisionError: division by zero\nINFO next\n")
    c2 = _check(tmp_path, [str(p)])
    try:
        assert _counts(await _drain(c2)) == {"ZeroDivisionError": 1}
    finally:
        await c2.close()


@pytest.mark.skipif(not shutil.which("java"), reason="java not installed (.ci/packages.d/apps.txt)")
async def test_real_java_traces_caused_by_and_more(tmp_path: Path) -> None:
    src = tmp_path / "Shop.java"
    src.write_text(JAVA_SRC)
    log_path = tmp_path / "shop.log"
    check = _check(tmp_path, [str(tmp_path / "*.log")], module_rules={"order": {"packages": ["com.shop.order", "Shop"]}})
    try:
        with open(log_path, "w") as out:
            subprocess.run(["java", str(src), "3"], stdout=out, check=True, timeout=120)
        got = await _drain(check)
        assert _counts(got) == {"java.lang.RuntimeException": 3}
        ev = [r for r in got if getattr(r, "kind", None) == "app.exception"][0]
        assert "Caused by: java.lang.IllegalStateException" in ev.data["stack"] and "more" in ev.data["stack"]
        assert ev.data["language"] == "java" and ev.tags["module"] == "order"
        assert ev.data["logger"] == "com.shop.order.OrderController"
        fr = ev.data["frames"]
        assert fr[-1]["function"] == "get" and fr[-1]["in_app"] and not fr[0]["in_app"]
    finally:
        await check.close()


@pytest.mark.skipif(not shutil.which("php"), reason="php-cli not installed (.ci/packages.d/apps.txt)")
async def test_real_php_fatal_error(tmp_path: Path) -> None:
    src = tmp_path / "pay.php"
    src.write_text(PHP_SRC)
    log_path = tmp_path / "php_errors.log"
    check = _check(tmp_path, [str(log_path)], module_rules={"payment": {"files": [str(tmp_path)]}})
    try:
        for _ in range(2):
            subprocess.run(["php", "-d", "log_errors=1", "-d", f"error_log={log_path}", "-d", "display_errors=0", str(src)],
                           capture_output=True, timeout=60, env={**os.environ})
        got = await _drain(check)
        assert _counts(got) == {"RuntimeException": 2}, log_path.read_text()
        ev = [r for r in got if getattr(r, "kind", None) == "app.exception"][0]
        assert ev.tags["module"] == "payment" and ev.data["language"] == "php"
        assert ev.data["message"] == "gateway timeout for payment 7"
        assert any(f["function"] == "charge" for f in ev.data["frames"])
    finally:
        await check.close()


def test_parsers_and_grouping_units() -> None:
    py = ('Traceback (most recent call last):\n  File "/usr/lib/python3.11/site-packages/lib/x.py", line 9, in call\n    f()\n'
          '  File "/srv/shop/payment/api.py", line 3, in charge\n    raise E\nshop.payment.Declined: card 4111 declined')
    p = parse_python(py)
    assert p is not None and p.type == "shop.payment.Declined" and p.message == "card 4111 declined"
    assert [f["in_app"] for f in p.frames] == [False, True] and p.frames[1]["module"] == "shop.payment.api"
    j = "java.lang.NullPointerException\n\tat com.shop.A.b(A.java:3)\n\tat org.springframework.X.y(X.java:1)"
    pj = parse_java(j)
    assert pj is not None and pj.type == "java.lang.NullPointerException" and pj.message == ""
    assert [f["function"] for f in pj.frames] == ["y", "b"]
    assert parse_stack("just a line") is None
    g = Grouper()
    recs = [r for ln in ["a", "  b", "c", "Traceback (most recent call last):", "d"] if (r := g.feed(ln))]
    assert recs == ["a\n  b"] and g.take() == "c\nTraceback (most recent call last):\nd"


def test_config_errors() -> None:
    with pytest.raises(ConfigError) as ei:
        build_check({"type": "exception_log", "paths": ["relative.log"]}, "checks[0]")
    assert ei.value.path == "checks[0].paths[0]"
    with pytest.raises(ConfigError) as ei:
        build_check({"type": "exception_log", "paths": ["/x"], "format": "cobol"}, "checks[0]")
    assert ei.value.path == "checks[0].format"


def _py_trace(n: int) -> str:
    return (f"ERROR request {n} failed\nTraceback (most recent call last):\n  File \"/srv/shop/order.py\", line {n}, in load\n"
            f"    x()\nLookupError: order {n} missing\n")


async def test_copytruncate_rename_with_unterminated_tail_and_small_reads(tmp_path: Path) -> None:
    p = tmp_path / "t.log"
    p.write_text(_py_trace(1) + _py_trace(2))
    check = _check(tmp_path, [str(p)], max_read_bytes="1KiB")
    try:
        assert _counts(await _drain(check)) == {"LookupError": 2}
        # copytruncate: the file is emptied in place and written again
        with open(p, "r+") as f:
            f.truncate(0)
        with open(p, "a") as f:
            f.write(_py_trace(3))
        assert _counts(await _drain(check)) == {"LookupError": 1}
        # rename rotation where the old file's last line never got its newline, and more than one read of backlog
        with open(p, "a") as f:
            f.write("".join(_py_trace(10 + i) for i in range(20)) + _py_trace(99).rstrip("\n"))
        os.rename(p, tmp_path / "t.log.1")
        p.write_text(_py_trace(100))
        assert _counts(await _drain(check)) == {"LookupError": 22}
        assert _counts(await _drain(check)) == {}
    finally:
        await check.close()


def test_same_trace_from_two_deploy_dirs_and_edited_lines_is_one_fingerprint() -> None:
    from checks.normalize import exception_fingerprint

    def tb(root: str, line: int, order: int) -> str:
        return (f'Traceback (most recent call last):\n  File "{root}/shop/order/api.py", line {line}, in create\n    x()\n'
                f"KeyError: 'order {order} missing'")

    a = parse_python(tb("/srv/releases/20261201", 10, 42))
    b = parse_python(tb("/opt/shop-v2", 14, 77))
    c = parse_python(tb("/opt/shop-v2", 14, 77).replace("in create", "in cancel"))
    assert a and b and c
    fa, fb, fc = (exception_fingerprint(p.type, p.message, p.frames) for p in (a, b, c))
    assert fa == fb != fc
