//! `jsonb` values handled as bytes.
//!
//! pgrx's own `JsonB` turns every value into a `serde_json::Value` (a text
//! round trip per call, and a panic past serde's nesting limit). The vault
//! does not need that: it encrypts the jsonb datum's own bytes and hands
//! them back as they were. The indexed fields are read from the binary
//! value in place; text is parsed only for field selection and merge patch.

use std::ffi::CStr;

use pgrx::callconv::{Arg, ArgAbi, BoxRet, FcInfo};
use pgrx::datum::{Datum, FromDatum, IntoDatum};
use pgrx::nullable::Nullable;
use pgrx::prelude::*;
use pgrx::{pg_sys, set_varsize_4b, vardata_any, varsize_any_exhdr};

use crate::error::{VaultError, VaultResult};

/// One top-level field of a jsonb object, as the vault's indexes see it.
#[derive(Debug, PartialEq, Eq)]
pub enum TopLevelField<'a> {
    Absent,
    Null,
    String(&'a str),
    /// A number, boolean, array or object.
    Other,
}

/// A detoasted jsonb varlena in PostgreSQL memory.
pub struct JsonbDatum {
    varlena: *mut pg_sys::varlena,
}

impl_sql_translatable!(JsonbDatum, "jsonb");

impl FromDatum for JsonbDatum {
    unsafe fn from_polymorphic_datum(datum: pg_sys::Datum, is_null: bool, _: pg_sys::Oid) -> Option<Self> {
        if is_null {
            return None;
        }
        // SAFETY: the datum is a jsonb varlena (the SQL signature says so);
        // detoasting returns it in memory valid for the rest of the call.
        let varlena = unsafe { pg_sys::pg_detoast_datum_packed(datum.cast_mut_ptr()) };
        Some(JsonbDatum { varlena })
    }
}

impl IntoDatum for JsonbDatum {
    fn into_datum(self) -> Option<pg_sys::Datum> {
        Some(pg_sys::Datum::from(self.varlena))
    }

    fn type_oid() -> pg_sys::Oid {
        pg_sys::JSONBOID
    }
}

// The calling-convention glue pgrx provides for its own types.
// SAFETY: a JsonbDatum is built from the argument's datum by FromDatum,
// which detoasts it into memory that lives for the call.
unsafe impl<'fcx> ArgAbi<'fcx> for JsonbDatum {
    unsafe fn unbox_arg_unchecked(arg: Arg<'_, 'fcx>) -> Self {
        // SAFETY: the functions taking a JsonbDatum are STRICT, so pgrx only
        // calls this for a non-null jsonb argument.
        unsafe { arg.unbox_arg_using_from_datum() }.expect("STRICT function received NULL")
    }

    unsafe fn unbox_nullable_arg(arg: Arg<'_, 'fcx>) -> Nullable<Self> {
        // SAFETY: the argument is a jsonb (the SQL signature says so), NULL
        // handled by FromDatum.
        unsafe { arg.unbox_arg_using_from_datum::<Self>() }.into()
    }
}

// Elements of a jsonb[] argument (vault_store_many). An element points
// into the array, which pgrx may have flattened into a copy it frees once
// the elements are collected (a PL/pgSQL array variable arrives expanded):
// each element is copied out first.
// SAFETY: an element pgrx unboxes from a jsonb[] is a non-null jsonb
// varlena; the copy is palloc'd in the function's memory context.
unsafe impl pgrx::datum::UnboxDatum for JsonbDatum {
    type As<'src> = JsonbDatum;

    unsafe fn unbox<'src>(datum: Datum<'src>) -> Self::As<'src>
    where
        Self: 'src,
    {
        // SAFETY: per the impl's contract above.
        let varlena = unsafe { pg_sys::pg_detoast_datum_copy(datum.sans_lifetime().cast_mut_ptr()) };
        JsonbDatum { varlena }
    }
}

// SAFETY: the datum returned is the varlena the JsonbDatum owns, palloc'd
// in the function's memory context.
unsafe impl BoxRet for JsonbDatum {
    unsafe fn box_into<'fcx>(self, fcinfo: &mut FcInfo<'fcx>) -> Datum<'fcx> {
        match self.into_datum() {
            // SAFETY: a valid jsonb datum, the function's declared result.
            Some(datum) => unsafe { fcinfo.return_raw_datum(datum) },
            None => fcinfo.return_null(),
        }
    }
}

/// An upper bound of the text length of one scalar (0 for a container).
///
/// # Safety
/// `value` was filled by `JsonbIteratorNext` and its container is live.
unsafe fn scalar_text_len_bound(value: &pg_sys::JsonbValue) -> usize {
    match value.type_ {
        pg_sys::jbvType::jbvString => {
            // SAFETY: the string's bytes lie in the container.
            let bytes =
                unsafe { std::slice::from_raw_parts(value.val.string.val as *const u8, value.val.string.len as usize) };
            // Quotes, and at most \uXXXX (6 characters) for a control byte.
            2 + bytes
                .iter()
                .map(|&b| {
                    if b < 0x20 {
                        6
                    } else if b == b'"' || b == b'\\' {
                        2
                    } else {
                        1
                    }
                })
                .sum::<usize>()
        }
        // SAFETY: a numeric's varlena lies in the container.
        pg_sys::jbvType::jbvNumeric => unsafe { numeric_text_len_bound(value.val.numeric.cast()) },
        // null, true, false
        pg_sys::jbvType::jbvNull | pg_sys::jbvType::jbvBool => 5,
        _ => 0,
    }
}

/// An upper bound of `numeric_out`'s length for a numeric, from its
/// header: the sign, 4 digits per base-10000 digit before the point, the
/// point and the display scale after it.
///
/// # Safety
/// `numeric` points at a whole numeric varlena.
unsafe fn numeric_text_len_bound(numeric: *mut pg_sys::varlena) -> usize {
    // SAFETY: per the contract; the header's first 16 bits are always there.
    let data = unsafe { vardata_any(numeric) } as *const u8;
    // SAFETY: every numeric has at least its 16-bit header.
    let header = unsafe { std::ptr::read_unaligned(data.cast::<u16>()) };
    const SIGN_MASK: u16 = 0xC000;
    const SHORT: u16 = 0x8000;
    let (weight, dscale) = match header & SIGN_MASK {
        // Short format: 6 bits of scale and 7 of weight (sign-extended).
        SHORT => {
            let dscale = (header & 0x1F80) >> 7;
            let mut weight = i32::from(header & 0x003F);
            if header & 0x0040 != 0 {
                weight -= 64;
            }
            (weight, i32::from(dscale))
        }
        // NaN and infinities: words, never in JSON.
        0xC000 => return 9,
        // Long format: the scale, then a 16-bit weight.
        _ => {
            // SAFETY: a long-format numeric has both 16-bit fields.
            let weight = unsafe { std::ptr::read_unaligned(data.add(2).cast::<i16>()) };
            (i32::from(weight), i32::from(header & 0x3FFF))
        }
    };
    let integer_digits = if weight >= 0 { 4 * (weight as usize + 1) } else { 1 };
    1 + integer_digits + 1 + dscale as usize
}

impl JsonbDatum {
    /// The jsonb bytes without the varlena header.
    pub fn payload(&self) -> &[u8] {
        // SAFETY: `varlena` is a detoasted (possibly short-header) varlena.
        unsafe { std::slice::from_raw_parts(vardata_any(self.varlena) as *const u8, varsize_any_exhdr(self.varlena)) }
    }

    /// A datum of `len` payload bytes written by `fill` straight into its
    /// palloc'd memory (`vault_get` decrypts there, with no copy), and what
    /// `fill` returned. `fill` must leave the bytes `payload` once returned
    /// (authenticated decryption guarantees it: exactly what PostgreSQL made).
    pub fn filled_by<R>(len: usize, fill: impl FnOnce(&mut [u8]) -> R) -> (JsonbDatum, R) {
        let total = len + pg_sys::VARHDRSZ;
        // SAFETY: palloc returns `total` writable bytes or raises; the slice
        // covers the bytes after the header and ends before the datum is
        // handed out.
        unsafe {
            let varlena = pg_sys::palloc(total) as *mut pg_sys::varlena;
            set_varsize_4b(varlena, total as i32);
            let payload = std::slice::from_raw_parts_mut((varlena as *mut u8).add(pg_sys::VARHDRSZ), len);
            let result = fill(payload);
            (JsonbDatum { varlena }, result)
        }
    }

    /// The top-level field `name` of this value (see `top_level_fields`).
    #[cfg(feature = "pg_test")]
    pub fn top_level_field(&self, name: &str) -> VaultResult<TopLevelField<'_>> {
        self.top_level_fields([name]).map(|[field]| field)
    }

    /// The top-level fields `names` of this value, read from the binary
    /// jsonb without printing it (strings are stored unescaped). Err when
    /// the value is not an object.
    pub fn top_level_fields<const N: usize>(&self, names: [&str; N]) -> VaultResult<[TopLevelField<'_>; N]> {
        // SAFETY: pg_detoast_datum returns the datum itself unless it has a
        // short header; then an aligned 4-byte-header copy in the current
        // memory context, which outlives `&self` (both live for the call).
        // jsonb's C code reads the container as aligned uint32s. Once for
        // all the names.
        let container = unsafe {
            let varlena = pg_sys::pg_detoast_datum(self.varlena);
            (varlena as *mut u8).add(pg_sys::VARHDRSZ) as *mut pg_sys::JsonbContainer
        };
        // SAFETY: the container is a whole jsonb value (header first).
        if unsafe { (*container).header } & pg_sys::JB_FOBJECT == 0 {
            return Err(VaultError::NotAnObject);
        }
        let mut fields = [const { TopLevelField::Absent }; N];
        for (field, name) in fields.iter_mut().zip(names) {
            // SAFETY: `container` is an object container that lives as long
            // as `&self`.
            *field = unsafe { Self::field_of(container, name) }?;
        }
        Ok(fields)
    }

    /// # Safety
    /// `container` is a jsonb object container living as long as `'a`.
    unsafe fn field_of<'a>(container: *mut pg_sys::JsonbContainer, name: &str) -> VaultResult<TopLevelField<'a>> {
        let mut value = std::mem::MaybeUninit::<pg_sys::JsonbValue>::uninit();
        // SAFETY: the key is passed with its length (no NUL needed); the
        // result is written into `value`, or NULL is returned when absent.
        let found = unsafe {
            pg_sys::getKeyJsonValueFromContainer(container, name.as_ptr().cast(), name.len() as i32, value.as_mut_ptr())
        };
        if found.is_null() {
            return Ok(TopLevelField::Absent);
        }
        // SAFETY: a found value was written in full; a string's bytes point
        // into the container.
        let value = unsafe { value.assume_init() };
        Ok(match value.type_ {
            pg_sys::jbvType::jbvNull => TopLevelField::Null,
            pg_sys::jbvType::jbvString => {
                // SAFETY: a string's bytes lie in the container, which lives
                // as long as 'a.
                let bytes = unsafe {
                    std::slice::from_raw_parts(value.val.string.val as *const u8, value.val.string.len as usize)
                };
                TopLevelField::String(std::str::from_utf8(bytes).map_err(|_| VaultError::MalformedJson)?)
            }
            _ => TopLevelField::Other,
        })
    }

    /// An upper bound of the length of this value's JSON text, from the
    /// binary value without printing it. A number is stored by its
    /// digits and exponent: `1e131071` is a few bytes of jsonb and 131 072
    /// characters of text, so the text of a small record can be thousands
    /// of times its size. Code that prints a record checks this first.
    pub fn text_len_bound(&self) -> usize {
        use pg_sys::JsonbIteratorToken::*;
        let mut bound = 0usize;
        // SAFETY: as in top_level_fields, an aligned whole container; the
        // iterator reads it and allocates its own state in the current
        // memory context; `value` is written by every JsonbIteratorNext.
        unsafe {
            let varlena = pg_sys::pg_detoast_datum(self.varlena);
            let container = (varlena as *mut u8).add(pg_sys::VARHDRSZ) as *mut pg_sys::JsonbContainer;
            let mut it = pg_sys::JsonbIteratorInit(container);
            let mut value = std::mem::MaybeUninit::<pg_sys::JsonbValue>::zeroed();
            loop {
                let token = pg_sys::JsonbIteratorNext(&mut it, value.as_mut_ptr(), false);
                // Brackets, commas, ": " and the like: a few per token.
                bound += 4;
                match token {
                    WJB_DONE => break,
                    WJB_KEY | WJB_VALUE | WJB_ELEM => bound += scalar_text_len_bound(&*value.as_ptr()),
                    _ => {}
                }
            }
        }
        bound
    }

    /// The JSON text of this value, as `jsonb_out` writes it.
    pub fn to_text(&self) -> VaultResult<String> {
        // SAFETY: jsonb_out takes one non-null jsonb and returns a C string.
        let cstr = unsafe {
            pgrx::direct_function_call::<&CStr>(pg_sys::jsonb_out, &[Some(pg_sys::Datum::from(self.varlena))])
        }
        .ok_or(VaultError::MalformedJson)?;
        let text = cstr.to_str().map(str::to_owned).map_err(|_| VaultError::MalformedJson);
        // SAFETY: the C string was palloc'd by jsonb_out and is not used again.
        unsafe { pg_sys::pfree(cstr.as_ptr() as *mut std::ffi::c_void) };
        text
    }

    /// Parses JSON text that serde_json wrote (so it is valid JSON).
    pub fn from_text(text: &str) -> VaultResult<JsonbDatum> {
        let ctext = std::ffi::CString::new(text).map_err(|_| VaultError::MalformedJson)?;
        // SAFETY: jsonb_in takes a C string; it raises on invalid input, which
        // serde_json's output is not.
        let datum = unsafe {
            pgrx::direct_function_call_as_datum(pg_sys::jsonb_in, &[Some(pg_sys::Datum::from(ctext.as_ptr()))])
        }
        .ok_or(VaultError::MalformedJson)?;
        Ok(JsonbDatum { varlena: datum.cast_mut_ptr() })
    }
}
