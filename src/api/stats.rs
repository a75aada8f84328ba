//! vault_stats(): counters and gauges for monitoring, one row per value.
//! No record, no token, no value: counts from shared memory and the
//! catalogs. Not audited (nothing personal leaves), takes no XID (it only
//! reads), so a scraper may call it every second, on a standby too.
//!
//! Metric names are stable; README's "Monitoring" lists them, and
//! `monitoring/postgres_exporter.yml` maps them for
//! prometheus-postgres-exporter.

use pgrx::prelude::*;
use pgrx::JsonB;
use serde_json::{json, Value};

use crate::audit::queue;
use crate::{guc, shmem, stats, store};

/// Counted at most this far (a backlog past it is reported as this).
const BACKLOG_CAP: i64 = 1_000_000;

type Row = (String, JsonB, i64);

fn row(metric: &str, labels: Value, value: i64) -> Row {
    (metric.to_string(), JsonB(labels), value)
}

#[pg_extern(volatile, security_definer, parallel_unsafe)]
#[search_path(pg_catalog, pii_vault, pg_temp)]
fn vault_stats() -> TableIterator<'static, (name!(metric, String), name!(labels, JsonB), name!(value, i64))> {
    let mut rows: Vec<Row> = Vec::new();
    // SAFETY: a plain read of shared state.
    let standby = unsafe { pg_sys::RecoveryInProgress() };
    rows.push(row("standby", json!({}), i64::from(standby)));
    rows.push(row("preloaded", json!({}), i64::from(shmem::ready())));
    if shmem::ready() {
        for (operation, outcome, n) in stats::calls() {
            rows.push(row(
                "calls_total",
                json!({"operation": operation.as_str(), "outcome": outcome.as_str()}),
                n as i64,
            ));
        }
        let state = queue::state();
        rows.push(row("audit_queue_depth", json!({}), state.pending as i64));
        rows.push(row("audit_queue_capacity", json!({}), queue::CAPACITY as i64));
        rows.push(row("audit_queue_high_water", json!({}), stats::queue_high_water() as i64));
        rows.push(row("audit_events_queued_total", json!({}), queue::queued_total() as i64));
        rows.push(row("audit_events_written_total", json!({}), queue::committed_total() as i64));
        rows.push(row("audit_events_spilled_total", json!({}), state.spilled as i64));
        let oldest_ms = queue::oldest_unwritten_at().map_or(0, |at| (store::now() - at).max(0) / 1000);
        rows.push(row("audit_oldest_unwritten_age_ms", json!({}), oldest_ms));
        let kept: u64 = crate::audit::spill::kept().iter().map(|(_, bytes)| bytes).sum();
        rows.push(row("audit_kept_bytes", json!({}), kept as i64));
        rows.push(row("audit_writer_key_refused", json!({}), i64::from(state.key_mismatch)));
        rows.push(row("audit_events_forwarded_in_total", json!({}), stats::forwarded() as i64));
        if standby {
            let forwarded = queue::forwarded();
            rows.push(row("forward_connected", json!({}), i64::from(forwarded.connected)));
            rows.push(row("forward_lag_ms", json!({}), super::health::forward_lag_ms(&forwarded)));
            rows.push(row("audit_events_forwarded_total", json!({}), forwarded.events as i64));
            rows.push(row("audit_keeper_up", json!({}), i64::from(queue::keeper_running())));
        }
        if let Some((counted_at, versions)) = stats::records_by_version() {
            for (version, records) in versions {
                rows.push(row("records", json!({"key_version": version.to_string()}), records));
            }
            rows.push(row("records_counted_age_seconds", json!({}), (store::now() - counted_at).max(0) / 1_000_000));
        }
    }
    let workers = store::select_one::<pgrx::datum::Array<i64>>(
        "SELECT ARRAY[pg_catalog.count(*) FILTER (WHERE backend_type = 'pii_vault audit writer'), \
                      pg_catalog.count(*) FILTER (WHERE backend_type = 'pii_vault purge worker')] \
         FROM pg_catalog.pg_stat_activity",
        &[],
    )
    .ok()
    .flatten()
    .map(|a| a.iter().map(|n| n.unwrap_or(0)).collect::<Vec<i64>>());
    if let Some([writer, purge]) = workers.as_deref() {
        rows.push(row("audit_writer_up", json!({}), *writer));
        rows.push(row("purge_worker_up", json!({}), *purge));
    }
    if let Ok(replica) = store::logical_replica() {
        rows.push(row("logical_replica", json!({}), i64::from(replica)));
    }
    let grace = f64::from(guc::delete_grace_seconds());
    if let Ok(Some(backlog)) = store::purge_backlog(grace, BACKLOG_CAP) {
        rows.push(row("purge_backlog", json!({}), backlog));
    }
    TableIterator::new(rows)
}
