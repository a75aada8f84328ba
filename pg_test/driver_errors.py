#!/usr/bin/env python3
"""What a driver sees of the vault's errors: for a duplicate, the SQLSTATE
and the constraint, table and schema fields (psycopg's Diagnostic), so an
application tells email from phone from login without reading the message;
for a refused phone, the hint. One line per case.

Usage: driver_errors.py HOST PORT DBNAME USER
"""
import sys

import psycopg


def attempt(conn, sql):
    try:
        with conn.transaction():
            conn.execute(sql)
        return "no error"
    except psycopg.Error as e:
        d = e.diag
        return f"{d.sqlstate} constraint={d.constraint_name} table={d.schema_name}.{d.table_name} hint={'yes' if d.message_hint else 'no'}"


def main():
    host, port, db, user = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
    with psycopg.connect(host=host, port=port, dbname=db, user=user, autocommit=True) as conn:
        conn.execute("""SELECT vault_store('{"email": "driver@x.example", "phone": "+1 415 555 0134", "login": "driver"}')""")
        for kind, value in [("email", "DRIVER@x.example"), ("phone", "(415) 555-0134"), ("login", " Driver ")]:
            print(f"duplicate {kind}:", attempt(conn, f"SELECT vault_store('{{\"{kind}\": \"{value}\"}}')"))
        print("invalid phone:", attempt(conn, """SELECT vault_store('{"phone": "090-1234-5678"}')"""))


if __name__ == "__main__":
    main()
