//! What "one statement" is for the per-statement budgets, whatever the
//! protocol path.
//!
//! A budget keyed on the transaction and the statement's start time reset
//! on every `FETCH` from a cursor, every protocol Execute of a portal with a
//! row limit, and every `COMMIT` inside a `DO` block or procedure; one kept
//! per executor missed the queries that run outside the client's query
//! (deferred triggers fired at commit, triggers of `COPY FROM`, the actions
//! of a rule, defaults filled in by `ALTER TABLE`). So every call is
//! counted twice, and refused when either count is over the budget:
//!
//! - against the *message*: everything the server does for one message of
//!   the client protocol (a simple Query, an Execute), including a `DO`
//!   block or `CALL` across its `COMMIT`s, the triggers fired at its commit,
//!   and the statements of a rule. PostgreSQL sets the statement start time
//!   once per message and keeps it across those commits: that is the key.
//! - against the *portal*: the outermost query being executed keeps its
//!   count across every `ExecutorRun` of its `QueryDesc` (each `FETCH` of a
//!   cursor, each Execute of a portal with a row limit), until its executor
//!   state is freed.
//!
//! Parallel workers never run the vault's functions (they are PARALLEL
//! UNSAFE, and `guard::ready` refuses them in a worker), so the leader's
//! counts are the statement's.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;

use pgrx::pg_sys;
use pgrx::prelude::*;

/// What one statement has used of its budgets.
#[derive(Default)]
pub struct Counts {
    pub reads: Cell<u64>,
    pub writes: Cell<u64>,
    pub warned_reads: Cell<bool>,
    pub warned_writes: Cell<bool>,
}

/// The message of the client protocol being served: PostgreSQL sets the
/// statement start time once per message, and keeps it across the
/// `COMMIT`s inside a `DO` or `CALL`.
fn message() -> i64 {
    // SAFETY: a plain read of this backend's statement start.
    unsafe { raw::GetCurrentStatementStartTimestamp() }
}

/// Called from the executor hooks, on every query of the server: without
/// pgrx's guard, whose panic would have no Rust frame above to catch it
/// there (an out-of-memory ERROR from the allocation passes as a longjmp).
mod raw {
    use pgrx::pg_sys::{MemoryContext, MemoryContextCallback, Size, TimestampTz};

    crate::unguarded! {
        fn GetCurrentStatementStartTimestamp() -> TimestampTz;
        fn GetCurrentTransactionNestLevel() -> i32;
        fn MemoryContextAllocZero(MemoryContext, Size) -> *mut std::ffi::c_void;
        fn MemoryContextRegisterResetCallback(MemoryContext, *mut MemoryContextCallback);
    }
}

#[derive(Default)]
struct Active {
    /// The message's counts.
    message: Option<(i64, Rc<Counts>)>,
    /// The outermost executor of the message while one runs: the message,
    /// the `QueryDesc`'s address (only ever a key of `BY_QUERY`, never
    /// dereferenced) and the transaction nesting level it started at.
    /// Cleared when it returns, and when an ERROR leaves it: by the abort
    /// of the (sub)transaction it started in (`at_abort`, `at_sub_abort`).
    query: Option<(i64, usize, i32)>,
    /// Queries that have counts of their own (a cursor's, opened by an
    /// earlier statement) run again inside the outermost one (a FETCH in
    /// a function), innermost last, with their nesting levels: a call
    /// counts against each, so every FETCH of a cursor counts against it,
    /// wherever it runs. Popped on return, and on abort as `query` is.
    nested: Vec<(usize, i32)>,
}

thread_local! {
    static ACTIVE: RefCell<Active> = RefCell::new(Active::default());
    /// Counts of outermost queries, by `QueryDesc` address, registered
    /// while the query is live and removed when its executor memory is
    /// freed (a reset callback on `es_query_cxt`, which runs on error too),
    /// before the address can be reused.
    static BY_QUERY: RefCell<HashMap<usize, Rc<Counts>>> = RefCell::new(HashMap::new());
}

/// The counts of the message, and of the portals of the queries running:
/// the outermost one's, and any cursor's fetched inside it.
pub fn current() -> (Rc<Counts>, Vec<Rc<Counts>>) {
    let now = message();
    ACTIVE.with_borrow_mut(|a| {
        let message = match &a.message {
            Some((m, counts)) if *m == now => counts.clone(),
            _ => {
                let counts = Rc::new(Counts::default());
                a.message = Some((now, counts.clone()));
                counts
            }
        };
        let outermost = a.query.filter(|(m, _, _)| *m == now).map(|(_, qd, _)| qd);
        let running = outermost.into_iter().chain(a.nested.iter().map(|(qd, _)| *qd));
        let portals = BY_QUERY.with_borrow(|by_query| running.filter_map(|qd| by_query.get(&qd).cloned()).collect());
        (message, portals)
    })
}

/// Registers counts for the live query `qd`, unless it has some already
/// (a portal executed again).
///
/// # Safety
/// `qd` is the QueryDesc of an executor that is running (its estate and
/// `es_query_cxt` live).
unsafe fn register_query(qd: *mut pg_sys::QueryDesc) {
    let key = qd as usize;
    if BY_QUERY.with_borrow(|m| m.contains_key(&key)) {
        return;
    }
    // SAFETY: per the contract; the callback struct is allocated in the
    // context it watches, so it lives exactly as long as the registration.
    // These calls do not raise (only out of memory, as any palloc).
    unsafe {
        let estate = (*qd).estate;
        if estate.is_null() {
            return;
        }
        let cxt = (*estate).es_query_cxt;
        let callback = raw::MemoryContextAllocZero(cxt, std::mem::size_of::<pg_sys::MemoryContextCallback>())
            .cast::<pg_sys::MemoryContextCallback>();
        (*callback).func = Some(forget_query);
        (*callback).arg = qd.cast();
        raw::MemoryContextRegisterResetCallback(cxt, callback);
    }
    BY_QUERY.with_borrow_mut(|m| m.insert(key, Rc::new(Counts::default())));
}

/// The executor memory of a query is being freed: its counts go with it.
#[pg_guard]
unsafe extern "C-unwind" fn forget_query(arg: *mut std::ffi::c_void) {
    // try_with: during thread-local teardown at process exit there is
    // nothing left to forget.
    let _ = BY_QUERY.try_with(|m| m.borrow_mut().remove(&(arg as usize)));
}

// PostgreSQL's standard implementations, called as C calls them: pgrx's
// bindings of these turn an ERROR into a Rust panic, which must not happen
// in a hook with no Rust frame above it to catch it (see install_hooks).
unsafe extern "C-unwind" {
    #[link_name = "standard_ExecutorRun"]
    fn standard_executor_run(
        qd: *mut pg_sys::QueryDesc,
        direction: pg_sys::ScanDirection::Type,
        count: u64,
        execute_once: bool,
    );
    #[link_name = "standard_ExecutorFinish"]
    fn standard_executor_finish(qd: *mut pg_sys::QueryDesc);
}

// The declarations above are pinned to the hook types of pgrx's bindings
// (the standard implementations have the hooks' signatures): a signature
// that changes in PostgreSQL's headers fails to compile here.
const _: pg_sys::ExecutorRun_hook_type = Some(standard_executor_run);
const _: pg_sys::ExecutorFinish_hook_type = Some(standard_executor_finish);

static mut PREV_RUN: pg_sys::ExecutorRun_hook_type = None;
static mut PREV_FINISH: pg_sys::ExecutorFinish_hook_type = None;

/// Installs the hooks and the abort callbacks; from `_PG_init` at preload
/// (backends inherit them).
///
/// The hooks run on every query of the server, so they stay out of the way
/// of errors: they are not `#[pg_guard]`ed and hold nothing with a
/// destructor while they call on, so an ERROR passes through them as a
/// longjmp through plain frames, exactly as through C, with its ErrorData
/// untouched. What an ERROR would leave behind is undone where PostgreSQL
/// undoes its own state, at the abort of the (sub)transaction the query
/// started in (as `pgss_ExecutorRun`'s `PG_FINALLY` restores its nesting
/// level): the outermost query here, its counts by the reset callback of
/// its executor memory (`register_query`).
pub fn install_hooks() {
    // SAFETY: _PG_init runs once, single-threaded; the previous hooks are
    // kept and called; the callbacks live as long as the library.
    unsafe {
        PREV_RUN = pg_sys::ExecutorRun_hook;
        pg_sys::ExecutorRun_hook = Some(executor_run);
        PREV_FINISH = pg_sys::ExecutorFinish_hook;
        pg_sys::ExecutorFinish_hook = Some(executor_finish);
        pg_sys::RegisterXactCallback(Some(at_abort), std::ptr::null_mut());
        pg_sys::RegisterSubXactCallback(Some(at_sub_abort), std::ptr::null_mut());
    }
}

/// A transaction aborted: no query of it runs any more. (Both callbacks
/// are called from C: they cannot panic, whatever holds `ACTIVE`.)
unsafe extern "C-unwind" fn at_abort(event: pg_sys::XactEvent::Type, _arg: *mut std::ffi::c_void) {
    if event == pg_sys::XactEvent::XACT_EVENT_ABORT {
        let _ = ACTIVE.try_with(|a| {
            a.try_borrow_mut().map(|mut a| {
                a.query = None;
                a.nested.clear();
            })
        });
    }
}

/// A subtransaction aborted (an ERROR caught by an EXCEPTION block or a
/// savepoint): the outermost query is gone if it started inside it.
unsafe extern "C-unwind" fn at_sub_abort(
    event: pg_sys::SubXactEvent::Type,
    _sub: pg_sys::SubTransactionId,
    _parent: pg_sys::SubTransactionId,
    _arg: *mut std::ffi::c_void,
) {
    if event != pg_sys::SubXactEvent::SUBXACT_EVENT_ABORT_SUB {
        return;
    }
    // SAFETY: a plain read of the aborting subtransaction's level.
    let aborting = unsafe { raw::GetCurrentTransactionNestLevel() };
    let _ = ACTIVE.try_with(|a| {
        if let Ok(mut a) = a.try_borrow_mut() {
            if a.query.is_some_and(|(_, _, level)| level >= aborting) {
                a.query = None;
            }
            a.nested.retain(|(_, level)| *level < aborting);
        }
    });
}

/// What an executor is to the budgets.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Entered {
    /// The message's outermost query.
    Outermost,
    /// A query with counts of its own (a cursor's) run inside it.
    Nested,
    /// Any other query inside it (counted against the message and the
    /// portals running around it).
    Inner,
}

/// Makes `qd` the message's outermost query if none runs, or records it
/// as a nested run of a query with counts of its own; the caller undoes
/// either on a normal return (`leave_executor`).
///
/// # Safety
/// `qd` is the QueryDesc of the executor being run.
unsafe fn enter_executor(qd: *mut pg_sys::QueryDesc) -> Entered {
    let now = message();
    // SAFETY: a plain read of this backend's transaction state.
    let level = unsafe { raw::GetCurrentTransactionNestLevel() };
    let key = qd as usize;
    let has_counts = BY_QUERY.with_borrow(|m| m.contains_key(&key));
    let entered = ACTIVE.with_borrow_mut(|a| {
        if a.query.is_none_or(|(m, _, _)| m != now) {
            a.query = Some((now, key, level));
            a.nested.clear();
            Entered::Outermost
        } else if has_counts && a.query.is_some_and(|(_, outer, _)| outer != key) {
            a.nested.push((key, level));
            Entered::Nested
        } else {
            Entered::Inner
        }
    });
    if entered == Entered::Outermost {
        // SAFETY: per the contract.
        unsafe { register_query(qd) };
    }
    entered
}

fn leave_executor(entered: Entered) {
    match entered {
        Entered::Outermost => ACTIVE.with_borrow_mut(|a| a.query = None),
        Entered::Nested => ACTIVE.with_borrow_mut(|a| {
            a.nested.pop();
        }),
        Entered::Inner => {}
    }
}

unsafe extern "C-unwind" fn executor_run(
    qd: *mut pg_sys::QueryDesc,
    direction: pg_sys::ScanDirection::Type,
    count: u64,
    execute_once: bool,
) {
    // SAFETY: the hook's contract: `qd` is being run; then the previous
    // hook or the standard executor, with the same arguments.
    unsafe {
        let entered = enter_executor(qd);
        match PREV_RUN {
            Some(prev) => prev(qd, direction, count, execute_once),
            None => standard_executor_run(qd, direction, count, execute_once),
        }
        leave_executor(entered);
    }
}

/// AFTER triggers run in ExecutorFinish: they count against the query.
unsafe extern "C-unwind" fn executor_finish(qd: *mut pg_sys::QueryDesc) {
    // SAFETY: as in executor_run.
    unsafe {
        let entered = enter_executor(qd);
        match PREV_FINISH {
            Some(prev) => prev(qd),
            None => standard_executor_finish(qd),
        }
        leave_executor(entered);
    }
}
