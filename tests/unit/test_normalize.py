"""SQL and exception fingerprints: literal-only differences group together, real differences do not."""

from __future__ import annotations

from checks.normalize import exception_fingerprint, normalize_message, sql_fingerprint, sql_normalize


def test_literals_share_fingerprint() -> None:
    a = sql_fingerprint("SELECT * FROM orders WHERE id = 1 AND status = 'paid'")
    b = sql_fingerprint("select *\n  from orders  where id=2 and status='new' -- trailing comment")
    assert a == b
    assert a[1] == "select * from orders where id = ? and status = ?"


def test_in_lists_and_values_collapse() -> None:
    assert sql_normalize("SELECT a FROM t WHERE id IN (1, 2, 3)") == sql_normalize("select a from t where id in (9)")
    assert sql_normalize("INSERT INTO t (a,b) VALUES (1,'x'),(2,'y')") == "insert into t(a, b) values (?+)"
    assert "lower(?)" in sql_normalize("select lower('X') from t")


def test_parameters_never_in_clear() -> None:
    norm = sql_normalize("UPDATE users SET password = 'hunter2', card = 4111111111111111 WHERE email = 'a@b.c' /* x */")
    for secret in ("hunter2", "4111", "a@b.c", "/*"):
        assert secret not in norm
    assert sql_normalize("select * from t where x = $1 and y = %s and z = :z") == "select * from t where x = ? and y = ? and z = ?"


def test_different_statements_differ() -> None:
    assert sql_fingerprint("select a from t where id = 1")[0] != sql_fingerprint("select b from t where id = 1")[0]
    assert sql_fingerprint('select "A" from t')[0] != sql_fingerprint('select "B" from t')[0]


def test_message_normalisation() -> None:
    m = normalize_message("Order 12345 for user 550e8400-e29b-41d4-a716-446655440000 failed at 10.1.2.3:5432 (ref 0xdeadbeef)")
    assert m == "Order <n> for user <uuid> failed at <ip> (ref <hex>)"


def test_exception_fingerprint_ignores_lines_and_library_frames() -> None:
    frames1 = [
        {"module": "flask.app", "function": "dispatch", "line": 10, "in_app": False},
        {"module": "shop.payment", "function": "charge", "line": 42},
    ]
    frames2 = [
        {"module": "flask.app", "function": "full_dispatch", "line": 99, "in_app": False},
        {"module": "shop.payment", "function": "charge", "line": 57},
    ]
    a = exception_fingerprint("PaymentError", "card 4111 declined", frames1)
    b = exception_fingerprint("PaymentError", "card 5500 declined", frames2)
    assert a == b
    assert a != exception_fingerprint("PaymentError", "card 4111 declined", [{"module": "shop.order", "function": "charge"}])
    assert a != exception_fingerprint("ValueError", "card 4111 declined", frames1)
