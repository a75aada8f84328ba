//! The few libpq calls the audit forwarder makes, bound at run time with
//! dlopen in the forwarder's process only: the library that every backend
//! preloads does not link libpq (PostgreSQL's own walreceiver loads it the
//! same way, through libpqwalreceiver). Debian's postgresql-15 depends on
//! libpq5, so `libpq.so.5` is there wherever the server is.

use std::ffi::{c_char, c_int, c_void, CStr, CString};

type Conn = c_void;
type Result = c_void;

/// PQstatus's CONNECTION_OK and PQresultStatus's PGRES_TUPLES_OK.
const CONNECTION_OK: c_int = 0;
const PGRES_TUPLES_OK: c_int = 2;

type ConnectDb = unsafe extern "C" fn(*const c_char) -> *mut Conn;
type Status = unsafe extern "C" fn(*const Conn) -> c_int;
type ErrorMessage = unsafe extern "C" fn(*const Conn) -> *const c_char;
type ExecParams = unsafe extern "C" fn(
    *mut Conn,
    *const c_char,
    c_int,
    *const u32,
    *const *const c_char,
    *const c_int,
    *const c_int,
    c_int,
) -> *mut Result;
type ResultStatus = unsafe extern "C" fn(*const Result) -> c_int;
type ResultErrorMessage = unsafe extern "C" fn(*const Result) -> *const c_char;
type GetValue = unsafe extern "C" fn(*const Result, c_int, c_int) -> *const c_char;
type Ntuples = unsafe extern "C" fn(*const Result) -> c_int;
type Clear = unsafe extern "C" fn(*mut Result);
type Finish = unsafe extern "C" fn(*mut Conn);

struct Api {
    connectdb: ConnectDb,
    status: Status,
    error_message: ErrorMessage,
    exec_params: ExecParams,
    result_status: ResultStatus,
    result_error_message: ResultErrorMessage,
    get_value: GetValue,
    ntuples: Ntuples,
    clear: Clear,
    finish: Finish,
}

fn api() -> std::result::Result<&'static Api, String> {
    static API: std::sync::OnceLock<std::result::Result<Api, String>> = std::sync::OnceLock::new();
    API.get_or_init(|| {
        // SAFETY: dlopen and dlsym with NUL-terminated names; each symbol is
        // cast to the signature libpq-fe.h declares for it.
        unsafe {
            let handle = libc::dlopen(c"libpq.so.5".as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL);
            if handle.is_null() {
                return Err("libpq.so.5 could not be loaded (install libpq5)".to_string());
            }
            macro_rules! symbol {
                ($name:literal as $type:ty) => {{
                    let f = libc::dlsym(handle, $name.as_ptr());
                    if f.is_null() {
                        return Err(format!("libpq.so.5 has no {:?}", $name));
                    }
                    std::mem::transmute::<*mut c_void, $type>(f)
                }};
            }
            Ok(Api {
                connectdb: symbol!(c"PQconnectdb" as ConnectDb),
                status: symbol!(c"PQstatus" as Status),
                error_message: symbol!(c"PQerrorMessage" as ErrorMessage),
                exec_params: symbol!(c"PQexecParams" as ExecParams),
                result_status: symbol!(c"PQresultStatus" as ResultStatus),
                result_error_message: symbol!(c"PQresultErrorMessage" as ResultErrorMessage),
                get_value: symbol!(c"PQgetvalue" as GetValue),
                ntuples: symbol!(c"PQntuples" as Ntuples),
                clear: symbol!(c"PQclear" as Clear),
                finish: symbol!(c"PQfinish" as Finish),
            })
        }
    })
    .as_ref()
    .map_err(Clone::clone)
}

/// A connection, closed when dropped.
pub struct Connection {
    api: &'static Api,
    conn: *mut Conn,
}

fn text(message: *const c_char) -> String {
    if message.is_null() {
        return String::new();
    }
    // SAFETY: libpq returns NUL-terminated messages owned by the connection
    // or result, read before either is freed.
    unsafe { CStr::from_ptr(message) }.to_string_lossy().trim().to_string()
}

impl Connection {
    /// Connects with `conninfo` (blocking, at most its connect_timeout).
    pub fn connect(conninfo: &str) -> std::result::Result<Connection, String> {
        let api = api()?;
        let conninfo = CString::new(conninfo).map_err(|_| "the connection string holds a NUL".to_string())?;
        // SAFETY: a NUL-terminated string; the connection is owned below.
        let conn = unsafe { (api.connectdb)(conninfo.as_ptr()) };
        if conn.is_null() {
            return Err("out of memory connecting".to_string());
        }
        let connection = Connection { api, conn };
        // SAFETY: a live connection.
        if unsafe { (api.status)(conn) } != CONNECTION_OK {
            // SAFETY: as above.
            return Err(text(unsafe { (api.error_message)(conn) }));
        }
        Ok(connection)
    }

    /// Whether the connection is still usable.
    pub fn ok(&self) -> bool {
        // SAFETY: a live connection.
        unsafe { (self.api.status)(self.conn) == CONNECTION_OK }
    }

    /// Runs `query` with one bytea parameter sent in binary, and returns
    /// the first column of its one row as text.
    pub fn query_bytea(&mut self, query: &CStr, param: &[u8]) -> std::result::Result<String, String> {
        let values = [param.as_ptr().cast::<c_char>()];
        let lengths = [c_int::try_from(param.len()).map_err(|_| "a batch over 2 GB".to_string())?];
        let formats = [1 as c_int];
        let types = [17u32]; // bytea
                             // SAFETY: a live connection; the arrays hold one parameter each and
                             // outlive the call.
        let result = unsafe {
            (self.api.exec_params)(
                self.conn,
                query.as_ptr(),
                1,
                types.as_ptr(),
                values.as_ptr(),
                lengths.as_ptr(),
                formats.as_ptr(),
                0,
            )
        };
        if result.is_null() {
            // SAFETY: a live connection.
            return Err(text(unsafe { (self.api.error_message)(self.conn) }));
        }
        // SAFETY: a result libpq returned, cleared once below.
        let answer = unsafe {
            if (self.api.result_status)(result) == PGRES_TUPLES_OK && (self.api.ntuples)(result) == 1 {
                Ok(text((self.api.get_value)(result, 0, 0)))
            } else {
                Err(text((self.api.result_error_message)(result)))
            }
        };
        // SAFETY: as above.
        unsafe { (self.api.clear)(result) };
        answer
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        // SAFETY: closes the connection this value owns, once.
        unsafe { (self.api.finish)(self.conn) };
    }
}
