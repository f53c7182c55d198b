//! How a function's parameters are read from record bytes and its results written back.

use crate::RecordError;

/// JSON through serde: `Json<T>` as a parameter parses the bytes into `T`; as a result it
/// serializes `T`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Json<T>(pub T);

/// A parameter type read from a key or value. `None` is an absent key or a tombstone.
pub trait FromBytes<'a>: Sized {
    fn from_bytes(bytes: Option<&'a [u8]>) -> Result<Self, RecordError>;
}

/// A result type written as a key or value. Returns whether the field is present.
pub trait IntoBytes {
    fn write_to(self, out: &mut Vec<u8>) -> Result<bool, RecordError>;

    /// The bytes when they are borrowed, not produced (`&[u8]`, `&str`, and `Option`s of
    /// them; `Some(None)` is an absent field). A value mapper that returns its input's value
    /// then tells the host "unchanged" instead of copying the value back.
    #[doc(hidden)]
    fn borrowed(&self) -> Option<Option<&[u8]>> {
        None
    }
}

fn absent() -> RecordError {
    RecordError::new("absent", "the record has no such field (null key or tombstone); take an Option to accept it")
}

impl<'a> FromBytes<'a> for &'a [u8] {
    fn from_bytes(bytes: Option<&'a [u8]>) -> Result<Self, RecordError> {
        bytes.ok_or_else(absent)
    }
}

impl<'a> FromBytes<'a> for Vec<u8> {
    fn from_bytes(bytes: Option<&'a [u8]>) -> Result<Self, RecordError> {
        bytes.map(<[u8]>::to_vec).ok_or_else(absent)
    }
}

impl<'a> FromBytes<'a> for &'a str {
    fn from_bytes(bytes: Option<&'a [u8]>) -> Result<Self, RecordError> {
        core::str::from_utf8(bytes.ok_or_else(absent)?)
            .map_err(|e| RecordError::new("bad-input", format!("not UTF-8: {e}")))
    }
}

impl<'a> FromBytes<'a> for String {
    fn from_bytes(bytes: Option<&'a [u8]>) -> Result<Self, RecordError> {
        <&str>::from_bytes(bytes).map(str::to_owned)
    }
}

impl<'a, T: serde::Deserialize<'a>> FromBytes<'a> for Json<T> {
    fn from_bytes(bytes: Option<&'a [u8]>) -> Result<Self, RecordError> {
        serde_json::from_slice(bytes.ok_or_else(absent)?)
            .map(Json)
            .map_err(|e| RecordError::new("bad-input", format!("invalid JSON: {e}")))
    }
}

impl<'a, T: FromBytes<'a>> FromBytes<'a> for Option<T> {
    fn from_bytes(bytes: Option<&'a [u8]>) -> Result<Self, RecordError> {
        bytes.map(|b| T::from_bytes(Some(b))).transpose()
    }
}

impl IntoBytes for Vec<u8> {
    fn write_to(self, out: &mut Vec<u8>) -> Result<bool, RecordError> {
        out.extend_from_slice(&self);
        Ok(true)
    }
}

impl IntoBytes for &[u8] {
    fn write_to(self, out: &mut Vec<u8>) -> Result<bool, RecordError> {
        out.extend_from_slice(self);
        Ok(true)
    }

    fn borrowed(&self) -> Option<Option<&[u8]>> {
        Some(Some(self))
    }
}

impl IntoBytes for String {
    fn write_to(self, out: &mut Vec<u8>) -> Result<bool, RecordError> {
        out.extend_from_slice(self.as_bytes());
        Ok(true)
    }
}

impl IntoBytes for &str {
    fn write_to(self, out: &mut Vec<u8>) -> Result<bool, RecordError> {
        out.extend_from_slice(self.as_bytes());
        Ok(true)
    }

    fn borrowed(&self) -> Option<Option<&[u8]>> {
        Some(Some(self.as_bytes()))
    }
}

impl<T: serde::Serialize> IntoBytes for Json<T> {
    fn write_to(self, out: &mut Vec<u8>) -> Result<bool, RecordError> {
        serde_json::to_writer(&mut *out, &self.0)
            .map(|()| true)
            .map_err(|e| RecordError::new("bad-output", format!("cannot write JSON: {e}")))
    }
}

impl<T: IntoBytes> IntoBytes for Option<T> {
    fn write_to(self, out: &mut Vec<u8>) -> Result<bool, RecordError> {
        match self {
            Some(v) => v.write_to(out),
            None => Ok(false),
        }
    }

    fn borrowed(&self) -> Option<Option<&[u8]>> {
        match self {
            Some(v) => v.borrowed(),
            None => Some(None),
        }
    }
}
