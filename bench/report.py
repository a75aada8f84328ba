#!/usr/bin/env python3
"""Reads pgbench results collected by bench/run.sh and prints the table.

  report.py RESULTS_DIR [--secdef | --floor | --budget]

RESULTS_DIR/runs.tsv has one line per pgbench run:
  op  clients  round  system  tps  logglob
Latencies come from pgbench's per-transaction logs (-l): field 3, in us.
With --secdef: throughput only, with system vault_invoker (the vault's
functions altered to SECURITY INVOKER without a pinned search_path) beside
the vault as installed. With --floor: lookup beside noop and noop_pinned
(a call of the same shape to a function that does nothing, without and
with SECURITY DEFINER and the vault's pinned search_path), and the time
per lookup (1 / ops/s, in us) the issue's target leaves. With --budget:
the vault called by a non-superuser role with the per-role read budget on
(vault_app) and off (vault_app_off), and what the budget costs.
"""
import glob
import statistics
import sys
from collections import defaultdict


def percentile(sorted_values, p):
    if not sorted_values:
        return float("nan")
    k = (len(sorted_values) - 1) * p
    lo = int(k)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (k - lo)


def latencies(pattern):
    out = []
    for path in glob.glob(pattern):
        with open(path) as f:
            for line in f:
                parts = line.split()
                if len(parts) >= 3:
                    out.append(int(parts[2]))
    out.sort()
    return out


def main():
    root = sys.argv[1]
    secdef = "--secdef" in sys.argv[2:]
    floor = "--floor" in sys.argv[2:]
    budget = "--budget" in sys.argv[2:]
    tps = defaultdict(list)
    lat = defaultdict(list)
    for line in open(f"{root}/runs.tsv"):
        op, clients, _round, system, t, logglob = line.rstrip("\n").split("\t")
        key = (op, int(clients), system)
        tps[key].append(float(t))
        lat[key].extend(latencies(logglob))
    systems = ["plain", "pgcrypto", "vault"]
    ops = []
    for op, c, _s in tps:
        if (op, c) not in ops:
            ops.append((op, c))
    if secdef:
        variants_table(ops, tps, [("vault", "as installed"), ("vault_invoker", "SECURITY INVOKER, no SET")])
        return
    if budget:
        variants_table(ops, tps, [("vault_app", "budget on"), ("vault_app_off", "budget off")])
        m = {k: statistics.mean(v) for k, v in tps.items()}
        for op, c in ops:
            on, off = m[(op, c, "vault_app")], m[(op, c, "vault_app_off")]
            print(f"\n{op}: the budget costs {100 * (1 - on / off):.1f} % of throughput ({1e6 / on - 1e6 / off:.2f} us per call)", end="")
        print()
        return
    if floor:
        floor_table(ops, tps)
        return
    header = "| operation | clients | " + " | ".join(
        f"{s} ops/s | {s} p50 ms | {s} p99 ms" for s in systems) + " | vault/plain | vault/pgcrypto |"
    print(header)
    print("|" + " --- |" * (header.count("|") - 1))
    for op, c in ops:
        cells = []
        mean = {}
        for s in systems:
            key = (op, c, s)
            if key not in tps:
                cells += ["-", "-", "-"]
                continue
            mean[s] = statistics.mean(tps[key])
            ls = sorted(lat[key])
            cells += [f"{mean[s]:,.0f}", f"{percentile(ls, 0.5) / 1000:.3f}", f"{percentile(ls, 0.99) / 1000:.3f}"]
        r_plain = f"{mean['vault'] / mean['plain']:.2f}" if "vault" in mean and "plain" in mean else "-"
        r_crypto = f"{mean['vault'] / mean['pgcrypto']:.2f}x" if "vault" in mean and "pgcrypto" in mean else "-"
        print(f"| {op} | {c} | " + " | ".join(cells) + f" | {r_plain} | {r_crypto} |")


def variants_table(ops, tps, variants):
    header = "| operation | clients | plain ops/s | pgcrypto ops/s | " + " | ".join(
        f"vault {label} ops/s | /plain | /pgcrypto" for _v, label in variants) + " |"
    print(header)
    print("|" + " --- |" * (header.count("|") - 1))
    for op, c in ops:
        mean = {s: statistics.mean(tps[(op, c, s)]) for s in ["plain", "pgcrypto"] + [v for v, _l in variants]}
        cells = [f"{mean['plain']:,.0f}", f"{mean['pgcrypto']:,.0f}"]
        for v, _label in variants:
            cells += [f"{mean[v]:,.0f}", f"{mean[v] / mean['plain']:.3f}", f"{mean[v] / mean['pgcrypto']:.2f}x"]
        print(f"| {op} | {c} | " + " | ".join(cells) + " |")


def floor_table(ops, tps):
    """Per lookup, at each client count (times are 1 / ops/s, in us): what
    the target (1.6x pgcrypto) allows, what a call that does nothing takes
    with and without the pin, and what that leaves for the lookup itself."""
    header = ("| clients | plain ops/s | pgcrypto ops/s | vault ops/s | target: 1.6x pgcrypto ops/s "
              "| no-op call ops/s | pinned no-op call ops/s | target / no-op call "
              "| us per op: target | pinned no-op call | of which the pin | left for the lookup's own work "
              "| plain's index scan beyond a no-op call |")
    print(header)
    print("|" + " --- |" * (header.count("|") - 1))
    for op, c in ops:
        m = {s: statistics.mean(tps[(op, c, s)]) for s in ["plain", "pgcrypto", "vault", "noop", "noop_pinned"]}
        target = 1.6 * m["pgcrypto"]
        us = {s: 1e6 / v for s, v in m.items()}
        t_target = 1e6 / target
        cells = [f"{m['plain']:,.0f}", f"{m['pgcrypto']:,.0f}", f"{m['vault']:,.0f}", f"{target:,.0f}",
                 f"{m['noop']:,.0f}", f"{m['noop_pinned']:,.0f}", f"{target / m['noop']:.2f}",
                 f"{t_target:.2f}", f"{us['noop_pinned']:.2f}", f"{us['noop_pinned'] - us['noop']:.2f}",
                 f"{t_target - us['noop_pinned']:.2f}", f"{us['plain'] - us['noop']:.2f}"]
        print(f"| {c} | " + " | ".join(cells) + " |")


main()
