//! The vault's storage: which layout a release installed, and the shape
//! its relations must have where the extension reads them without SPI.
//!
//! Everything here is a pure function of facts the extension reads from
//! PostgreSQL's catalog and relation descriptors (relkinds, access
//! methods, attribute numbers, type OIDs), so every reshaping an attacker
//! or a DBA can make is a unit test here rather than a crash there.

/// The storage layouts, one per release that changed it. A library runs
/// the layout of the release installed in the database until ALTER
/// EXTENSION UPDATE, so it knows every earlier one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Schema {
    /// 0.1.0: records and key check values.
    V0_1,
    /// 0.2.0: key check values name the vault they belong to.
    V0_2,
    /// 0.3.0 on: records expire and are soft-deleted; shares, sessions,
    /// application data and consents.
    V0_3,
    /// 0.4.0 on: standbys' audit events are forwarded to the primary,
    /// which remembers the last frame it took from each (`forwarded`).
    V0_4,
    /// 0.6.0 on: single values tokenized on their own (`field_tokens`).
    V0_6,
}

impl Schema {
    pub const ALL: [Schema; 5] = [Schema::V0_1, Schema::V0_2, Schema::V0_3, Schema::V0_4, Schema::V0_6];

    /// The layout of a release, as pg_extension's `extversion` names it;
    /// None for a release this library does not know (a later one).
    pub fn of_release(version: &str) -> Option<Schema> {
        match version {
            "0.1.0" => Some(Schema::V0_1),
            "0.2.0" => Some(Schema::V0_2),
            "0.3.0" | "0.3.1" | "0.3.2" => Some(Schema::V0_3),
            "0.4.0" | "0.5.0" => Some(Schema::V0_4),
            "0.6.0" => Some(Schema::V0_6),
            _ => None,
        }
    }

    /// Whether records have `expires_at` and `deleted_at`, and the tables
    /// of shares, sessions, application data and consents exist.
    pub fn has_life_cycle(self) -> bool {
        match self {
            Schema::V0_1 | Schema::V0_2 => false,
            Schema::V0_3 | Schema::V0_4 | Schema::V0_6 => true,
        }
    }

    /// Whether `key_check` has its `vault_id` column.
    pub fn has_vault_id(self) -> bool {
        match self {
            Schema::V0_1 => false,
            Schema::V0_2 | Schema::V0_3 | Schema::V0_4 | Schema::V0_6 => true,
        }
    }

    /// Whether `forwarded` (the last frame taken from each standby) exists.
    pub fn has_forwarding(self) -> bool {
        match self {
            Schema::V0_1 | Schema::V0_2 | Schema::V0_3 => false,
            Schema::V0_4 | Schema::V0_6 => true,
        }
    }

    /// Whether `field_tokens` (single values tokenized) exists.
    pub fn has_field_tokens(self) -> bool {
        match self {
            Schema::V0_1 | Schema::V0_2 | Schema::V0_3 | Schema::V0_4 => false,
            Schema::V0_6 => true,
        }
    }
}

/// What a relation is (pg_class.relkind), as far as a probe cares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RelKind {
    Table,
    PartitionedTable,
    View,
    Index,
    PartitionedIndex,
    Other,
}

impl RelKind {
    /// The kind of a pg_class.relkind letter.
    pub fn of(relkind: u8) -> RelKind {
        match relkind {
            b'r' => RelKind::Table,
            b'p' => RelKind::PartitionedTable,
            b'v' => RelKind::View,
            b'i' => RelKind::Index,
            b'I' => RelKind::PartitionedIndex,
            _ => RelKind::Other,
        }
    }
}

/// A table as opened for a probe.
#[derive(Clone, Copy, Debug)]
pub struct HeapShape {
    pub kind: RelKind,
    /// Whether it has a table access method to scan with (a partitioned
    /// table has none).
    pub has_table_am: bool,
}

/// An index as opened for a probe.
#[derive(Clone, Copy, Debug)]
pub struct IndexShape<'a> {
    pub kind: RelKind,
    pub is_btree: bool,
    /// Whether pg_index says it is an index of the probed table.
    pub of_table: bool,
    /// Whether it refuses a duplicate key when the row is written
    /// (indisunique and indimmediate): the vault's uniqueness is its.
    pub unique_at_once: bool,
    /// Whether it is valid, ready and live (not one being built or
    /// dropped concurrently): it holds an entry for every row.
    pub complete: bool,
    /// Which rows it leaves out.
    pub predicate: Predicate,
    /// Whether it has expressions (entries that are not the columns'
    /// values).
    pub expressions: bool,
    /// pg_index.indkey: the table's columns it holds, keys then INCLUDE.
    pub columns: &'a [i16],
}

/// An index's predicate (pg_index.indpred), as far as a probe cares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Predicate {
    /// A whole index: every row has an entry.
    None,
    /// `WHERE column IS NOT NULL`: every row whose `column` is not NULL
    /// has an entry (the blind indexes from 0.3.0 on: a probe of a key
    /// never asks for NULL).
    NotNull(i16),
    /// Anything else: rows a probe asks for may be left out.
    Other,
}

/// Whether a probe may scan `index` on `heap`: a plain table, a complete,
/// unique (not deferred) btree of it whose first column is `wanted[0]`,
/// with an entry for every row where that column is not NULL and, when
/// the entries themselves are read (`index_only`), holding exactly
/// `wanted`.
pub fn probe_fits(heap: &HeapShape, index: &IndexShape<'_>, wanted: &[i16], index_only: bool) -> bool {
    if heap.kind != RelKind::Table || !heap.has_table_am {
        return false;
    }
    if index.kind != RelKind::Index || !index.is_btree || !index.of_table || index.columns.is_empty() {
        return false;
    }
    if !index.unique_at_once || !index.complete || index.expressions {
        return false;
    }
    let Some(key) = wanted.first() else {
        return false;
    };
    match index.predicate {
        Predicate::None => {}
        Predicate::NotNull(column) if column == *key => {}
        Predicate::NotNull(_) | Predicate::Other => return false,
    }
    if index_only {
        index.columns == wanted
    } else {
        index.columns.first() == Some(key)
    }
}

/// One column of a tuple descriptor: whether dropped, and its type.
#[derive(Clone, Copy, Debug)]
pub struct Column {
    pub dropped: bool,
    pub type_oid: u32,
}

/// Whether column `attnum` (1-based) is a live column of type `type_oid`.
pub fn column_is(columns: &[Column], attnum: usize, type_oid: u32) -> bool {
    attnum >= 1 && columns.get(attnum - 1).is_some_and(|c| !c.dropped && c.type_oid == type_oid)
}

/// The types an index entry of a blind index or primary key is read as.
#[derive(Clone, Copy, Debug)]
pub struct EntryTypes {
    pub token: u32,
    pub expires_at: u32,
}

/// Where a probe finds the token, and the expiry when the entry holds
/// one, in an index entry whose descriptor is `columns`: the token at
/// `token_attnum` (a uuid) and nothing after it, or a timestamptz.
pub fn entry_layout(columns: &[Column], token_attnum: usize, types: EntryTypes) -> Option<EntryLayout> {
    if !column_is(columns, token_attnum, types.token) {
        return None;
    }
    match columns.len() - token_attnum {
        0 => Some(EntryLayout { token: token_attnum - 1, expires_at: None }),
        1 if column_is(columns, token_attnum + 1, types.expires_at) => {
            Some(EntryLayout { token: token_attnum - 1, expires_at: Some(token_attnum) })
        }
        _ => None,
    }
}

/// Zero-based positions in a deformed index entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EntryLayout {
    pub token: usize,
    pub expires_at: Option<usize>,
}

impl EntryLayout {
    /// The positions of the values to read from an entry deformed into
    /// `nulls`: None when the token is NULL (the vault's token is NOT
    /// NULL; a table altered to allow one has no pointer to read), the
    /// expiry's position only when it is not NULL.
    pub fn read(self, nulls: &[bool]) -> Option<(usize, Option<usize>)> {
        if *nulls.get(self.token)? {
            return None;
        }
        Some((self.token, self.expires_at.filter(|&at| nulls.get(at) == Some(&false))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const UUID: u32 = 2950;
    const TIMESTAMPTZ: u32 = 1184;
    const BYTEA: u32 = 17;
    const TYPES: EntryTypes = EntryTypes { token: UUID, expires_at: TIMESTAMPTZ };

    const TABLE: HeapShape = HeapShape { kind: RelKind::Table, has_table_am: true };

    fn btree(columns: &[i16]) -> IndexShape<'_> {
        IndexShape {
            kind: RelKind::Index,
            is_btree: true,
            of_table: true,
            unique_at_once: true,
            complete: true,
            predicate: Predicate::None,
            expressions: false,
            columns,
        }
    }

    fn live(type_oid: u32) -> Column {
        Column { dropped: false, type_oid }
    }

    #[test]
    fn every_release_has_a_schema() {
        let sql = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../sql");
        let mut seen = 0;
        for dir in [sql.clone(), sql.join("install")] {
            for entry in std::fs::read_dir(dir).unwrap() {
                let name = entry.unwrap().file_name().into_string().unwrap();
                let Some(versions) = name.strip_prefix("pii_vault--").and_then(|n| n.strip_suffix(".sql")) else {
                    continue;
                };
                for version in versions.split("--") {
                    assert!(Schema::of_release(version).is_some(), "{name}: release {version} has no schema");
                    seen += 1;
                }
            }
        }
        assert!(seen >= 7, "the scripts were not found ({seen} versions)");
        assert_eq!(Schema::of_release("0.9.9"), None);
        assert_eq!(Schema::of_release(""), None);
    }

    #[test]
    fn each_schema_adds_to_the_one_before() {
        assert!(Schema::ALL.windows(2).all(|w| w[0].has_vault_id() <= w[1].has_vault_id()));
        assert!(Schema::ALL.windows(2).all(|w| w[0].has_life_cycle() <= w[1].has_life_cycle()));
        assert!(Schema::V0_3.has_life_cycle() && !Schema::V0_2.has_life_cycle());
        assert!(Schema::V0_2.has_vault_id() && !Schema::V0_1.has_vault_id());
    }

    #[test]
    fn the_vaults_own_relations_fit() {
        assert!(probe_fits(&TABLE, &btree(&[1]), &[1], false));
        assert!(probe_fits(&TABLE, &btree(&[3, 1, 6]), &[3, 1, 6], true));
        assert!(probe_fits(&TABLE, &btree(&[3, 1]), &[3, 1], true));
        // A full read needs only the key in front.
        assert!(probe_fits(&TABLE, &btree(&[3, 1, 6]), &[3], false));
    }

    #[test]
    fn a_partitioned_table_or_a_view_in_its_place_does_not() {
        for kind in [RelKind::PartitionedTable, RelKind::View, RelKind::Index, RelKind::Other] {
            let heap = HeapShape { kind, has_table_am: kind == RelKind::Table };
            assert!(!probe_fits(&heap, &btree(&[1]), &[1], false), "{kind:?}");
        }
        let no_am = HeapShape { kind: RelKind::Table, has_table_am: false };
        assert!(!probe_fits(&no_am, &btree(&[1]), &[1], false));
        assert_eq!(RelKind::of(b'p'), RelKind::PartitionedTable);
        assert_eq!(RelKind::of(b'v'), RelKind::View);
        assert_eq!(RelKind::of(b'm'), RelKind::Other);
    }

    #[test]
    fn another_kind_of_index_does_not() {
        let hash = IndexShape { is_btree: false, ..btree(&[1]) };
        assert!(!probe_fits(&TABLE, &hash, &[1], false));
        let partitioned = IndexShape { kind: RelKind::PartitionedIndex, ..btree(&[1]) };
        assert!(!probe_fits(&TABLE, &partitioned, &[1], false));
        let of_another_table = IndexShape { of_table: false, ..btree(&[1]) };
        assert!(!probe_fits(&TABLE, &of_another_table, &[1], false));
        assert!(!probe_fits(&TABLE, &btree(&[]), &[1], false));
        assert!(!probe_fits(&TABLE, &btree(&[1]), &[], false));
    }

    #[test]
    fn an_index_that_misses_rows_or_duplicates_does_not() {
        // Each would answer "no such record" for one that exists, or let a
        // second record take an identifier: never an index the vault reads
        // or relies on.
        let not_unique = IndexShape { unique_at_once: false, ..btree(&[1, 2]) };
        let being_built = IndexShape { complete: false, ..btree(&[1, 2]) };
        let partial = IndexShape { predicate: Predicate::Other, ..btree(&[1, 2]) };
        let without_other_nulls = IndexShape { predicate: Predicate::NotNull(2), ..btree(&[1, 2]) };
        let of_expressions = IndexShape { expressions: true, ..btree(&[1, 2]) };
        for index in [not_unique, being_built, partial, without_other_nulls, of_expressions] {
            assert!(!probe_fits(&TABLE, &index, &[1, 2], true), "{index:?}");
            assert!(!probe_fits(&TABLE, &index, &[1], false), "{index:?}");
        }
        assert!(probe_fits(&TABLE, &btree(&[1, 2]), &[1, 2], true));
        // The blind indexes leave out only rows without that identifier.
        let blind = IndexShape { predicate: Predicate::NotNull(1), ..btree(&[1, 2]) };
        assert!(probe_fits(&TABLE, &blind, &[1, 2], true));
        assert!(probe_fits(&TABLE, &blind, &[1], false));
    }

    #[test]
    fn an_index_on_other_columns_does_not() {
        // Keyed on another column.
        assert!(!probe_fits(&TABLE, &btree(&[2]), &[1], false));
        // The key second.
        assert!(!probe_fits(&TABLE, &btree(&[2, 3]), &[3, 1], true));
        // An index-only read: one column more, one fewer, or another INCLUDE.
        assert!(!probe_fits(&TABLE, &btree(&[3, 1, 6, 2]), &[3, 1, 6], true));
        assert!(!probe_fits(&TABLE, &btree(&[3, 1]), &[3, 1, 6], true));
        assert!(!probe_fits(&TABLE, &btree(&[3, 2, 6]), &[3, 1, 6], true));
    }

    #[test]
    fn entries_read_as_the_release_made_them() {
        let v030 = [live(BYTEA), live(UUID), live(TIMESTAMPTZ)];
        assert_eq!(entry_layout(&v030, 2, TYPES), Some(EntryLayout { token: 1, expires_at: Some(2) }));
        let v020 = [live(BYTEA), live(UUID)];
        assert_eq!(entry_layout(&v020, 2, TYPES), Some(EntryLayout { token: 1, expires_at: None }));
        let pkey = [live(UUID)];
        assert_eq!(entry_layout(&pkey, 1, TYPES), Some(EntryLayout { token: 0, expires_at: None }));
    }

    #[test]
    fn a_retyped_or_dropped_column_is_not_read() {
        // The token retyped to bytea or text.
        assert_eq!(entry_layout(&[live(BYTEA), live(BYTEA)], 2, TYPES), None);
        assert_eq!(entry_layout(&[live(BYTEA), live(25)], 2, TYPES), None);
        // The expiry retyped to timestamp without time zone.
        assert_eq!(entry_layout(&[live(BYTEA), live(UUID), live(1114)], 2, TYPES), None);
        // A dropped column in the token's place.
        let dropped = Column { dropped: true, type_oid: UUID };
        assert_eq!(entry_layout(&[live(BYTEA), dropped], 2, TYPES), None);
        // One column too many, or too few for the token.
        assert_eq!(entry_layout(&[live(BYTEA), live(UUID), live(TIMESTAMPTZ), live(UUID)], 2, TYPES), None);
        assert_eq!(entry_layout(&[live(BYTEA)], 2, TYPES), None);
        assert_eq!(entry_layout(&[], 1, TYPES), None);
        assert!(!column_is(&[live(UUID)], 0, UUID));
    }

    #[test]
    fn a_null_token_is_not_read() {
        let layout = EntryLayout { token: 1, expires_at: Some(2) };
        assert_eq!(layout.read(&[false, true, false]), None);
        assert_eq!(layout.read(&[false, false, true]), Some((1, None)));
        assert_eq!(layout.read(&[false, false, false]), Some((1, Some(2))));
        // Flags shorter than the layout: nothing is read past them.
        assert_eq!(layout.read(&[false]), None);
    }
}
