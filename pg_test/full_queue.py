#!/usr/bin/env python3
"""What a driver sees when the audit queue is full (the harness holds the
audit writer behind a lock and fills the queue first): a store of a taken
email and a store of a free one must both be refused with the same 55000,
carrying no constraint, table or schema name, after the same wait, so the
refusal answers nothing the audit did not record. One line per case; the
wait in whole seconds.

Usage: full_queue.py HOST PORT DBNAME USER TAKEN_EMAIL
"""
import sys
import time

import psycopg


def attempt(conn, email):
    started = time.monotonic()
    try:
        with conn.transaction():
            conn.execute("SELECT vault_store(jsonb_build_object('email', %s::text))", (email,))
        outcome = "no error"
    except psycopg.Error as e:
        d = e.diag
        outcome = (f"{d.sqlstate} {d.message_primary} constraint={d.constraint_name} "
                   f"table={d.schema_name}.{d.table_name} detail={d.message_detail}")
    return f"{outcome} after {round(time.monotonic() - started)} s"


def main():
    host, port, db, user, taken = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
    with psycopg.connect(host=host, port=port, dbname=db, user=user, autocommit=True) as conn:
        print("taken:", attempt(conn, taken))
        print("free:", attempt(conn, "never-stored-" + str(time.time_ns()) + "@queue.example"))


if __name__ == "__main__":
    main()
