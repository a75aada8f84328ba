#!/usr/bin/env python3
"""ALTER EXTENSION pii_vault UPDATE while another session of the vault is
open and inside a REPEATABLE READ transaction begun before it: that
session, once its transaction ends, must work the vault as the new
release does. Prints one line per step, compared by day_two.sh.

Session A stores a record (its backend has read the old release), begins
a REPEATABLE READ transaction, and reads the record after session B has
updated the extension (its transaction snapshot still shows the old
release). Then B deletes the record (a soft delete from 0.3.0 on) and
stores one that expires at once; A must see neither, and store a record
that expires, as the new release allows.

Usage: update_under_open_sessions.py HOST PORT DBNAME USER
"""
import sys
import time

import psycopg


def main():
    host, port, dbname, user = sys.argv[1:5]
    connect = lambda: psycopg.connect(host=host, port=port, dbname=dbname, user=user, autocommit=True)  # noqa: E731
    a, b = connect(), connect()
    one = lambda conn, sql, *args: conn.execute(sql, args).fetchone()[0]  # noqa: E731
    token = one(a, "SELECT vault_store('{\"name\": \"open across the update\"}')")
    print("A reads its record before:", one(a, "SELECT vault_get(%s) ->> 'name'", token))
    a.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
    a.execute("SELECT 1")
    b.execute("ALTER EXTENSION pii_vault UPDATE")
    print("A reads its record in a snapshot of before:", one(a, "SELECT vault_get(%s) ->> 'name'", token))
    a.execute("COMMIT")
    print("B deletes it:", one(b, "SELECT vault_delete(%s)", token))
    expired = one(b, "SELECT vault_store('{\"name\": \"expires\"}', clock_timestamp() + interval '50 ms')")
    time.sleep(0.2)
    print("A reads the deleted record:", one(a, "SELECT vault_get(%s)", token))
    print("A reads the expired record:", one(a, "SELECT vault_get(%s)", expired))
    print("A stores a record that expires:",
          one(a, "SELECT vault_store('{\"name\": \"later\"}', now() + interval '1 day') IS NOT NULL"))


main()
