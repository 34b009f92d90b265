//! The metadata table of a GGUF file: ordered key/value pairs with typed,
//! error-returning accessors and architecture-prefixed keys
//! (`{arch}.block_count`).

use std::collections::HashMap;

use crate::error::{GgufError, Result};
use crate::value::{Array, Value};

/// Key of the architecture name every model carries.
pub const KEY_ARCHITECTURE: &str = "general.architecture";
/// Key of the tensor data alignment (u32, default [`DEFAULT_ALIGNMENT`]).
pub const KEY_ALIGNMENT: &str = "general.alignment";
/// Alignment of tensor data when `general.alignment` is absent.
pub const DEFAULT_ALIGNMENT: u64 = 32;

/// Metadata in file order, with lookup by key.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Metadata {
    entries: Vec<(String, Value)>,
    index: HashMap<String, usize>,
}

impl Metadata {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `key`, or returns the value back when the key is already present.
    pub fn insert(&mut self, key: String, value: Value) -> std::result::Result<(), Value> {
        if self.index.contains_key(&key) {
            return Err(value);
        }
        self.index.insert(key.clone(), self.entries.len());
        self.entries.push((key, value));
        Ok(())
    }

    /// Sets `key`, replacing an earlier value in place.
    pub fn set(&mut self, key: impl Into<String>, value: Value) {
        let key = key.into();
        match self.index.get(&key) {
            Some(&i) => self.entries[i].1 = value,
            None => {
                let _ = self.insert(key, value);
            }
        }
    }

    /// Removes `key`, keeping the order of the others.
    pub fn remove(&mut self, key: &str) -> Option<Value> {
        let i = self.index.remove(key)?;
        let (_, v) = self.entries.remove(i);
        for slot in self.index.values_mut() {
            if *slot > i {
                *slot -= 1;
            }
        }
        Some(v)
    }

    /// The value of `key`, if present.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.index.get(key).map(|&i| &self.entries[i].1)
    }

    /// Entries in file order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Value)> {
        self.entries.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are no entries.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn require(&self, key: &str) -> Result<&Value> {
        self.get(key)
            .ok_or_else(|| GgufError::MissingKey { key: key.into() })
    }

    fn typed<'a, T>(
        &'a self,
        key: &str,
        expected: &'static str,
        f: impl FnOnce(&'a Value) -> Option<T>,
    ) -> Result<T> {
        let v = self.require(key)?;
        f(v).ok_or_else(|| GgufError::WrongType {
            key: key.into(),
            expected,
            found: v.type_name(),
        })
    }

    /// `key` as a non-negative integer of any width.
    pub fn get_u64(&self, key: &str) -> Result<u64> {
        self.typed(key, "a non-negative integer", Value::as_u64)
    }

    /// `key` as a signed integer of any width.
    pub fn get_i64(&self, key: &str) -> Result<i64> {
        self.typed(key, "an integer", Value::as_i64)
    }

    /// `key` as a number.
    pub fn get_f64(&self, key: &str) -> Result<f64> {
        self.typed(key, "a number", Value::as_f64)
    }

    /// `key` as a string.
    pub fn get_str(&self, key: &str) -> Result<&str> {
        self.typed(key, "a string", Value::as_str)
    }

    /// `key` as a bool.
    pub fn get_bool(&self, key: &str) -> Result<bool> {
        self.typed(key, "a bool", Value::as_bool)
    }

    /// `key` as an array.
    pub fn get_array(&self, key: &str) -> Result<&Array> {
        self.typed(key, "an array", Value::as_array)
    }

    /// The model architecture (`general.architecture`).
    pub fn architecture(&self) -> Result<&str> {
        self.get_str(KEY_ARCHITECTURE)
    }

    /// The full key `{arch}.{suffix}`, e.g. `llama.block_count`.
    pub fn arch_key(&self, suffix: &str) -> Result<String> {
        Ok(format!("{}.{suffix}", self.architecture()?))
    }

    /// The value of `{arch}.{suffix}`, if present.
    pub fn get_arch(&self, suffix: &str) -> Option<&Value> {
        self.get(&self.arch_key(suffix).ok()?)
    }

    /// `{arch}.{suffix}` as a non-negative integer.
    pub fn arch_u64(&self, suffix: &str) -> Result<u64> {
        self.get_u64(&self.arch_key(suffix)?)
    }

    /// `{arch}.{suffix}` as a number.
    pub fn arch_f64(&self, suffix: &str) -> Result<f64> {
        self.get_f64(&self.arch_key(suffix)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typed_access_and_arch_keys() {
        let mut m = Metadata::new();
        m.set(KEY_ARCHITECTURE, Value::String("llama".into()));
        m.set("llama.block_count", Value::U32(30));
        m.set("llama.rope.freq_base", Value::F32(10000.0));
        assert_eq!(m.arch_u64("block_count").unwrap(), 30);
        assert_eq!(m.arch_f64("rope.freq_base").unwrap(), 10000.0);
        assert!(matches!(
            m.get_str("llama.block_count"),
            Err(GgufError::WrongType { .. })
        ));
        assert!(matches!(
            m.arch_u64("expert_count"),
            Err(GgufError::MissingKey { .. })
        ));
        assert!(m.insert("llama.block_count".into(), Value::U8(1)).is_err());
        assert_eq!(
            m.remove(KEY_ARCHITECTURE),
            Some(Value::String("llama".into()))
        );
        assert_eq!(m.get_u64("llama.block_count").unwrap(), 30);
        assert_eq!(m.len(), 2);
    }
}
