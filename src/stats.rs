//! Counters for monitoring (`vault_stats()`), in shared memory: calls by
//! operation and outcome since the server started, the audit queue's
//! high-water mark, and the records per key version the purge worker last
//! counted. Lock-free: one relaxed atomic add per audited call.

use std::sync::atomic::{AtomicI64, AtomicPtr, AtomicU64, Ordering};

use crate::audit::{AuditEvent, Operation, Outcome};

/// Operation codes are 1..=33 and outcome codes 1..=6 (`audit_event`);
/// room for a few more of each without a layout change mid-release.
const OPERATIONS: usize = 48;
const OUTCOMES: usize = 8;
/// Key versions whose record counts are kept (the most recent ones).
const VERSIONS: usize = 16;

#[repr(C)]
pub struct Stats {
    calls: [[AtomicU64; OUTCOMES]; OPERATIONS],
    queue_high_water: AtomicU64,
    /// Events standbys forwarded into this primary's audit.
    forwarded: AtomicU64,
    /// When the purge worker last counted records per key version (µs
    /// since the PostgreSQL epoch; 0: never since the server started).
    counted_at: AtomicI64,
    /// (version, records) pairs of that count; version 0 marks the end.
    versions: [(AtomicU64, AtomicI64); VERSIONS],
}

impl Stats {
    pub const SIZE: usize = std::mem::size_of::<Stats>();

    /// Zeroes the counters in place.
    ///
    /// # Safety
    /// `at` points at `Stats::SIZE` writable bytes, aligned for `Stats`,
    /// that no other process uses yet.
    pub unsafe fn init_in_place(at: *mut Stats) {
        // SAFETY: per the contract; all-zero bytes are valid atomics.
        unsafe { std::ptr::write_bytes(at.cast::<u8>(), 0, Stats::SIZE) };
    }
}

static STATS: AtomicPtr<Stats> = AtomicPtr::new(std::ptr::null_mut());

/// Makes `stats` (in shared memory) this process's counters; from the
/// shared-memory start-up hook.
pub fn attach(stats: *mut Stats) {
    STATS.store(stats, Ordering::Release);
}

fn stats() -> Option<&'static Stats> {
    let at = STATS.load(Ordering::Acquire);
    // SAFETY: set once to shared memory that lives as long as the server.
    (!at.is_null()).then(|| unsafe { &*at })
}

/// Counts a queued event: `calls` calls of its operation and outcome, and
/// the queue's depth now.
pub fn count(event: &AuditEvent, depth: u64) {
    let Some(stats) = stats() else { return };
    let (Some(operation), Some(outcome)) = (event.operation(), event.outcome()) else { return };
    if let Some(cell) = stats.calls.get(operation as usize).and_then(|row| row.get(outcome as usize)) {
        cell.fetch_add(u64::from(event.calls), Ordering::Relaxed);
    }
    // Read first: the maximum rarely moves, so the line stays shared.
    if depth > stats.queue_high_water.load(Ordering::Relaxed) {
        stats.queue_high_water.fetch_max(depth, Ordering::Relaxed);
    }
}

/// Every non-zero call counter: operation, outcome, calls.
pub fn calls() -> Vec<(Operation, Outcome, u64)> {
    let Some(stats) = stats() else { return Vec::new() };
    let mut out = Vec::new();
    for operation in Operation::ALL {
        for outcome in Outcome::ALL {
            let n = stats.calls[*operation as usize][*outcome as usize].load(Ordering::Relaxed);
            if n > 0 {
                out.push((*operation, *outcome, n));
            }
        }
    }
    out
}

/// Counts events a standby forwarded here.
pub fn count_forwarded(n: u64) {
    if let Some(stats) = stats() {
        stats.forwarded.fetch_add(n, Ordering::Relaxed);
    }
}

pub fn forwarded() -> u64 {
    stats().map_or(0, |s| s.forwarded.load(Ordering::Relaxed))
}

pub fn queue_high_water() -> u64 {
    stats().map_or(0, |s| s.queue_high_water.load(Ordering::Relaxed))
}

/// Records the purge worker's count of records per key version.
pub fn set_records_by_version(counted_at: i64, versions: &[(u32, i64)]) {
    let Some(stats) = stats() else { return };
    // The highest versions when there are more than fit (the old ones are
    // what a rotation moves away from: still worth a count, but the last).
    let keep = &versions[versions.len().saturating_sub(VERSIONS)..];
    for (i, slot) in stats.versions.iter().enumerate() {
        let (version, records) = keep.get(i).map_or((0, 0), |(v, n)| (u64::from(*v), *n));
        slot.1.store(records, Ordering::Relaxed);
        slot.0.store(version, Ordering::Relaxed);
    }
    stats.counted_at.store(counted_at, Ordering::Release);
}

/// The last count of records per key version, and when it was made (None:
/// not since the server started).
pub fn records_by_version() -> Option<(i64, Vec<(u32, i64)>)> {
    let stats = stats()?;
    let counted_at = stats.counted_at.load(Ordering::Acquire);
    if counted_at == 0 {
        return None;
    }
    let versions = stats
        .versions
        .iter()
        .map(|(v, n)| (v.load(Ordering::Relaxed) as u32, n.load(Ordering::Relaxed)))
        .take_while(|(v, _)| *v != 0)
        .collect();
    Some((counted_at, versions))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_has_a_counter() {
        assert!(Operation::ALL.iter().all(|o| (*o as usize) < OPERATIONS));
        assert!(Outcome::ALL.iter().all(|o| (*o as usize) < OUTCOMES));
    }
}
