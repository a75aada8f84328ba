//! Who called the vault: the role whose rights a vault function was
//! invoked with.
//!
//! The vault's functions are SECURITY DEFINER, so inside them
//! `current_user` is the extension's owner, and PostgreSQL keeps the role
//! they were called as only on the C stack of `fmgr_security_definer`.
//! `GetOuterUserId()` (the session's `SET ROLE`) misses a SECURITY DEFINER
//! wrapper in between: a function owned by the application and granted to
//! PUBLIC let any role read through the application's grants while the
//! budgets and the audit named only the caller of the wrapper.
//!
//! PostgreSQL calls `fmgr_hook` at the start and end (or abort) of every
//! function that is SECURITY DEFINER or has a `SET` clause, after it has
//! switched to the function's owner. So each such call pushes the role in
//! effect inside it and whether it is SECURITY DEFINER, and pops them when
//! it ends. Inside a vault function, the topmost SECURITY DEFINER entries
//! owned by the vault's owner are the vault's own (a function a superuser
//! made is trusted as the vault is); the first SECURITY DEFINER entry below
//! them is the role the vault was called with (a wrapper's owner). Entries
//! of functions with only a `SET` clause say nothing: such a function runs
//! as its caller, and may even `SET ROLE`. With no SECURITY DEFINER entry
//! below, the vault was called with the session's role, `GetOuterUserId()`.
//!
//! Calls PostgreSQL makes with another role's rights without a function of
//! that role's (a portal fetched after the SECURITY DEFINER function that
//! opened it returned, a foreign key's action run as the table's owner)
//! are caught by `api::call`: the role found here must itself be allowed
//! to execute the vault function it reached (the outermost of the vault's
//! own), or the call is refused. Security-restricted operations are
//! refused outright.

use std::cell::RefCell;

use pgrx::pg_sys;

/// One SECURITY DEFINER or `SET` function being executed.
#[derive(Clone, Copy)]
struct Frame {
    /// The role in effect inside it.
    role: pg_sys::Oid,
    function: pg_sys::Oid,
    security_definer: bool,
}

thread_local! {
    /// The SECURITY DEFINER and `SET` functions being executed, innermost
    /// last.
    static FRAMES: RefCell<Vec<Frame>> = const { RefCell::new(Vec::new()) };
}

static mut PREV_FMGR: pg_sys::fmgr_hook_type = None;

mod raw {
    use pgrx::pg_sys::{HeapTuple, Oid};

    crate::unguarded! {
        fn GetUserId() -> Oid;
        fn ReleaseSysCache(HeapTuple);
    }

    unsafe extern "C-unwind" {
        /// `SearchSysCache1`, as PostgreSQL exports it: it raises only on
        /// a corrupt catalog.
        pub fn SearchSysCache1(cache: i32, key: pgrx::pg_sys::Datum) -> HeapTuple;
    }
    const _: unsafe fn(i32, pgrx::pg_sys::Datum) -> HeapTuple = pgrx::pg_sys::SearchSysCache1;
}

/// Installs the hook and the reset at each transaction's end; from
/// `_PG_init` at preload (backends inherit both). `needs_fmgr_hook` stays
/// unset: every function this must see (SECURITY DEFINER or with a `SET`
/// clause) goes through `fmgr_security_definer` anyway, which calls
/// `fmgr_hook` whenever it is set, and asking for it on other functions
/// would stop PostgreSQL from inlining SQL functions.
pub fn install_hook() {
    // SAFETY: _PG_init runs once, single-threaded; the previous hook is
    // kept and called; the callback lives as long as the library.
    unsafe {
        PREV_FMGR = pg_sys::fmgr_hook;
        pg_sys::fmgr_hook = Some(fmgr_hook);
        pg_sys::RegisterXactCallback(Some(at_transaction_end), std::ptr::null_mut());
    }
}

/// No SECURITY DEFINER or `SET` function is running when a top-level
/// transaction ends (PostgreSQL refuses transaction control inside one):
/// anything left over is forgotten, whatever left it.
unsafe extern "C-unwind" fn at_transaction_end(event: pg_sys::XactEvent::Type, _arg: *mut std::ffi::c_void) {
    use pg_sys::XactEvent::{XACT_EVENT_ABORT, XACT_EVENT_COMMIT};
    if matches!(event, XACT_EVENT_COMMIT | XACT_EVENT_ABORT) {
        let _ = FRAMES.try_with(|frames| frames.borrow_mut().clear());
    }
}

/// Whether `function` is SECURITY DEFINER: a syscache probe of pg_proc
/// (a hash lookup). Not remembered in the hook's slot of the FmgrInfo:
/// that one slot is shared by every extension's `fmgr_hook` (sepgsql keeps
/// its state there).
fn is_security_definer(function: pg_sys::Oid) -> bool {
    // SAFETY: a syscache lookup of pg_proc inside the function call's
    // transaction, released before returning.
    unsafe {
        let tuple = raw::SearchSysCache1(pg_sys::SysCacheIdentifier::PROCOID as i32, function.into());
        if tuple.is_null() {
            return false;
        }
        let form = pg_sys::GETSTRUCT(tuple).cast::<pg_sys::FormData_pg_proc>();
        let definer = (*form).prosecdef;
        raw::ReleaseSysCache(tuple);
        definer
    }
}

/// Runs at every call of a SECURITY DEFINER or `SET` function in the
/// server: not `#[pg_guard]`ed, and nothing here raises (a syscache lookup
/// only on a corrupt catalog), so an ERROR of the previous hook passes
/// through as a longjmp through plain frames. The push comes after the
/// previous hook's start (an ERROR there means no end or abort event
/// follows), the pop before its end.
unsafe extern "C-unwind" fn fmgr_hook(
    event: pg_sys::FmgrHookEventType::Type,
    flinfo: *mut pg_sys::FmgrInfo,
    private: *mut pg_sys::Datum,
) {
    use pg_sys::FmgrHookEventType::{FHET_ABORT, FHET_END, FHET_START};
    // SAFETY: the hook's contract; the previous hook gets the same
    // arguments; GetUserId reads a backend global.
    unsafe {
        match event {
            FHET_START => {
                if let Some(prev) = PREV_FMGR {
                    prev(event, flinfo, private);
                }
                let function = (*flinfo).fn_oid;
                let frame = Frame { role: raw::GetUserId(), function, security_definer: is_security_definer(function) };
                FRAMES.with_borrow_mut(|frames| frames.push(frame));
            }
            FHET_END | FHET_ABORT => {
                FRAMES.with_borrow_mut(|frames| frames.pop());
                if let Some(prev) = PREV_FMGR {
                    prev(event, flinfo, private);
                }
            }
            _ => {
                if let Some(prev) = PREV_FMGR {
                    prev(event, flinfo, private);
                }
            }
        }
    }
}

/// Who called the vault function now running.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Caller {
    /// The role whose rights called it: the owner of the innermost
    /// SECURITY DEFINER function around the vault's own, or the session's
    /// current role (`SET ROLE`) when there is none.
    pub role: pg_sys::Oid,
    /// The outermost of the vault's own functions on the way in (the one
    /// `role` called), when the vault function runs as SECURITY DEFINER.
    pub entered: Option<pg_sys::Oid>,
}

pub fn caller() -> Caller {
    // SAFETY: plain reads of backend globals.
    let (inside, outer) = unsafe { (raw::GetUserId(), pg_sys::GetOuterUserId()) };
    FRAMES.with_borrow(|frames| {
        let mut entered = None;
        for frame in frames.iter().rev().filter(|f| f.security_definer) {
            if frame.role == inside {
                entered = Some(frame.function);
            } else if entered.is_some() {
                return Caller { role: frame.role, entered };
            } else {
                break;
            }
        }
        match entered {
            // Called with the session's own role.
            Some(_) => Caller { role: outer, entered },
            // The vault function is not running as SECURITY DEFINER (a
            // superuser altered it): it runs as its caller.
            None => Caller { role: inside, entered: None },
        }
    })
}

/// The role whose rights called the vault function now running.
pub fn calling_role() -> pg_sys::Oid {
    caller().role
}
