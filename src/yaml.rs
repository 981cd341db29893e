//! YAML in and out. serde-saphyr replaces the unmaintained serde_yaml: it is panic-free and
//! bounded (nesting, aliases, sizes) on hostile input, with no unsafe code.

use serde::Serialize;
use serde::de::DeserializeOwned;

pub use serde_saphyr::{DeserializeError as ReadError, SerializeError as WriteError};

/// Reads one YAML (or JSON) document. Errors give a line and column but never quote the
/// text, which may hold credentials.
pub fn from_str<T: DeserializeOwned>(text: &str) -> Result<T, ReadError> {
    serde_saphyr::from_str_with_options(text, serde_saphyr::options! { with_snippet: false })
}

pub fn to_string<T: Serialize>(value: &T) -> Result<String, WriteError> {
    serde_saphyr::to_string(value)
}
