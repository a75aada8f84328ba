#!/usr/bin/env python3
"""Reads pgbench results collected by bench/run.sh and prints the table.

  report.py RESULTS_DIR [--secdef | --floor | --budget | --shares | --fields | --rotation | --purge]

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
(vault_app) and off (vault_app_off), and what the budget costs. With
--shares: plain and pii_vault only (get_shared, and get for reference),
and get_shared's throughput over get's in each system. With --fields:
tokenize and detokenize (plain and vault), and pages of 50 records in
records/s (vault_get_many; 50 vault_get calls in one statement, and in 50
statements; plain WHERE id = ANY).

With --rotation (bench/run.sh --rotation): RESULTS_DIR/rotation.tsv has one
line per 1 s pgbench run, before, during or after a rotation:
  round  phase  op  clients  failed  aborted  logglob
rotation.rounds one line per rotation (round, from and to version, start
and end in epoch seconds, batches, records left behind); rotation.audit
the get and lookup calls the audit records as not ok (round, phase, op,
count; "during" up to the end of the last run started during the
rotation); rotation.facts the records. A run's time is from its first
transaction's start to its last one's end (pgbench's connecting and
exiting left out); during a rotation only the part of a run inside it
counts, with the transactions that ended in that part.

With --purge (bench/run.sh --life-cycle): purge.tsv as rotation.tsv (op
get only); purge.rounds one line per purge (round, live records, expired
records, start and end in epoch seconds, purges audited, the records
table's heap in MB at the start); purge.audit the
purge events and the get calls audited as not ok (round, phase, operation,
count). Runs during the purge are counted as during a rotation.
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
    if "--rotation" in sys.argv[2:]:
        rotation(root)
        return
    if "--purge" in sys.argv[2:]:
        purge(root)
        return
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
    if "--shares" in sys.argv[2:]:
        shares_table(ops, tps, lat)
        return
    if "--fields" in sys.argv[2:]:
        fields_table(ops, tps, lat)
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


def shares_table(ops, tps, lat):
    header = ("| operation | clients | plain ops/s | plain p50 ms | plain p99 ms "
              "| vault ops/s | vault p50 ms | vault p99 ms | vault/plain |")
    print(header)
    print("|" + " --- |" * (header.count("|") - 1))
    mean = {k: statistics.mean(v) for k, v in tps.items()}
    for op, c in ops:
        cells = []
        for s in ["plain", "vault"]:
            ls = sorted(lat[(op, c, s)])
            cells += [f"{mean[(op, c, s)]:,.0f}", f"{percentile(ls, 0.5) / 1000:.3f}", f"{percentile(ls, 0.99) / 1000:.3f}"]
        print(f"| {op} | {c} | " + " | ".join(cells) + f" | {mean[(op, c, 'vault')] / mean[(op, c, 'plain')]:.2f} |")
    for op, c in ops:
        if op == "get_shared" and ("get", c) in ops:
            ratios = ", ".join(f"{s} {mean[(op, c, s)] / mean[('get', c, s)]:.2f}" for s in ["plain", "vault"])
            print(f"\nget_shared's throughput over get's, {c} client(s): {ratios}", end="")
    print()


def fields_table(ops, tps, lat):
    """Field tokens (tokenize, detokenize: plain and vault, ops/s) and pages
    of 50 records (page: records/s, vault_get_many beside 50 vault_get
    calls and plain SELECT ... WHERE id = ANY)."""
    mean = {k: statistics.mean(v) for k, v in tps.items()}
    header = ("| operation | clients | plain ops/s | plain p50 ms | vault ops/s | vault p50 ms | vault/plain |")
    print(header)
    print("|" + " --- |" * (header.count("|") - 1))
    for op, c in ops:
        if op == "page":
            continue
        cells = []
        for s in ["plain", "vault"]:
            cells += [f"{mean[(op, c, s)]:,.0f}", f"{percentile(sorted(lat[(op, c, s)]), 0.5) / 1000:.3f}"]
        print(f"| {op} | {c} | " + " | ".join(cells) + f" | {mean[(op, c, 'vault')] / mean[(op, c, 'plain')]:.2f} |")
    print()
    header = ("| page of 50 | clients | plain ANY records/s | vault_get_many records/s | 50 vault_get in one statement records/s "
              "| 50 vault_get statements records/s | get_many/one statement | get_many/50 statements | get_many/plain |")
    print(header)
    print("|" + " --- |" * (header.count("|") - 1))
    for op, c in ops:
        if op != "page":
            continue
        plain, many, single, calls = (50 * mean[(op, c, s)] for s in ["plain", "vault", "vault_single", "vault_calls"])
        print(f"| page | {c} | {plain:,.0f} | {many:,.0f} | {single:,.0f} | {calls:,.0f} "
              f"| {many / single:.2f} | {many / calls:.2f} | {many / plain:.2f} |")


def window_counts(root, name, window):
    """Per (round, phase, op): transactions counted, the seconds they took,
    failed calls; per (phase, op): latencies. A run's time is from its
    first transaction's start to its last one's end; during the window,
    only the part of a run inside it, with the transactions that ended in
    that part."""
    count, secs, failed, lat = defaultdict(int), defaultdict(float), defaultdict(int), defaultdict(list)
    clients = "-"
    for line in open(f"{root}/{name}.tsv"):
        r, phase, op, clients, f, a, logglob = line.rstrip("\n").split("\t")
        key = (r, phase, op)
        failed[key] += int(f) + int(a)
        txns = transactions(logglob)
        if not txns:
            continue
        lo, hi = min(t[0] for t in txns), max(t[1] for t in txns)
        if phase == "during":
            lo, hi = max(lo, window[r][0]), min(hi, window[r][1])
            if hi <= lo:
                continue
        inside = [t for t in txns if lo <= t[1] <= hi]
        count[key] += len(inside)
        secs[key] += hi - lo
        lat[(phase, op)].extend(t[2] for t in inside)
    return count, secs, failed, lat, clients


def purge(root):
    window, facts = {}, {}
    for line in open(f"{root}/purge.rounds"):
        r, live, expired, start, end, audited, heap = line.rstrip("\n").split("\t")
        window[r] = (float(start), float(end))
        facts[r] = (int(live), int(expired), int(audited), int(heap))
    count, secs, failed, lat, clients = window_counts(root, "purge", window)
    for line in open(f"{root}/purge.audit"):
        r, phase, op, n = line.rstrip("\n").split("\t")
        if op == "get":
            failed[(r, phase, op)] += int(n)
    rounds = sorted(window, key=int)

    def ops(r, phase):
        key = (r, phase, "get")
        return count[key] / secs[key] if secs[key] > 0 else None

    def mean_ops(phase):
        vs = [v for v in (ops(r, phase) for r in rounds) if v is not None]
        return statistics.mean(vs) if vs else None

    def fmt(v, f="{:,.0f}"):
        return "-" if v is None else f.format(v)

    walls = {r: window[r][1] - window[r][0] for r in rounds}
    header = ("| round | live records | expired records | table MB | clients | purge s | records/s | get ops/s before "
              "| get during | get during/before | get after | failed calls during |")
    print(header)
    print("|" + " --- |" * (header.count("|") - 1))

    def row(label, live, expired, heap, wall, before, during, after, n_failed):
        ratio = during / before if before and during is not None else None
        print(f"| {label} | {live:,} | {expired:,} | {heap:,} | {clients} | {wall:.1f} | {expired / wall:,.0f} | {fmt(before)} "
              f"| {fmt(during)} | {fmt(ratio, '{:.2f}')} | {fmt(after)} | {n_failed} |")

    for r in rounds:
        live, expired, _audited, heap = facts[r]
        row(r, live, expired, heap, walls[r], ops(r, "before"), ops(r, "during"), ops(r, "after"), failed[(r, "during", "get")])
    if len(rounds) > 1:
        row("mean", round(statistics.mean(f[0] for f in facts.values())),
            round(statistics.mean(f[1] for f in facts.values())), round(statistics.mean(f[3] for f in facts.values())),
            statistics.mean(walls.values()),
            mean_ops("before"), mean_ops("during"), mean_ops("after"),
            sum(failed[(r, "during", "get")] for r in rounds))
    print()
    header = "| vault get | measured s | ops/s | p50 ms | p99 ms | failed calls |"
    print(header)
    print("|" + " --- |" * (header.count("|") - 1))
    labels = {"before": "before the purge", "during": "during it", "after": "after it (not vacuumed)"}
    for phase in ["before", "during", "after"]:
        ls = sorted(lat[(phase, "get")])
        measured = sum(secs[(r, phase, "get")] for r in rounds)
        print(f"| {labels[phase]} | {measured:.1f} | {fmt(mean_ops(phase))} | {percentile(ls, 0.5) / 1000:.3f} "
              f"| {percentile(ls, 0.99) / 1000:.3f} | {sum(failed[(r, phase, 'get')] for r in rounds)} |")
    print()
    expired = sum(f[1] for f in facts.values())
    audited = sum(f[2] for f in facts.values())
    during_s = sum(secs[(r, "during", "get")] for r in rounds)
    print(f"Purge s: from the reload that sets it off to no expired row left (polled every 50 ms); "
          f"{audited:,} of {expired:,} purges audited. Get measured {during_s:.1f} s of the "
          f"{sum(walls.values()):.1f} s of purging (the rest: pgbench starting and stopping between runs). "
          f"ops/s are the mean of the rounds; p50 and p99 over every transaction counted.")
    before, during = mean_ops("before"), mean_ops("during")
    if before and during is not None:
        verdict = f"{during / before:.2f}, a cost of {100 * (1 - during / before):.1f} % ({'met' if during / before >= 0.9 else 'not met'})"
    else:
        verdict = "not measured (the purge ended first)"
    print(f"Target: get during the purge at least 0.90 of its throughput before: {verdict}.")


def transactions(pattern):
    """(start, end, latency in us) of each logged transaction, in epoch
    seconds; a failed one (its latency field a word) is left out, counted
    by pgbench's own summary instead."""
    out = []
    for path in glob.glob(pattern):
        with open(path) as f:
            for line in f:
                parts = line.split()
                if len(parts) >= 6 and parts[2].isdigit():
                    lat = int(parts[2])
                    end = int(parts[4]) + int(parts[5]) / 1e6
                    out.append((end - lat / 1e6, end, lat))
    return out


def rotation(root):
    facts = dict(line.rstrip("\n").split("\t") for line in open(f"{root}/rotation.facts"))
    records = int(facts["records"])
    window = {}
    for line in open(f"{root}/rotation.rounds"):
        r, _from, _to, start, end, batches, _left = line.rstrip("\n").split("\t")
        window[r] = (float(start), float(end), batches)
    count, secs, failed, lat, clients = window_counts(root, "rotation", window)
    for line in open(f"{root}/rotation.audit"):
        r, phase, op, n = line.rstrip("\n").split("\t")
        failed[(r, phase, op)] += int(n)
    rounds = sorted(window, key=int)

    def ops(r, phase, op):
        key = (r, phase, op)
        return count[key] / secs[key] if secs[key] > 0 else None

    def mean_ops(phase, op):
        vs = [v for v in (ops(r, phase, op) for r in rounds) if v is not None]
        return statistics.mean(vs) if vs else None

    def fmt(v, f="{:,.0f}"):
        return "-" if v is None else f.format(v)

    def row(label, wall, per_op, n_failed):
        cells = [label, f"{records:,}", clients, f"{wall:.1f}", f"{records / wall:,.0f}"]
        for before, during in per_op:
            ratio = during / before if before and during is not None else None
            cells += [fmt(before), fmt(during), fmt(ratio, "{:.2f}")]
        print("| " + " | ".join(cells + [str(n_failed)]) + " |")

    header = ("| round | records | clients | rotation s | records/s | get ops/s before | get during "
              "| get during/before | lookup ops/s before | lookup during | lookup during/before | failed calls during |")
    print(header)
    print("|" + " --- |" * (header.count("|") - 1))
    walls = {r: window[r][1] - window[r][0] for r in rounds}
    for r in rounds:
        row(r, walls[r], [(ops(r, "before", op), ops(r, "during", op)) for op in ["get", "lookup"]],
            sum(failed[(r, "during", op)] for op in ["get", "lookup"]))
    if len(rounds) > 1:
        row("mean", statistics.mean(walls.values()),
            [(mean_ops("before", op), mean_ops("during", op)) for op in ["get", "lookup"]],
            sum(n for (_r, phase, _op), n in failed.items() if phase == "during"))
    print()
    header = "| operation | phase | measured s | ops/s | p50 ms | p99 ms | failed calls |"
    print(header)
    print("|" + " --- |" * (header.count("|") - 1))
    labels = {"before": "before", "during": "during the rotation", "after": "after it (not vacuumed)"}
    for op in ["get", "lookup"]:
        for phase in ["before", "during", "after"]:
            ls = sorted(lat[(phase, op)])
            measured = sum(secs[(r, phase, op)] for r in rounds)
            print(f"| {op} | {labels[phase]} | {measured:.1f} | {fmt(mean_ops(phase, op))} "
                  f"| {percentile(ls, 0.5) / 1000:.3f} | {percentile(ls, 0.99) / 1000:.3f} "
                  f"| {sum(failed[(r, phase, op)] for r in rounds)} |")
    print()
    get_s = sum(secs[(r, "during", "get")] for r in rounds)
    lookup_s = sum(secs[(r, "during", "lookup")] for r in rounds)
    batches = "/".join(window[r][2] for r in rounds)
    print(f"Over {len(rounds)} rotation(s) of {sum(walls.values()):.1f} s in all ({batches} batches), get was "
          f"measured {get_s:.1f} s and lookup {lookup_s:.1f} s (the rest: pgbench starting and stopping between "
          f"runs). ops/s are the mean of the rounds; p50 and p99 over every transaction counted.")
    during_failed = sum(n for (_r, phase, _op), n in failed.items() if phase == "during")
    verdicts = []
    for op in ["get", "lookup"]:
        before, during = mean_ops("before", op), mean_ops("during", op)
        if before and during is not None:
            verdicts.append(f"{op} {during / before:.2f} ({'met' if during / before >= 0.8 else 'below'})")
        else:
            verdicts.append(f"{op} not measured (the rotation ended first)")
    print(f"Target: no failed calls ({during_failed} during the rotations, "
          f"{sum(failed.values()) - during_failed} before and after) and at least 0.80 of the throughput "
          f"before during the rotation: " + ", ".join(verdicts) + ".")

main()
