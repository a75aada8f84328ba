#!/usr/bin/env python3
"""Reads the vault through client-library paths that split one statement
into many protocol messages, and prints how many records each got before
the vault refused: one line per path, "<path>: <rows> rows, then <sqlstate>".

- psycopg's named cursor (DECLARE + FETCH itersize), with itersize 50;
- asyncpg's cursor: one portal, Execute messages with a row limit of 50
  (what JDBC's fetchSize does).

Usage: protocol_paths.py HOST PORT DBNAME USER
"""
import asyncio
import sys

import asyncpg
import psycopg

QUERY = "SELECT vault_get(tok) FROM victims ORDER BY n"


def psycopg_named_cursor(host, port, db, user):
    rows = 0
    with psycopg.connect(host=host, port=port, dbname=db, user=user) as conn:
        try:
            with conn.transaction():
                with conn.cursor(name="loot") as cur:
                    cur.itersize = 50
                    cur.execute(QUERY)
                    for _ in cur:
                        rows += 1
            return f"{rows} rows, then no error"
        except psycopg.Error as e:
            return f"{rows} rows, then {e.sqlstate}"


async def asyncpg_portal(host, port, db, user):
    rows = 0
    conn = await asyncpg.connect(host=host, port=port, database=db, user=user)
    try:
        async with conn.transaction():
            async for _ in conn.cursor(QUERY, prefetch=50):
                rows += 1
        return f"{rows} rows, then no error"
    except asyncpg.PostgresError as e:
        return f"{rows} rows, then {e.sqlstate}"
    finally:
        await conn.close()


def main():
    host, port, db, user = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
    print("psycopg named cursor, itersize 50:", psycopg_named_cursor(host, port, db, user))
    print("asyncpg portal, row limit 50:", asyncio.run(asyncpg_portal(host, port, db, user)))


if __name__ == "__main__":
    main()
