//! [`ExecutionContext`]: the key/value state a job or step saves for restarts.
//!
//! Contexts are stored as JSON in the shape Spring Batch's Jackson serializers write
//! (`{"@class":"java.util.HashMap","key":value,...}`), so a Spring Batch application configured
//! with `Jackson2ExecutionContextStringSerializer` or `JacksonExecutionContextStringSerializer`
//! reads what csv2db writes, and the other way round.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

/// The key under which Jackson's default typing records the map's Java class.
const CLASS_KEY: &str = "@class";
/// The Java class Spring Batch's serializers record for a context.
const CONTEXT_CLASS: &str = "java.util.HashMap";

/// Ordered string keys to JSON values, saved with an execution.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ExecutionContext {
    entries: BTreeMap<String, Value>,
}

/// A stored context that is not JSON (for example one written with Java serialization).
#[derive(Debug, thiserror::Error)]
#[error(
    "execution context is not JSON (configure the Spring Batch application with a Jackson execution context serializer): {0}"
)]
pub struct ContextFormatError(#[source] serde_json::Error);

impl ExecutionContext {
    /// An empty context.
    pub fn new() -> Self {
        Self::default()
    }

    /// The value stored under `key`.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.entries.get(key)
    }

    /// The string stored under `key`.
    pub fn get_str(&self, key: &str) -> Option<&str> {
        self.get(key).and_then(Value::as_str)
    }

    /// The integer stored under `key`.
    pub fn get_i64(&self, key: &str) -> Option<i64> {
        self.get(key).and_then(Value::as_i64)
    }

    /// The boolean stored under `key`.
    pub fn get_bool(&self, key: &str) -> Option<bool> {
        self.get(key).and_then(Value::as_bool)
    }

    /// Stores `value` under `key`, replacing any previous value.
    pub fn put(&mut self, key: impl Into<String>, value: impl Into<Value>) {
        self.entries.insert(key.into(), value.into());
    }

    /// Copies every entry of `other` into this context, replacing values of the same keys.
    pub fn merge(&mut self, other: &ExecutionContext) {
        for (key, value) in &other.entries {
            self.entries.insert(key.clone(), value.clone());
        }
    }

    /// Removes `key`.
    pub fn remove(&mut self, key: &str) -> Option<Value> {
        self.entries.remove(key)
    }

    /// True when `key` is present.
    pub fn contains_key(&self, key: &str) -> bool {
        self.entries.contains_key(key)
    }

    /// The entries in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Value)> {
        self.entries
            .iter()
            .map(|(key, value)| (key.as_str(), value))
    }

    /// True when the context has no entries.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The JSON text Spring Batch's Jackson serializer would write for this context.
    pub fn to_json(&self) -> String {
        let mut map = Map::new();
        map.insert(CLASS_KEY.to_string(), Value::from(CONTEXT_CLASS));
        for (key, value) in &self.entries {
            map.insert(key.clone(), value.clone());
        }
        Value::Object(map).to_string()
    }

    /// Reads a context written by csv2db or by Spring Batch's Jackson serializers.
    ///
    /// # Errors
    /// When `text` is not a JSON object.
    pub fn from_json(text: &str) -> Result<Self, ContextFormatError> {
        let map: Map<String, Value> = serde_json::from_str(text).map_err(ContextFormatError)?;
        let entries = map
            .into_iter()
            .filter(|(key, _)| key != CLASS_KEY)
            .collect();
        Ok(ExecutionContext { entries })
    }
}

impl FromIterator<(String, Value)> for ExecutionContext {
    fn from_iter<T: IntoIterator<Item = (String, Value)>>(iter: T) -> Self {
        ExecutionContext {
            entries: iter.into_iter().collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_jacksons_default_typing_shape() {
        let mut context = ExecutionContext::new();
        context.put("batch.version", "6.0.4");
        context.put("reader.read.count", 10);
        assert_eq!(
            context.to_json(),
            r#"{"@class":"java.util.HashMap","batch.version":"6.0.4","reader.read.count":10}"#
        );
    }

    #[test]
    fn reads_what_spring_batch_writes() {
        let context = ExecutionContext::from_json(
            r#"{"@class":"java.util.HashMap","batch.stepType":"org.springframework.batch.core.step.tasklet.TaskletStep","batch.executed":true}"#,
        )
        .expect("valid JSON");
        assert_eq!(context.get_bool("batch.executed"), Some(true));
        assert!(!context.contains_key("@class"));
    }

    #[test]
    fn refuses_java_serialization() {
        let error =
            ExecutionContext::from_json("rO0ABXNyABFqYXZhLnV0aWwuSGFzaE1hcA==").unwrap_err();
        assert!(error.to_string().contains("not JSON"));
    }
}
