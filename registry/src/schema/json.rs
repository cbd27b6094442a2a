//! JSON Schema documents: validation against the draft's meta-schema (drafts 4, 6, 7,
//! 2019-09, 2020-12 via `jsonschema`; draft 7 when `$schema` is absent, like Confluent; no network: `$ref`s outside the document resolve only to
//! the supplied references), canonical string (compact JSON) and normalised form (compact
//! JSON with object keys sorted at every level).

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::Value;

use super::{Dependency, SchemaError, parse_json};

/// A parsed JSON Schema with its referenced documents.
#[derive(Debug, Clone)]
pub struct JsonSchema {
    /// The document.
    pub root: Value,
    /// Referenced documents by reference name (the `$ref` URI used).
    pub resources: Arc<HashMap<String, Value>>,
}

struct RefRetriever {
    docs: HashMap<String, Value>,
}

impl RefRetriever {
    fn find(&self, uri: &str) -> Option<&Value> {
        if let Some(v) = self.docs.get(uri) {
            return Some(v);
        }
        self.docs
            .iter()
            .find(|(name, _)| {
                uri.ends_with(&format!("/{name}")) || name.ends_with(&format!("/{uri}"))
            })
            .map(|(_, v)| v)
    }
}

impl jsonschema::Retrieve for RefRetriever {
    fn retrieve(
        &self,
        uri: &jsonschema::Uri<String>,
    ) -> Result<Value, Box<dyn std::error::Error + Send + Sync>> {
        let s = uri.as_str();
        let s = s.split('#').next().unwrap_or(s);
        self.find(s)
            .cloned()
            .ok_or_else(|| format!("reference '{s}' is not among the schema's references").into())
    }
}

impl JsonSchema {
    /// Parses and validates `text`; `deps` supply documents for external `$ref`s.
    pub fn parse(text: &str, deps: &[Dependency]) -> Result<Self, SchemaError> {
        let root = parse_json(text)?;
        if !root.is_object() && !root.is_boolean() {
            return Err(SchemaError::Invalid(
                "a JSON Schema must be an object or a boolean".into(),
            ));
        }
        let mut docs = HashMap::new();
        for d in deps {
            docs.insert(d.reference.name.clone(), parse_json(&d.schema)?);
        }
        let retriever = RefRetriever { docs: docs.clone() };
        let mut options = jsonschema::options().with_retriever(retriever);
        if root.get("$schema").is_none() {
            // Confluent's default when `$schema` is absent.
            options = options.with_draft(jsonschema::Draft::Draft7);
        }
        options
            .build(&root)
            .map_err(|e| SchemaError::Invalid(e.to_string()))?;
        Ok(JsonSchema {
            root,
            resources: Arc::new(docs),
        })
    }

    /// Compact JSON (Confluent stores the compact re-serialisation).
    pub fn canonical_string(&self) -> String {
        self.root.to_string()
    }

    /// Compact JSON with sorted keys.
    pub fn normalized_string(&self) -> String {
        // serde_json's map is ordered by key unless `preserve_order` is enabled; sort explicitly
        // so the result does not depend on that feature.
        fn sorted(v: &Value) -> Value {
            match v {
                Value::Object(o) => {
                    let mut keys: Vec<&String> = o.keys().collect();
                    keys.sort();
                    let mut m = serde_json::Map::new();
                    for k in keys {
                        if let Some(x) = o.get(k) {
                            m.insert(k.clone(), sorted(x));
                        }
                    }
                    Value::Object(m)
                }
                Value::Array(a) => Value::Array(a.iter().map(sorted).collect()),
                other => other.clone(),
            }
        }
        sorted(&self.root).to_string()
    }
}
