//! One audit event, fixed-size so it can sit in shared memory.

use std::borrow::Cow;

/// An enum stored in the audit as one byte, with its name in the audit
/// log. The code, the name and the decoding of each variant come from one
/// line, so a variant cannot be added without its decoding.
macro_rules! audit_code {
    ($(#[$meta:meta])* $vis:vis enum $enum:ident { $($variant:ident = $code:literal => $name:literal,)* }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        #[repr(u8)]
        $vis enum $enum {
            $($variant = $code,)*
        }

        impl $enum {
            /// Every variant, in code order.
            pub const ALL: &[$enum] = &[$($enum::$variant,)*];

            pub fn as_str(self) -> &'static str {
                match self {
                    $($enum::$variant => $name,)*
                }
            }

            fn from_u8(b: u8) -> Option<$enum> {
                match b {
                    $($code => Some($enum::$variant),)*
                    _ => None,
                }
            }
        }
    };
}

audit_code! {
    /// What was called.
    pub enum Operation {
        Store = 1 => "store",
        Get = 2 => "get",
        Lookup = 3 => "lookup",
        Update = 4 => "update",
        Delete = 5 => "delete",
        Export = 6 => "export",
        AuditRead = 7 => "audit_read",
        AuditVerify = 8 => "audit_verify",
        Health = 9 => "health",
        Normalize = 10 => "normalize",
        Rotate = 11 => "rotate",
        AuditPrune = 12 => "audit_prune",
        KeyVersions = 13 => "key_versions",
        SetExpiry = 14 => "set_expiry",
        Restore = 15 => "restore",
        Erase = 16 => "erase",
        Purge = 17 => "purge",
        Share = 18 => "share",
        GetShared = 19 => "get_shared",
        Unshare = 20 => "unshare",
        SessionStore = 21 => "session_store",
        SessionGet = 22 => "session_get",
        SessionDelete = 23 => "session_delete",
        Sessions = 24 => "sessions",
        AppDataSet = 25 => "appdata_set",
        AppDataGet = 26 => "appdata_get",
        AppDataDelete = 27 => "appdata_delete",
        ConsentSet = 28 => "consent_set",
        Consents = 29 => "consents",
        ConsentHistory = 30 => "consent_history",
        SubjectExport = 31 => "subject_export",
        Expire = 32 => "expire",
        Reindex = 33 => "reindex",
        Route = 34 => "route",
        Tokenize = 35 => "tokenize",
        Detokenize = 36 => "detokenize",
        TokenDelete = 37 => "token_delete",
        Patch = 38 => "patch",
        Migrate = 39 => "migrate",
    }
}

impl Operation {
    /// Whether a call of this operation stores, changes or removes data
    /// (refused on a standby and in a read-only transaction before it
    /// runs).
    pub fn writes(self) -> bool {
        use Operation::*;
        match self {
            Store | Update | Delete | Rotate | AuditPrune | SetExpiry | Restore | Erase | Purge | Share | Unshare
            | SessionStore | SessionDelete | AppDataSet | AppDataDelete | ConsentSet | Expire | Reindex | Tokenize
            | TokenDelete | Patch | Migrate => true,
            Get | Lookup | Export | AuditRead | AuditVerify | Health | Normalize | KeyVersions | GetShared
            | SessionGet | Sessions | AppDataGet | Consents | ConsentHistory | SubjectExport | Route | Detokenize => {
                false
            }
        }
    }
}

audit_code! {
    /// How the call ended.
    pub enum Outcome {
        Ok = 1 => "ok",
        NotFound = 2 => "not_found",
        Denied = 3 => "denied",
        Throttled = 4 => "throttled",
        Error = 5 => "error",
        Expired = 6 => "expired",
    }
}

const APP_NAME_BYTES: usize = 64;
/// A standby's name in an event (`set_server`): cut to fit.
pub const SERVER_BYTES: usize = 64;
/// `pii_vault.purpose` is at most 64 characters (longer is refused before
/// the call runs); four bytes each at most.
pub const PURPOSE_CHARS: usize = 64;
const PURPOSE_BYTES: usize = 4 * PURPOSE_CHARS;
/// Room for the field names of one call, each followed by a NUL. A call
/// naming more is refused before it runs (`fields_fit`), so the audit
/// always holds every name asked for.
pub const FIELD_BYTES: usize = 448;

/// Whether `fields` fit in one event (each name's bytes plus one).
pub fn fields_fit(fields: &[String]) -> bool {
    fields.iter().map(|f| f.len() + 1).sum::<usize>() <= FIELD_BYTES && !fields.iter().any(|f| f.contains('\0'))
}

/// The roles of a call, by oid (the writer resolves their names).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C)]
pub struct Roles {
    /// The login role.
    pub session: u32,
    /// The session's current role (`SET ROLE`).
    pub acting: u32,
    /// The role whose rights called the vault: a SECURITY DEFINER
    /// wrapper's owner, else `acting` (`throttle::caller`).
    pub calling: u32,
}

/// An audit event as queued: names of roles are resolved by the writer.
#[derive(Clone, Copy)]
#[repr(C)]
pub struct AuditEvent {
    pub at: i64,
    pub roles: Roles,
    /// How many calls the event stands for: 1, or more for failed calls
    /// folded into one (`audit::record_failure`).
    pub calls: u32,
    operation: u8,
    outcome: u8,
    has_token: bool,
    has_fields: bool,
    token: [u8; 16],
    app_name_len: u8,
    app_name: [u8; APP_NAME_BYTES],
    purpose_len: u16,
    purpose: [u8; PURPOSE_BYTES],
    /// How many field names the call named (may exceed what fits).
    fields_count: u32,
    fields_len: u16,
    /// Field names, each followed by a NUL, as many as fit.
    fields: [u8; FIELD_BYTES],
    /// The standby the call was served on (empty: the primary whose audit
    /// it is).
    server_len: u8,
    server: [u8; SERVER_BYTES],
    /// On a primary, for an event a standby forwarded: the standby's id
    /// and the number of the frame it came in (0: not forwarded). The
    /// writer records the last frame it committed from each standby in
    /// the same transaction as the events.
    forward_origin: [u8; 16],
    forward_frame: u64,
}

impl AuditEvent {
    pub const EMPTY: AuditEvent = AuditEvent {
        at: 0,
        roles: Roles { session: 0, acting: 0, calling: 0 },
        calls: 0,
        operation: 0,
        outcome: 0,
        has_token: false,
        has_fields: false,
        token: [0; 16],
        app_name_len: 0,
        app_name: [0; APP_NAME_BYTES],
        purpose_len: 0,
        purpose: [0; PURPOSE_BYTES],
        fields_count: 0,
        fields_len: 0,
        fields: [0; FIELD_BYTES],
        server_len: 0,
        server: [0; SERVER_BYTES],
        forward_origin: [0; 16],
        forward_frame: 0,
    };

    #[allow(clippy::too_many_arguments)]
    pub fn new(
        at: i64,
        roles: Roles,
        application_name: &str,
        purpose: &str,
        operation: Operation,
        token: Option<&[u8; 16]>,
        fields: Option<&[String]>,
        outcome: Outcome,
    ) -> AuditEvent {
        let mut e = AuditEvent::EMPTY;
        e.at = at;
        e.roles = roles;
        e.calls = 1;
        e.operation = operation as u8;
        e.outcome = outcome as u8;
        if let Some(t) = token {
            e.has_token = true;
            e.token = *t;
        }
        let app = truncate_utf8(application_name, APP_NAME_BYTES);
        e.app_name[..app.len()].copy_from_slice(app.as_bytes());
        e.app_name_len = app.len() as u8;
        let purpose = truncate_utf8(purpose, PURPOSE_BYTES);
        e.purpose[..purpose.len()].copy_from_slice(purpose.as_bytes());
        e.purpose_len = purpose.len() as u16;
        if let Some(fields) = fields {
            e.has_fields = true;
            e.fields_count = fields.len().min(u32::MAX as usize) as u32;
            let mut used = 0usize;
            for name in fields {
                // A name with a NUL cannot come from SQL text; skip it anyway.
                if name.contains('\0') || used + name.len() + 1 > FIELD_BYTES {
                    break;
                }
                e.fields[used..used + name.len()].copy_from_slice(name.as_bytes());
                used += name.len() + 1;
            }
            e.fields_len = used as u16;
        }
        e
    }

    /// This event for another element of the same call on many records:
    /// the same time, roles, application, purpose, operation and fields,
    /// with a token and an outcome of its own.
    pub fn for_element(&self, token: Option<&[u8; 16]>, outcome: Outcome) -> AuditEvent {
        let mut e = *self;
        e.has_token = token.is_some();
        e.token = token.copied().unwrap_or_default();
        e.outcome = outcome as u8;
        e
    }

    /// Writes this event into `slot` (a queue slot holding an older one):
    /// the fixed fields, and of the two name buffers only the bytes in use.
    /// A typical event then claims one or two cache lines of the shared
    /// queue instead of all five of the struct.
    pub fn copy_used_to(&self, slot: &mut AuditEvent) {
        // Spelled out in full so that a new field fails to compile here
        // until it is copied too.
        let AuditEvent {
            at,
            roles,
            calls,
            operation,
            outcome,
            has_token,
            has_fields,
            token,
            app_name_len,
            ref app_name,
            purpose_len,
            ref purpose,
            fields_count,
            fields_len,
            ref fields,
            server_len,
            ref server,
            forward_origin,
            forward_frame,
        } = *self;
        slot.at = at;
        slot.roles = roles;
        slot.calls = calls;
        slot.operation = operation;
        slot.outcome = outcome;
        slot.has_token = has_token;
        slot.has_fields = has_fields;
        slot.token = token;
        slot.app_name_len = app_name_len;
        slot.app_name[..app_name_len as usize].copy_from_slice(&app_name[..app_name_len as usize]);
        slot.purpose_len = purpose_len;
        slot.purpose[..purpose_len as usize].copy_from_slice(&purpose[..purpose_len as usize]);
        slot.fields_count = fields_count;
        slot.fields_len = fields_len;
        slot.fields[..fields_len as usize].copy_from_slice(&fields[..fields_len as usize]);
        slot.server_len = server_len;
        slot.server[..server_len as usize].copy_from_slice(&server[..server_len as usize]);
        slot.forward_origin = forward_origin;
        slot.forward_frame = forward_frame;
    }

    /// Marks the event as forwarded by the standby `origin` in its frame
    /// `frame` (not 0).
    pub fn set_forwarded(&mut self, origin: [u8; 16], frame: u64) {
        self.forward_origin = origin;
        self.forward_frame = frame;
    }

    /// The standby and frame the event was forwarded in, if it was.
    pub fn forwarded(&self) -> Option<([u8; 16], u64)> {
        (self.forward_frame != 0).then_some((self.forward_origin, self.forward_frame))
    }

    /// Names the standby the call was served on (cut to fit).
    pub fn set_server(&mut self, name: &str) {
        let name = truncate_utf8(name, SERVER_BYTES);
        self.server[..name.len()].copy_from_slice(name.as_bytes());
        self.server_len = name.len() as u8;
    }

    /// The standby the call was served on; empty for the primary.
    pub fn server(&self) -> Cow<'_, str> {
        String::from_utf8_lossy(&self.server[..self.server_len as usize])
    }

    pub fn operation(&self) -> Option<Operation> {
        Operation::from_u8(self.operation)
    }

    pub fn outcome(&self) -> Option<Outcome> {
        Outcome::from_u8(self.outcome)
    }

    pub fn token(&self) -> Option<[u8; 16]> {
        self.has_token.then_some(self.token)
    }

    pub fn application_name(&self) -> Cow<'_, str> {
        String::from_utf8_lossy(&self.app_name[..self.app_name_len as usize])
    }

    pub fn purpose(&self) -> Cow<'_, str> {
        String::from_utf8_lossy(&self.purpose[..self.purpose_len as usize])
    }

    /// The field names that fit, plus a marker naming how many did not.
    pub fn fields(&self) -> Option<Vec<Cow<'_, str>>> {
        if !self.has_fields {
            return None;
        }
        let mut names: Vec<Cow<'_, str>> =
            self.fields[..self.fields_len as usize].split(|b| *b == 0).map(String::from_utf8_lossy).collect();
        names.pop(); // the (empty) piece after the last NUL
        let missing = self.fields_count as usize - names.len();
        if missing > 0 {
            names.push(Cow::Owned(format!("…{missing} more")));
        }
        Some(names)
    }
}

/// Bytes of an event's encoding (`AuditEvent::encode`) before its three
/// variable-length parts.
const ENCODED_FIXED: usize = 8 + 4 * 4 + 4 + 16 + 1 + 2 + 4 + 2 + 1 + 16 + 8;

impl AuditEvent {
    /// The event as bytes (big-endian, the variable parts length-prefixed,
    /// only the bytes in use): what the spill file keeps of an event that
    /// could not be written (`crate::audit_spill`).
    pub fn encode(&self, out: &mut Vec<u8>) {
        let AuditEvent {
            at,
            roles,
            calls,
            operation,
            outcome,
            has_token,
            has_fields,
            token,
            app_name_len,
            ref app_name,
            purpose_len,
            ref purpose,
            fields_count,
            fields_len,
            ref fields,
            server_len,
            ref server,
            forward_origin,
            forward_frame,
        } = *self;
        out.extend_from_slice(&at.to_be_bytes());
        for n in [roles.session, roles.acting, roles.calling, calls] {
            out.extend_from_slice(&n.to_be_bytes());
        }
        out.extend_from_slice(&[operation, outcome, u8::from(has_token), u8::from(has_fields)]);
        out.extend_from_slice(&token);
        out.push(app_name_len);
        out.extend_from_slice(&purpose_len.to_be_bytes());
        out.extend_from_slice(&fields_count.to_be_bytes());
        out.extend_from_slice(&fields_len.to_be_bytes());
        out.push(server_len);
        out.extend_from_slice(&forward_origin);
        out.extend_from_slice(&forward_frame.to_be_bytes());
        out.extend_from_slice(&app_name[..app_name_len as usize]);
        out.extend_from_slice(&purpose[..purpose_len as usize]);
        out.extend_from_slice(&fields[..fields_len as usize]);
        out.extend_from_slice(&server[..server_len as usize]);
    }

    /// Marks the event as read back from a spill frame whose MAC did not
    /// verify (`crate::audit_spill`): its application name starts with
    /// `unverified: ` (cut to fit).
    pub fn mark_unverified(&mut self) {
        let marked = format!("unverified: {}", self.application_name());
        let marked = truncate_utf8(&marked, APP_NAME_BYTES);
        self.app_name = [0; APP_NAME_BYTES];
        self.app_name[..marked.len()].copy_from_slice(marked.as_bytes());
        self.app_name_len = marked.len() as u8;
    }

    /// Reads one event `encode` wrote at the start of `bytes`; the event and
    /// the bytes it took. None when the bytes are not such an event (a
    /// length past its buffer, a flag that is not 0 or 1, too few bytes).
    pub fn decode(bytes: &[u8]) -> Option<(AuditEvent, usize)> {
        let fixed = bytes.get(..ENCODED_FIXED)?;
        let mut at = 0usize;
        let mut take = |n: usize| {
            let part = &fixed[at..at + n];
            at += n;
            part
        };
        let u32_of = |b: &[u8]| u32::from_be_bytes(b.try_into().expect("4 bytes"));
        let u16_of = |b: &[u8]| u16::from_be_bytes(b.try_into().expect("2 bytes"));
        let mut e = AuditEvent::EMPTY;
        e.at = i64::from_be_bytes(take(8).try_into().expect("8 bytes"));
        e.roles = Roles { session: u32_of(take(4)), acting: u32_of(take(4)), calling: u32_of(take(4)) };
        e.calls = u32_of(take(4));
        let flags = take(4);
        e.operation = flags[0];
        e.outcome = flags[1];
        let flag = |b: u8| match b {
            0 => Some(false),
            1 => Some(true),
            _ => None,
        };
        e.has_token = flag(flags[2])?;
        e.has_fields = flag(flags[3])?;
        e.token = take(16).try_into().expect("16 bytes");
        e.app_name_len = take(1)[0];
        e.purpose_len = u16_of(take(2));
        e.fields_count = u32_of(take(4));
        e.fields_len = u16_of(take(2));
        e.server_len = take(1)[0];
        e.forward_origin = take(16).try_into().expect("16 bytes");
        e.forward_frame = u64::from_be_bytes(take(8).try_into().expect("8 bytes"));
        let (app, purpose, fields, server) =
            (e.app_name_len as usize, e.purpose_len as usize, e.fields_len as usize, e.server_len as usize);
        if app > APP_NAME_BYTES || purpose > PURPOSE_BYTES || fields > FIELD_BYTES || server > SERVER_BYTES {
            return None;
        }
        let end = ENCODED_FIXED + app + purpose + fields + server;
        let rest = bytes.get(ENCODED_FIXED..end)?;
        let (app_bytes, rest) = rest.split_at(app);
        let (purpose_bytes, rest) = rest.split_at(purpose);
        let (field_bytes, server_bytes) = rest.split_at(fields);
        e.app_name[..app].copy_from_slice(app_bytes);
        e.purpose[..purpose].copy_from_slice(purpose_bytes);
        e.fields[..fields].copy_from_slice(field_bytes);
        e.server[..server].copy_from_slice(server_bytes);
        // `fields()` counts the names that fit against fields_count.
        let names = e.fields[..fields].iter().filter(|b| **b == 0).count();
        if (e.fields_count as usize) < names || (fields > 0 && e.fields[fields - 1] != 0) {
            return None;
        }
        Some((e, end))
    }
}

fn truncate_utf8(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests {

    #[test]
    fn an_element_keeps_the_call_and_has_its_own_token_and_outcome() {
        let fields = vec!["name".to_string()];
        let roles = Roles { session: 10, acting: 11, calling: 12 };
        let call = AuditEvent::new(7, roles, "app", "why", Operation::Get, Some(&[1; 16]), Some(&fields), Outcome::Ok);
        let element = call.for_element(Some(&[2; 16]), Outcome::NotFound);
        assert_eq!((element.at, element.roles, element.operation()), (7, roles, Some(Operation::Get)));
        assert_eq!((element.application_name(), element.purpose()), (call.application_name(), call.purpose()));
        assert_eq!(element.fields(), call.fields());
        assert_eq!((element.token(), element.outcome()), (Some([2; 16]), Some(Outcome::NotFound)));
        let unnamed = call.for_element(None, Outcome::Error);
        assert_eq!((unnamed.token(), unnamed.outcome()), (None, Some(Outcome::Error)));
    }
    use super::*;

    fn roles(session: u32, acting: u32) -> Roles {
        Roles { session, acting, calling: acting + 1 }
    }

    fn event(fields: Option<&[String]>) -> AuditEvent {
        AuditEvent::new(1, roles(10, 11), "app", "", Operation::Get, Some(&[7; 16]), fields, Outcome::Ok)
    }

    #[test]
    fn round_trip_of_every_part() {
        let names = vec!["name".to_string(), "address".to_string()];
        let e = event(Some(&names));
        assert_eq!(e.operation(), Some(Operation::Get));
        assert_eq!(e.outcome(), Some(Outcome::Ok));
        assert_eq!(e.token(), Some([7; 16]));
        assert_eq!(e.application_name(), "app");
        assert_eq!(e.fields().unwrap(), names);
        assert_eq!(event(None).fields(), None);
        assert_eq!(event(Some(&[])).fields(), Some(vec![]));
        let with_empty = vec![String::new(), "x".to_string()];
        assert_eq!(event(Some(&with_empty)).fields().unwrap(), with_empty);
    }

    #[test]
    fn long_field_lists_are_cut_with_a_count() {
        // Fewer under Miri: still five times what an event holds.
        let count = if cfg!(miri) { 1_000 } else { 100_000 };
        let names: Vec<String> = (0..count).map(|i| format!("f{i}")).collect();
        let e = event(Some(&names));
        let fields = e.fields().unwrap();
        assert!(fields.len() < 200);
        assert_eq!(fields[0], "f0");
        assert!(fields.last().unwrap().starts_with('…'));
        let shown = fields.len() - 1;
        assert_eq!(fields.last().unwrap(), &format!("…{} more", count - shown));
    }

    #[test]
    fn every_code_decodes_to_its_variant_and_names_are_unique() {
        for op in Operation::ALL {
            assert_eq!(Operation::from_u8(*op as u8), Some(*op));
        }
        for outcome in Outcome::ALL {
            assert_eq!(Outcome::from_u8(*outcome as u8), Some(*outcome));
        }
        let names: std::collections::HashSet<_> = Operation::ALL.iter().map(|o| o.as_str()).collect();
        assert_eq!(names.len(), Operation::ALL.len());
        assert_eq!(Operation::from_u8(0), None);
    }

    #[test]
    fn every_list_the_api_accepts_is_audited_whole() {
        // The API refuses what does not fit (fields_fit), so nothing it
        // lets through is ever cut.
        for (count, len) in [(1, FIELD_BYTES - 1), (32, 13), (FIELD_BYTES / 2, 1), (0, 0)] {
            let names: Vec<String> =
                (0..count).map(|i| format!("{i:0>len$}").chars().take(len.max(1)).collect()).collect();
            let fits = fields_fit(&names);
            let total: usize = names.iter().map(|n| n.len() + 1).sum();
            assert_eq!(fits, total <= FIELD_BYTES, "{count} x {len}");
            if fits {
                assert_eq!(event(Some(&names)).fields().unwrap(), names, "{count} x {len}");
            }
        }
        let one_too_many: Vec<String> = vec!["x".repeat(FIELD_BYTES)];
        assert!(!fields_fit(&one_too_many));
    }

    #[test]
    fn copied_into_a_used_slot_reads_back_as_itself() {
        let long_names: Vec<String> = (0..30).map(|i| format!("field_{i}")).collect();
        let mut slot = AuditEvent::new(
            9,
            roles(9, 9),
            &"x".repeat(64),
            &"y".repeat(64),
            Operation::Export,
            Some(&[9; 16]),
            Some(&long_names),
            Outcome::Denied,
        );
        let names = vec!["email".to_string()];
        let e = AuditEvent::new(
            1,
            roles(10, 11),
            "app",
            "ticket 1",
            Operation::Lookup,
            None,
            Some(&names),
            Outcome::NotFound,
        );
        e.copy_used_to(&mut slot);
        assert_eq!((slot.at, slot.roles), (1, roles(10, 11)));
        assert_eq!(slot.operation(), Some(Operation::Lookup));
        assert_eq!(slot.outcome(), Some(Outcome::NotFound));
        assert_eq!(slot.token(), None);
        assert_eq!(slot.application_name(), "app");
        assert_eq!(slot.purpose(), "ticket 1");
        assert_eq!(slot.fields().unwrap(), names);
    }

    #[test]
    fn application_name_is_cut_on_a_char_boundary() {
        let long = "é".repeat(100);
        let e = AuditEvent::new(0, roles(0, 0), &long, &long, Operation::Store, None, None, Outcome::Error);
        assert_eq!(e.application_name(), "é".repeat(32));
        assert_eq!(e.purpose(), long);
        assert_eq!(e.token(), None);
    }

    #[test]
    fn encoded_events_decode_to_themselves_and_nothing_else_does() {
        let names: Vec<String> = (0..40).map(|i| format!("field_{i}")).collect();
        let events = [
            AuditEvent::new(
                7,
                roles(1, 2),
                "app",
                "ticket 9",
                Operation::Get,
                Some(&[3; 16]),
                Some(&names),
                Outcome::Ok,
            ),
            AuditEvent::new(-1, roles(0, 0), "", "", Operation::Store, None, None, Outcome::Error),
            AuditEvent::new(
                1,
                roles(5, 5),
                &"é".repeat(40),
                &"ü".repeat(64),
                Operation::Lookup,
                None,
                Some(&[]),
                Outcome::NotFound,
            ),
        ];
        let mut events = events;
        events[2].set_server(&"standby-ß".repeat(10));
        events[1].set_forwarded([4; 16], 77);
        // Cut on a character boundary at 64 bytes (each repeat is 10).
        assert_eq!(events[2].server(), format!("{}stan", "standby-ß".repeat(6)));
        let mut bytes = Vec::new();
        for e in &events {
            e.encode(&mut bytes);
        }
        let mut at = 0;
        for e in &events {
            let (back, used) = AuditEvent::decode(&bytes[at..]).expect("decodes");
            at += used;
            let mut again = Vec::new();
            back.encode(&mut again);
            let mut original = Vec::new();
            e.encode(&mut original);
            assert_eq!(again, original);
            assert_eq!((back.at, back.roles, back.calls), (e.at, e.roles, e.calls));
            assert_eq!(back.fields(), e.fields());
            assert_eq!(back.purpose(), e.purpose());
            assert_eq!(back.application_name(), e.application_name());
            assert_eq!(back.token(), e.token());
            assert_eq!(back.server(), e.server());
            assert_eq!(back.forwarded(), e.forwarded());
        }
        assert_eq!(at, bytes.len());
        // Every shorter prefix of an event is refused, never read past.
        let mut one = Vec::new();
        events[0].encode(&mut one);
        for cut in 0..one.len() {
            assert!(AuditEvent::decode(&one[..cut]).is_none(), "cut at {cut}");
        }
        // Lengths past their buffers and flags other than 0 and 1.
        for (offset, value) in [(26, 2u8), (27, 9), (44, 255), (45, 0xff), (53, 65)] {
            let mut bad = one.clone();
            bad[offset] = value;
            assert!(AuditEvent::decode(&bad).is_none(), "byte {offset} = {value}");
        }
    }
}
