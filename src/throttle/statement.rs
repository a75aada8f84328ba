//! What "one statement" is for the per-statement budgets, whatever the
//! protocol path.
//!
//! A budget keyed on the transaction and the statement's start time resets
//! on every `FETCH` from a cursor, every protocol Execute of a portal with a
//! row limit, and every `COMMIT` inside a `DO` block or procedure. Instead,
//! the budget belongs to the thing that runs:
//!
//! - a top-level `DO` or `CALL` is one statement across all its queries and
//!   `COMMIT`s (it overrides everything below while it runs);
//! - otherwise the outermost query being executed is the statement: its
//!   `QueryDesc` keeps its counts across every `ExecutorRun` (each `FETCH`,
//!   each Execute with a row limit) until the executor state is freed, and
//!   nested queries (SPI from functions, triggers) count against it;
//! - otherwise (a vault call made by a top-level utility outside any
//!   executor, such as a deferred trigger fired by `COMMIT`) the top-level
//!   utility statement;
//! - otherwise, the transaction and statement start, as a last resort.
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

/// Which message of the client protocol a scope belongs to: PostgreSQL
/// sets the statement start time once per message (a simple Query, an
/// Execute), and keeps it across the `COMMIT`s inside a `DO` or `CALL`.
/// A scope left behind by an ERROR belongs to an earlier message and is
/// ignored, so the hooks need no cleanup on error (see `install_hooks`).
fn message() -> i64 {
    // SAFETY: a plain read of this backend's statement start.
    unsafe { pg_sys::GetCurrentStatementStartTimestamp() }
}

#[derive(Default)]
struct Active {
    /// The top-level `DO` or `CALL` running, if any.
    routine: Option<(i64, Rc<Counts>)>,
    /// The outermost executor's query, while one runs (its counts are
    /// created on the first vault call, in `BY_QUERY`).
    query: Option<(i64, usize)>,
    /// The top-level utility statement running, if any (not DO/CALL).
    utility: Option<(i64, Rc<Counts>)>,
    /// Last resort: (local xid, statement start) and its counts.
    fallback: Option<((u32, i64), Rc<Counts>)>,
}

thread_local! {
    static ACTIVE: RefCell<Active> = RefCell::new(Active::default());
    /// Counts of outermost queries, by `QueryDesc` address. An entry is
    /// removed when its query's executor memory is freed (a reset callback
    /// on `es_query_cxt`, which runs on error too), before the address can
    /// be reused.
    static BY_QUERY: RefCell<HashMap<usize, Rc<Counts>>> = RefCell::new(HashMap::new());
}

/// The counts of the statement in progress.
pub fn current() -> Rc<Counts> {
    let now = message();
    let (routine, query) = ACTIVE.with_borrow(|a| {
        (
            a.routine.as_ref().filter(|(m, _)| *m == now).map(|(_, c)| c.clone()),
            a.query.filter(|(m, _)| *m == now).map(|(_, qd)| qd),
        )
    });
    if let Some(counts) = routine {
        return counts;
    }
    if let Some(qd) = query {
        return query_counts(qd);
    }
    ACTIVE.with_borrow_mut(|a| {
        if let Some((_, counts)) = a.utility.as_ref().filter(|(m, _)| *m == now) {
            return counts.clone();
        }
        // SAFETY: MyProc is set in every backend; a plain read.
        let key = (unsafe { (*pg_sys::MyProc).lxid }, now);
        match &a.fallback {
            Some((k, counts)) if *k == key => counts.clone(),
            _ => {
                let counts = Rc::new(Counts::default());
                a.fallback = Some((key, counts.clone()));
                counts
            }
        }
    })
}

fn query_counts(qd: usize) -> Rc<Counts> {
    if let Some(counts) = BY_QUERY.with_borrow(|m| m.get(&qd).cloned()) {
        return counts;
    }
    let counts = Rc::new(Counts::default());
    // SAFETY: `qd` is the QueryDesc of the executor running now (set by
    // run_hook for the duration of its ExecutorRun/Finish), so its estate
    // and es_query_cxt are live; the callback struct is allocated in that
    // context, so it lives exactly as long as the registration.
    unsafe {
        let estate = (*(qd as *mut pg_sys::QueryDesc)).estate;
        if estate.is_null() {
            // Not started: cannot happen inside ExecutorRun; count in a
            // statement of its own rather than not at all.
            return counts;
        }
        let cxt = (*estate).es_query_cxt;
        let cb = pg_sys::MemoryContextAllocZero(cxt, std::mem::size_of::<pg_sys::MemoryContextCallback>())
            .cast::<pg_sys::MemoryContextCallback>();
        (*cb).func = Some(forget_query);
        (*cb).arg = qd as *mut std::ffi::c_void;
        pg_sys::MemoryContextRegisterResetCallback(cxt, cb);
    }
    BY_QUERY.with_borrow_mut(|m| m.insert(qd, counts.clone()));
    counts
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
        once: bool,
    );
    #[link_name = "standard_ExecutorFinish"]
    fn standard_executor_finish(qd: *mut pg_sys::QueryDesc);
    #[link_name = "standard_ProcessUtility"]
    fn standard_process_utility(
        pstmt: *mut pg_sys::PlannedStmt,
        query_string: *const std::ffi::c_char,
        read_only_tree: bool,
        context: pg_sys::ProcessUtilityContext::Type,
        params: pg_sys::ParamListInfo,
        query_env: *mut pg_sys::QueryEnvironment,
        dest: *mut pg_sys::DestReceiver,
        qc: *mut pg_sys::QueryCompletion,
    );
}

// The declarations above are pinned to the hook types of pgrx's bindings
// (the standard implementations have the hooks' signatures): a signature
// that changes in PostgreSQL's headers fails to compile here.
const _: pg_sys::ExecutorRun_hook_type = Some(standard_executor_run);
const _: pg_sys::ExecutorFinish_hook_type = Some(standard_executor_finish);
const _: pg_sys::ProcessUtility_hook_type = Some(standard_process_utility);

static mut PREV_RUN: pg_sys::ExecutorRun_hook_type = None;
static mut PREV_FINISH: pg_sys::ExecutorFinish_hook_type = None;
static mut PREV_UTILITY: pg_sys::ProcessUtility_hook_type = None;

/// Installs the hooks; from `_PG_init` at preload (backends inherit them).
///
/// The hooks run on every statement of the server, so they stay out of
/// the way of errors: they are not `#[pg_guard]`ed and hold nothing with a
/// destructor while they call on, so an ERROR passes through them as a
/// longjmp through plain frames, exactly as through C, with its ErrorData
/// untouched. What they leave behind on an ERROR is stale and recognized
/// as such (`message`).
pub fn install_hooks() {
    // SAFETY: _PG_init runs once, single-threaded; the previous hooks are
    // kept and called.
    unsafe {
        PREV_RUN = pg_sys::ExecutorRun_hook;
        pg_sys::ExecutorRun_hook = Some(executor_run);
        PREV_FINISH = pg_sys::ExecutorFinish_hook;
        pg_sys::ExecutorFinish_hook = Some(executor_finish);
        PREV_UTILITY = pg_sys::ProcessUtility_hook;
        pg_sys::ProcessUtility_hook = Some(process_utility);
    }
}

/// Makes `qd` the statement if no outer executor of this message runs;
/// true if it did (the caller clears it on a normal return).
fn enter_executor(qd: *mut pg_sys::QueryDesc) -> bool {
    let now = message();
    ACTIVE.with_borrow_mut(|a| {
        if a.query.is_some_and(|(m, _)| m == now) {
            return false;
        }
        a.query = Some((now, qd as usize));
        true
    })
}

fn leave_executor(outermost: bool) {
    if outermost {
        ACTIVE.with_borrow_mut(|a| a.query = None);
    }
}

unsafe extern "C-unwind" fn executor_run(
    qd: *mut pg_sys::QueryDesc,
    direction: pg_sys::ScanDirection::Type,
    count: u64,
    execute_once: bool,
) {
    let outermost = enter_executor(qd);
    // SAFETY: the hook's contract: the previous hook or the standard
    // executor, with the same arguments.
    unsafe {
        match PREV_RUN {
            Some(prev) => prev(qd, direction, count, execute_once),
            None => standard_executor_run(qd, direction, count, execute_once),
        }
    }
    leave_executor(outermost);
}

/// AFTER triggers run in ExecutorFinish: they count against the query.
unsafe extern "C-unwind" fn executor_finish(qd: *mut pg_sys::QueryDesc) {
    let outermost = enter_executor(qd);
    // SAFETY: as in executor_run.
    unsafe {
        match PREV_FINISH {
            Some(prev) => prev(qd),
            None => standard_executor_finish(qd),
        }
    }
    leave_executor(outermost);
}

#[allow(clippy::too_many_arguments)]
unsafe extern "C-unwind" fn process_utility(
    pstmt: *mut pg_sys::PlannedStmt,
    query_string: *const std::ffi::c_char,
    read_only_tree: bool,
    context: pg_sys::ProcessUtilityContext::Type,
    params: pg_sys::ParamListInfo,
    query_env: *mut pg_sys::QueryEnvironment,
    dest: *mut pg_sys::DestReceiver,
    qc: *mut pg_sys::QueryCompletion,
) {
    let toplevel = context == pg_sys::ProcessUtilityContext::PROCESS_UTILITY_TOPLEVEL;
    // SAFETY: a utility PlannedStmt always has its statement node.
    let routine = toplevel
        && matches!(unsafe { (*(*pstmt).utilityStmt).type_ }, pg_sys::NodeTag::T_DoStmt | pg_sys::NodeTag::T_CallStmt);
    if toplevel {
        let scope = Some((message(), Rc::new(Counts::default())));
        ACTIVE.with_borrow_mut(|a| if routine { a.routine = scope } else { a.utility = scope });
    }
    // SAFETY: the hook's contract, as in executor_run.
    unsafe {
        match PREV_UTILITY {
            Some(prev) => prev(pstmt, query_string, read_only_tree, context, params, query_env, dest, qc),
            None => standard_process_utility(pstmt, query_string, read_only_tree, context, params, query_env, dest, qc),
        }
    }
    if toplevel {
        ACTIVE.with_borrow_mut(|a| if routine { a.routine = None } else { a.utility = None });
    }
}
