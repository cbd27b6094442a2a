//! JSON Schema compatibility: a structural diff of an `original` and an `update` schema that
//! classifies every difference with Confluent's difference-type names and judges it against
//! Confluent's STRICT policy (the compatible set is [`COMPATIBLE`]). The content-model rules
//! distinguish open (`additionalProperties` absent or `true`), closed (`false`) and partially
//! open (`additionalProperties` schema or `patternProperties`) objects, and likewise for tuple
//! arrays (`additionalItems` / `items` after `prefixItems`). `allOf` is a product type,
//! `anyOf`/`oneOf` sum types (subschemas matched by maximum bipartite matching), `not` is
//! contravariant. Local and referenced `$ref`s are followed with cycle detection, and the whole
//! comparison is bounded by a step budget. 2019-09/2020-12 `unevaluatedProperties` and
//! `unevaluatedItems` count like `additionalProperties`/`additionalItems` for the content
//! model (when those are absent or open) and have their own difference types; reserved names
//! (metadata `confluent:reserved`) are checked by [`check_reserved`].
//!
//! Deliberate choices: numeric bounds are compared semantically (`exclusiveMinimum: 10` →
//! `minimum: 10` is a widening, reported as `EXCLUSIVE_MINIMUM_REMOVED`); `format`,
//! `contentEncoding` and `contentMediaType` are annotations (Confluent has no difference type
//! for them); a schema without `type` whose keywords imply a type (`{"pattern": ..}`) counts as
//! that type.

use std::borrow::Cow;
use std::collections::{BTreeSet, HashSet};

use serde_json::{Map, Value};

use super::{Direction, Found};
use crate::schema::json::JsonSchema;

/// Difference types that are compatible under Confluent's STRICT policy.
pub const COMPATIBLE: &[&str] = &[
    "ID_CHANGED",
    "DESCRIPTION_CHANGED",
    "TITLE_CHANGED",
    "DEFAULT_CHANGED",
    "SCHEMA_REMOVED",
    "TYPE_EXTENDED",
    "MAX_LENGTH_INCREASED",
    "MAX_LENGTH_REMOVED",
    "MIN_LENGTH_DECREASED",
    "MIN_LENGTH_REMOVED",
    "PATTERN_REMOVED",
    "MAXIMUM_INCREASED",
    "MAXIMUM_REMOVED",
    "MINIMUM_DECREASED",
    "MINIMUM_REMOVED",
    "EXCLUSIVE_MAXIMUM_INCREASED",
    "EXCLUSIVE_MAXIMUM_REMOVED",
    "EXCLUSIVE_MINIMUM_DECREASED",
    "EXCLUSIVE_MINIMUM_REMOVED",
    "MULTIPLE_OF_REDUCED",
    "MULTIPLE_OF_REMOVED",
    "REQUIRED_ATTRIBUTE_WITH_DEFAULT_ADDED",
    "REQUIRED_ATTRIBUTE_REMOVED",
    "DEPENDENCY_ARRAY_NARROWED",
    "DEPENDENCY_ARRAY_REMOVED",
    "DEPENDENCY_SCHEMA_REMOVED",
    "MAX_PROPERTIES_INCREASED",
    "MAX_PROPERTIES_REMOVED",
    "MIN_PROPERTIES_DECREASED",
    "MIN_PROPERTIES_REMOVED",
    "ADDITIONAL_PROPERTIES_ADDED",
    "ADDITIONAL_PROPERTIES_EXTENDED",
    "UNEVALUATED_PROPERTIES_ADDED",
    "UNEVALUATED_PROPERTIES_EXTENDED",
    "PROPERTY_WITH_EMPTY_SCHEMA_ADDED_TO_OPEN_CONTENT_MODEL",
    "REQUIRED_PROPERTY_WITH_DEFAULT_ADDED_TO_UNOPEN_CONTENT_MODEL",
    "OPTIONAL_PROPERTY_ADDED_TO_UNOPEN_CONTENT_MODEL",
    "PROPERTY_WITH_FALSE_REMOVED_FROM_CLOSED_CONTENT_MODEL",
    "PROPERTY_REMOVED_FROM_OPEN_CONTENT_MODEL",
    "PROPERTY_ADDED_IS_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL",
    "PROPERTY_REMOVED_IS_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL",
    "MAX_ITEMS_INCREASED",
    "MAX_ITEMS_REMOVED",
    "MIN_ITEMS_DECREASED",
    "MIN_ITEMS_REMOVED",
    "MAX_CONTAINS_INCREASED",
    "MAX_CONTAINS_REMOVED",
    "MIN_CONTAINS_DECREASED",
    "MIN_CONTAINS_REMOVED",
    "UNIQUE_ITEMS_REMOVED",
    "ADDITIONAL_ITEMS_ADDED",
    "ADDITIONAL_ITEMS_EXTENDED",
    "UNEVALUATED_ITEMS_ADDED",
    "UNEVALUATED_ITEMS_EXTENDED",
    "ITEM_WITH_EMPTY_SCHEMA_ADDED_TO_OPEN_CONTENT_MODEL",
    "ITEM_ADDED_TO_CLOSED_CONTENT_MODEL",
    "ITEM_WITH_FALSE_REMOVED_FROM_CLOSED_CONTENT_MODEL",
    "ITEM_REMOVED_FROM_OPEN_CONTENT_MODEL",
    "ITEM_ADDED_IS_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL",
    "ITEM_REMOVED_IS_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL",
    "ENUM_ARRAY_EXTENDED",
    "COMBINED_TYPE_EXTENDED",
    "PRODUCT_TYPE_NARROWED",
    "SUM_TYPE_EXTENDED",
    "NOT_TYPE_NARROWED",
];

/// Whether a difference type is compatible under the STRICT policy.
pub fn is_compatible(ty: &str) -> bool {
    COMPATIBLE.contains(&ty)
}

/// Maximum number of pairwise comparisons in one check (the diff is exponential over nested
/// `anyOf`/`oneOf`; this bounds the cost of hostile schemas).
pub const MAX_STEPS: usize = 200_000;

/// Checks that `update` accepts everything `original` accepted.
pub(crate) fn check(original: &JsonSchema, update: &JsonSchema, dir: Direction) -> Vec<Found> {
    let mut d = Diff {
        o_doc: original,
        u_doc: update,
        in_progress: HashSet::new(),
        steps: 0,
    };
    let mut diffs = Vec::new();
    d.compare(&original.root, &update.root, "#", &mut diffs);
    let mut out: Vec<Found> = Vec::new();
    if d.steps > MAX_STEPS {
        out.push(Found {
            error_type: "COMBINED_TYPE_SUBSCHEMAS_CHANGED",
            path: "#/".into(),
            description: format!(
                "The comparison of the {} schema with the {} schema exceeded {MAX_STEPS} steps and was abandoned",
                dir.update_label(),
                dir.original_label()
            ),
            additional_info: String::new(),
        });
        return out;
    }
    for (ty, path) in diffs {
        if is_compatible(ty) || out.iter().any(|f| f.error_type == ty && f.path == path) {
            continue;
        }
        out.push(found(ty, path, dir));
    }
    out
}

/// Reserved property names (metadata property [`RESERVED_PROPERTY`], comma-separated; blanks
/// ignored).
pub fn reserved_names(metadata: Option<&crate::contract::Metadata>) -> BTreeSet<String> {
    metadata
        .and_then(|m| m.properties.as_ref())
        .and_then(|p| p.get(RESERVED_PROPERTY))
        .map(|v| {
            v.split(',')
                .map(str::trim)
                .filter(|n| !n.is_empty())
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

/// The metadata property that lists reserved (top-level) property names.
pub const RESERVED_PROPERTY: &str = "confluent:reserved";

/// Reserved-name checks between an older and a newer version: a name the older version
/// reserved must stay reserved (`RESERVED_PROPERTY_REMOVED`), and the newer schema must not
/// declare a top-level property it reserves (`RESERVED_PROPERTY_CONFLICTS_WITH_PROPERTY`).
/// Both are incompatible under STRICT. Paths are `#/properties/<name>`.
pub(crate) fn check_reserved(
    older_reserved: &BTreeSet<String>,
    newer_reserved: &BTreeSet<String>,
    newer: &JsonSchema,
) -> Vec<Found> {
    let dir = Direction::Backward;
    let mut out = Vec::new();
    for name in older_reserved.difference(newer_reserved) {
        out.push(found(
            "RESERVED_PROPERTY_REMOVED",
            join("#", &format!("properties/{name}")),
            dir,
        ));
    }
    if let Some(props) = newer.root.get("properties").and_then(Value::as_object) {
        for name in newer_reserved {
            if props.contains_key(name) {
                out.push(found(
                    "RESERVED_PROPERTY_CONFLICTS_WITH_PROPERTY",
                    join("#", &format!("properties/{name}")),
                    dir,
                ));
            }
        }
    }
    out
}

fn found(ty: &'static str, path: String, dir: Direction) -> Found {
    let (u, o) = (dir.update_label(), dir.original_label());
    let p = if path == "#" { "#/".to_string() } else { path };
    let description = match ty {
        "TYPE_CHANGED" => format!(
            "The type at path '{p}' in the {u} schema does not match the type in the {o} schema"
        ),
        "TYPE_NARROWED" => format!(
            "The type at path '{p}' in the {u} schema is narrower than the type in the {o} schema"
        ),
        "SCHEMA_ADDED" => format!(
            "A schema was added at path '{p}' in the {u} schema where the {o} schema accepted anything"
        ),
        "REQUIRED_ATTRIBUTE_ADDED" => format!(
            "A property at path '{p}' is required in the {u} schema but not in the {o} schema"
        ),
        "REQUIRED_PROPERTY_ADDED_TO_UNOPEN_CONTENT_MODEL" => format!(
            "A required property was added at path '{p}' in the {u} schema to a content model of the {o} schema that is not open"
        ),
        "REQUIRED_PROPERTY_ADDED_TO_OPEN_CONTENT_MODEL"
        | "OPTIONAL_PROPERTY_ADDED_TO_OPEN_CONTENT_MODEL" => format!(
            "A property was added at path '{p}' in the {u} schema to the open content model of the {o} schema"
        ),
        "PROPERTY_REMOVED_FROM_CLOSED_CONTENT_MODEL" => format!(
            "The property at path '{p}' of the {o} schema was removed from the closed content model of the {u} schema"
        ),
        "ADDITIONAL_PROPERTIES_REMOVED" => format!(
            "The {u} schema no longer allows additional properties at path '{p}' that the {o} schema allowed"
        ),
        "ADDITIONAL_PROPERTIES_NARROWED" => format!(
            "The {u} schema narrows the additional properties at path '{p}' allowed by the {o} schema"
        ),
        "UNEVALUATED_PROPERTIES_REMOVED" => format!(
            "The {u} schema no longer allows unevaluated properties at path '{p}' that the {o} schema allowed"
        ),
        "UNEVALUATED_PROPERTIES_NARROWED" => format!(
            "The {u} schema narrows the unevaluated properties at path '{p}' allowed by the {o} schema"
        ),
        "ADDITIONAL_ITEMS_REMOVED" => format!(
            "The {u} schema no longer allows additional items at path '{p}' that the {o} schema allowed"
        ),
        "ADDITIONAL_ITEMS_NARROWED" => format!(
            "The {u} schema narrows the additional items at path '{p}' allowed by the {o} schema"
        ),
        "UNEVALUATED_ITEMS_REMOVED" => format!(
            "The {u} schema no longer allows unevaluated items at path '{p}' that the {o} schema allowed"
        ),
        "UNEVALUATED_ITEMS_NARROWED" => format!(
            "The {u} schema narrows the unevaluated items at path '{p}' allowed by the {o} schema"
        ),
        "RESERVED_PROPERTY_REMOVED" => format!(
            "The property at path '{p}' is reserved in the {o} schema's metadata but not in the {u} schema's"
        ),
        "RESERVED_PROPERTY_CONFLICTS_WITH_PROPERTY" => format!(
            "The property at path '{p}' of the {u} schema is a reserved name in its metadata"
        ),
        "MAX_LENGTH_DECREASED"
        | "MAX_LENGTH_ADDED"
        | "MIN_LENGTH_INCREASED"
        | "MIN_LENGTH_ADDED"
        | "MAXIMUM_DECREASED"
        | "MAXIMUM_ADDED"
        | "MINIMUM_INCREASED"
        | "MINIMUM_ADDED"
        | "MAX_ITEMS_DECREASED"
        | "MAX_ITEMS_ADDED"
        | "MIN_ITEMS_INCREASED"
        | "MIN_ITEMS_ADDED"
        | "MAX_PROPERTIES_DECREASED"
        | "MAX_PROPERTIES_ADDED"
        | "MIN_PROPERTIES_INCREASED"
        | "MIN_PROPERTIES_ADDED" => {
            format!("A limit at path '{p}' in the {u} schema is stricter than in the {o} schema")
        }
        "ENUM_ARRAY_NARROWED" | "ENUM_ARRAY_CHANGED" => format!(
            "The enum at path '{p}' in the {u} schema does not contain all values of the enum in the {o} schema"
        ),
        _ => format!(
            "The {u} schema at path '{p}' differs from the {o} schema in a way that is not compatible ({ty})"
        ),
    };
    Found {
        error_type: ty,
        path: p,
        description,
        additional_info: String::new(),
    }
}

type Out = Vec<(&'static str, String)>;

const ANNOTATIONS: &[&str] = &[
    "$schema",
    "$id",
    "id",
    "title",
    "description",
    "default",
    "examples",
    "$comment",
    "definitions",
    "$defs",
    "readOnly",
    "writeOnly",
    "deprecated",
    "format",
    "contentEncoding",
    "contentMediaType",
    "$anchor",
    "$vocabulary",
    "$dynamicAnchor",
    "$recursiveAnchor",
];
const COMBINERS: &[&str] = &["allOf", "anyOf", "oneOf"];
const STRING_KW: &[&str] = &["maxLength", "minLength", "pattern"];
const NUMBER_KW: &[&str] = &[
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "exclusiveMaximum",
    "multipleOf",
];
const OBJECT_KW: &[&str] = &[
    "properties",
    "required",
    "additionalProperties",
    "patternProperties",
    "propertyNames",
    "dependencies",
    "dependentRequired",
    "dependentSchemas",
    "minProperties",
    "maxProperties",
    "unevaluatedProperties",
];
const ARRAY_KW: &[&str] = &[
    "items",
    "prefixItems",
    "additionalItems",
    "contains",
    "minItems",
    "maxItems",
    "uniqueItems",
    "minContains",
    "maxContains",
    "unevaluatedItems",
];

/// True when `v` holds a `$ref` anywhere (equal text can still mean different schemas when
/// references resolve differently in the two documents). Walks without allocating.
fn contains_ref(v: &Value) -> bool {
    match v {
        Value::Object(m) => m.contains_key("$ref") || m.values().any(contains_ref),
        Value::Array(a) => a.iter().any(contains_ref),
        _ => false,
    }
}

fn is_empty_schema(v: &Value) -> bool {
    match v {
        Value::Bool(b) => *b,
        Value::Object(o) => o.keys().all(|k| ANNOTATIONS.contains(&k.as_str())),
        _ => true,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Comb {
    All,
    Any,
    One,
}

enum Shape<'x> {
    Simple,
    Single(Cow<'x, Value>),
    Combined(Comb, Vec<Cow<'x, Value>>),
}

fn comb_of(k: &str) -> Comb {
    match k {
        "allOf" => Comb::All,
        "anyOf" => Comb::Any,
        _ => Comb::One,
    }
}

fn shape(v: &Value) -> Shape<'_> {
    let Some(o) = v.as_object() else {
        return Shape::Simple;
    };
    let combos: Vec<(&str, &Vec<Value>)> = COMBINERS
        .iter()
        .filter_map(|k| o.get(*k).and_then(Value::as_array).map(|a| (*k, a)))
        .collect();
    if combos.is_empty() {
        if let Some(Value::Array(types)) = o.get("type")
            && types.len() > 1
        {
            let subs = types
                .iter()
                .map(|t| {
                    let mut m = o.clone();
                    m.insert("type".into(), t.clone());
                    Cow::Owned(Value::Object(m))
                })
                .collect();
            return Shape::Combined(Comb::Any, subs);
        }
        // The common case (a plain schema): decided without copying anything.
        return Shape::Simple;
    }
    let rest_has_keywords = o
        .keys()
        .any(|k| !COMBINERS.contains(&k.as_str()) && !ANNOTATIONS.contains(&k.as_str()));
    if combos.len() == 1 && !rest_has_keywords {
        let (k, subs) = combos[0];
        if subs.len() == 1 {
            return Shape::Single(Cow::Borrowed(&subs[0]));
        }
        return Shape::Combined(comb_of(k), subs.iter().map(Cow::Borrowed).collect());
    }
    let rest: Map<String, Value> = o
        .iter()
        .filter(|(k, _)| !COMBINERS.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let mut subs: Vec<Cow<'_, Value>> = vec![Cow::Owned(Value::Object(rest))];
    for (k, a) in combos {
        let mut m = Map::new();
        m.insert(k.to_string(), Value::Array(a.clone()));
        subs.push(Cow::Owned(Value::Object(m)));
    }
    Shape::Combined(Comb::All, subs)
}

/// Declared (`true`) or keyword-implied (`false`) type set.
fn types(o: &Map<String, Value>) -> Option<(BTreeSet<String>, bool)> {
    match o.get("type") {
        Some(Value::String(s)) => Some((BTreeSet::from([s.clone()]), true)),
        Some(Value::Array(a)) => Some((
            a.iter()
                .filter_map(|x| x.as_str().map(str::to_string))
                .collect(),
            true,
        )),
        _ => {
            let mut set = BTreeSet::new();
            for (kws, t) in [
                (STRING_KW, "string"),
                (NUMBER_KW, "number"),
                (OBJECT_KW, "object"),
                (ARRAY_KW, "array"),
            ] {
                if kws.iter().any(|k| o.contains_key(*k)) {
                    set.insert(t.to_string());
                }
            }
            (!set.is_empty()).then_some((set, false))
        }
    }
}

/// Every type of `a` is accepted by `b` (integer is a number).
fn covered(a: &BTreeSet<String>, b: &BTreeSet<String>) -> bool {
    a.iter()
        .all(|t| b.contains(t) || (t == "integer" && b.contains("number")))
}

enum Extra<'x> {
    Open,
    Closed,
    Schema(&'x Value),
}

fn extra(v: Option<&Value>) -> Extra<'_> {
    match v {
        None | Some(Value::Bool(true)) => Extra::Open,
        Some(Value::Bool(false)) => Extra::Closed,
        Some(s) => {
            if is_empty_schema(s) {
                Extra::Open
            } else {
                Extra::Schema(s)
            }
        }
    }
}

/// The model for undeclared members: the first keyword unless it is open, else the second.
fn effective<'x>(first: &Extra<'x>, second: &Extra<'x>) -> Extra<'x> {
    match (first, second) {
        (Extra::Open, Extra::Closed) | (Extra::Closed, _) => Extra::Closed,
        (Extra::Open, Extra::Schema(s)) | (Extra::Schema(s), _) => Extra::Schema(s),
        (Extra::Open, Extra::Open) => Extra::Open,
    }
}

/// The difference types of one "beyond the declared members" keyword.
struct ExtraKind {
    keyword: &'static str,
    removed: &'static str,
    narrowed: &'static str,
    added: &'static str,
    extended: &'static str,
}

const EXTRA_PROPERTIES: &ExtraKind = &ExtraKind {
    keyword: "additionalProperties",
    removed: "ADDITIONAL_PROPERTIES_REMOVED",
    narrowed: "ADDITIONAL_PROPERTIES_NARROWED",
    added: "ADDITIONAL_PROPERTIES_ADDED",
    extended: "ADDITIONAL_PROPERTIES_EXTENDED",
};
const UNEVALUATED_PROPERTIES: &ExtraKind = &ExtraKind {
    keyword: "unevaluatedProperties",
    removed: "UNEVALUATED_PROPERTIES_REMOVED",
    narrowed: "UNEVALUATED_PROPERTIES_NARROWED",
    added: "UNEVALUATED_PROPERTIES_ADDED",
    extended: "UNEVALUATED_PROPERTIES_EXTENDED",
};
const EXTRA_ITEMS: &ExtraKind = &ExtraKind {
    keyword: "additionalItems",
    removed: "ADDITIONAL_ITEMS_REMOVED",
    narrowed: "ADDITIONAL_ITEMS_NARROWED",
    added: "ADDITIONAL_ITEMS_ADDED",
    extended: "ADDITIONAL_ITEMS_EXTENDED",
};
const UNEVALUATED_ITEMS: &ExtraKind = &ExtraKind {
    keyword: "unevaluatedItems",
    removed: "UNEVALUATED_ITEMS_REMOVED",
    narrowed: "UNEVALUATED_ITEMS_NARROWED",
    added: "UNEVALUATED_ITEMS_ADDED",
    extended: "UNEVALUATED_ITEMS_EXTENDED",
};

fn num(o: &Map<String, Value>, k: &str) -> Option<f64> {
    o.get(k).and_then(Value::as_f64)
}

fn enum_values(o: &Map<String, Value>) -> Option<Vec<Value>> {
    if let Some(Value::Array(a)) = o.get("enum") {
        return Some(a.clone());
    }
    o.get("const").map(|c| vec![c.clone()])
}

fn str_set(v: Option<&Value>) -> BTreeSet<String> {
    v.and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// A numeric bound: value and exclusivity (draft-4 boolean flags and draft-6+ numbers).
fn bound(o: &Map<String, Value>, plain: &str, exclusive: &str) -> Option<(f64, bool)> {
    let p = num(o, plain);
    match o.get(exclusive) {
        Some(Value::Bool(true)) => p.map(|v| (v, true)),
        Some(Value::Number(n)) => {
            let e = n.as_f64()?;
            match p {
                // Both present: the tighter one wins.
                Some(v) if (plain == "minimum" && v > e) || (plain == "maximum" && v < e) => {
                    Some((v, false))
                }
                _ => Some((e, true)),
            }
        }
        _ => p.map(|v| (v, false)),
    }
}

fn join(path: &str, seg: &str) -> String {
    format!("{path}/{seg}")
}

struct Diff<'d> {
    o_doc: &'d JsonSchema,
    u_doc: &'d JsonSchema,
    in_progress: HashSet<(usize, usize)>,
    steps: usize,
}

fn pointer<'v>(root: &'v Value, frag: &str) -> Option<&'v Value> {
    if frag.is_empty() {
        return Some(root);
    }
    if frag.starts_with('/') {
        let decoded = frag.replace("%25", "%").replace("%22", "\"");
        return root.pointer(&decoded);
    }
    find_anchor(root, frag)
}

fn find_anchor<'v>(v: &'v Value, name: &str) -> Option<&'v Value> {
    match v {
        Value::Object(o) => {
            let id_hit = o
                .get("$id")
                .and_then(Value::as_str)
                .is_some_and(|id| id == format!("#{name}"))
                || o.get("$anchor").and_then(Value::as_str) == Some(name);
            if id_hit {
                return Some(v);
            }
            o.values().find_map(|x| find_anchor(x, name))
        }
        Value::Array(a) => a.iter().find_map(|x| find_anchor(x, name)),
        _ => None,
    }
}

fn resolve_in<'d>(doc: &'d JsonSchema, r: &str) -> Option<&'d Value> {
    let (base, frag) = match r.split_once('#') {
        Some((b, f)) => (b, f),
        None => (r, ""),
    };
    if base.is_empty() || doc.root.get("$id").and_then(Value::as_str) == Some(base) {
        if let Some(v) = pointer(&doc.root, frag) {
            return Some(v);
        }
        return doc.resources.values().find_map(|d| pointer(d, frag));
    }
    let hit = doc.resources.get(base).or_else(|| {
        doc.resources
            .iter()
            .find(|(name, _)| {
                base.ends_with(&format!("/{name}")) || name.ends_with(&format!("/{base}"))
            })
            .map(|(_, v)| v)
    })?;
    pointer(hit, frag)
}

static TRUE: Value = Value::Bool(true);

impl<'d> Diff<'d> {
    fn deref<'x>(&self, v: &'x Value, doc: &'d JsonSchema) -> (&'x Value, bool)
    where
        'd: 'x,
    {
        let mut cur = v;
        let mut hops = 0;
        while let Some(r) = cur.get("$ref").and_then(Value::as_str) {
            hops += 1;
            if hops > 32 {
                return (&TRUE, true);
            }
            cur = resolve_in(doc, r).unwrap_or(&TRUE);
        }
        (cur, hops > 0)
    }

    fn probe(&mut self, o: &Value, u: &Value, path: &str) -> bool {
        let mut tmp = Vec::new();
        self.compare(o, u, path, &mut tmp);
        tmp.iter().all(|(t, _)| is_compatible(t))
    }

    fn compare(&mut self, o: &Value, u: &Value, path: &str, out: &mut Out) {
        self.steps += 1;
        if self.steps > MAX_STEPS {
            return;
        }
        let (o, oref) = self.deref(o, self.o_doc);
        let (u, uref) = self.deref(u, self.u_doc);
        let key = (o as *const Value as usize, u as *const Value as usize);
        if oref || uref {
            if !self.in_progress.insert(key) {
                return;
            }
            self.compare_resolved(o, u, path, out);
            self.in_progress.remove(&key);
        } else {
            self.compare_resolved(o, u, path, out);
        }
    }

    fn compare_resolved(&mut self, o: &Value, u: &Value, path: &str, out: &mut Out) {
        if o == u && !contains_ref(o) {
            return;
        }
        if o == &Value::Bool(false) {
            return;
        }
        if u == &Value::Bool(false) {
            out.push(("TYPE_CHANGED", path.to_string()));
            return;
        }
        let (oe, ue) = (is_empty_schema(o), is_empty_schema(u));
        if ue {
            if !oe {
                out.push(("SCHEMA_REMOVED", path.to_string()));
            }
            return;
        }
        if oe {
            out.push(("SCHEMA_ADDED", path.to_string()));
            return;
        }
        match (shape(o), shape(u)) {
            (Shape::Single(os), _) => self.compare(&os, u, path, out),
            (_, Shape::Single(us)) => self.compare(o, &us, path, out),
            (Shape::Combined(ok, os), Shape::Combined(uk, us)) => {
                self.combined(ok, &os, uk, &us, path, out)
            }
            (Shape::Simple, Shape::Combined(uk, us)) => {
                if uk == Comb::All {
                    for (i, s) in us.iter().enumerate() {
                        self.compare(o, s, &join(path, &format!("allOf/{i}")), out);
                    }
                } else if us.iter().any(|s| self.probe(o, s, path)) {
                    out.push(("SUM_TYPE_EXTENDED", path.to_string()));
                } else {
                    out.push(("TYPE_CHANGED", path.to_string()));
                }
            }
            (Shape::Combined(ok, os), Shape::Simple) => {
                if ok == Comb::All && os.iter().any(|s| self.probe(s, u, path)) {
                    out.push(("PRODUCT_TYPE_NARROWED", path.to_string()));
                } else if ok == Comb::All {
                    out.push(("TYPE_CHANGED", path.to_string()));
                } else {
                    out.push(("SUM_TYPE_NARROWED", path.to_string()));
                }
            }
            (Shape::Simple, Shape::Simple) => {
                if let (Some(oo), Some(uo)) = (o.as_object(), u.as_object()) {
                    self.simple(oo, uo, path, out);
                }
            }
        }
    }

    fn combined(
        &mut self,
        ok: Comb,
        os: &[Cow<'_, Value>],
        uk: Comb,
        us: &[Cow<'_, Value>],
        path: &str,
        out: &mut Out,
    ) {
        let p = path.to_string();
        if ok != uk {
            if uk == Comb::Any {
                out.push(("COMBINED_TYPE_EXTENDED", p.clone()));
            } else {
                out.push(("COMBINED_TYPE_CHANGED", p));
                return;
            }
        }
        if os.len() < us.len() {
            out.push((
                if uk == Comb::All {
                    "PRODUCT_TYPE_EXTENDED"
                } else {
                    "SUM_TYPE_EXTENDED"
                },
                p.clone(),
            ));
        } else if os.len() > us.len() {
            out.push((
                if uk == Comb::All {
                    "PRODUCT_TYPE_NARROWED"
                } else {
                    "SUM_TYPE_NARROWED"
                },
                p.clone(),
            ));
        }
        let mut ok_pairs = vec![vec![false; us.len()]; os.len()];
        for (i, a) in os.iter().enumerate() {
            for (j, b) in us.iter().enumerate() {
                ok_pairs[i][j] = self.probe(a, b, path);
            }
        }
        // Kuhn's maximum bipartite matching.
        fn try_match(
            i: usize,
            adj: &[Vec<bool>],
            seen: &mut [bool],
            owner: &mut [Option<usize>],
        ) -> bool {
            for j in 0..seen.len() {
                if adj[i][j] && !seen[j] {
                    seen[j] = true;
                    if owner[j].is_none_or(|k| try_match(k, adj, seen, owner)) {
                        owner[j] = Some(i);
                        return true;
                    }
                }
            }
            false
        }
        let mut owner = vec![None; us.len()];
        let mut matched = 0;
        for i in 0..os.len() {
            let mut seen = vec![false; us.len()];
            if try_match(i, &ok_pairs, &mut seen, &mut owner) {
                matched += 1;
            }
        }
        if matched < os.len().min(us.len()) {
            out.push(("COMBINED_TYPE_SUBSCHEMAS_CHANGED", p));
        }
    }

    fn simple(
        &mut self,
        o: &Map<String, Value>,
        u: &Map<String, Value>,
        path: &str,
        out: &mut Out,
    ) {
        let p = path.to_string();
        match (types(o), types(u)) {
            (Some((ot, oexp)), Some((ut, uexp))) if ot != ut => {
                if !oexp && uexp && (covered(&ot, &ut) || covered(&ut, &ot)) {
                    // An implied type made explicit: same model.
                } else if covered(&ot, &ut) {
                    out.push(("TYPE_EXTENDED", p.clone()));
                } else if covered(&ut, &ot) {
                    out.push(("TYPE_NARROWED", p.clone()));
                } else {
                    out.push(("TYPE_CHANGED", p));
                    return;
                }
            }
            (Some((_, true)), None) => out.push(("TYPE_EXTENDED", p.clone())),
            (None, Some((_, true))) => out.push(("TYPE_NARROWED", p.clone())),
            _ => {}
        }
        self.limits(o, u, path, out);
        self.numbers(o, u, path, out);
        // pattern
        match (o.get("pattern"), u.get("pattern")) {
            (None, Some(_)) => out.push(("PATTERN_ADDED", join(path, "pattern"))),
            (Some(_), None) => out.push(("PATTERN_REMOVED", join(path, "pattern"))),
            (Some(a), Some(b)) if a != b => out.push(("PATTERN_CHANGED", join(path, "pattern"))),
            _ => {}
        }
        // enum / const
        match (enum_values(o), enum_values(u)) {
            (Some(a), Some(b)) => {
                let sub = a.iter().all(|x| b.contains(x));
                let sup = b.iter().all(|x| a.contains(x));
                let e = join(path, "enum");
                match (sub, sup) {
                    (true, true) => {}
                    (true, false) => out.push(("ENUM_ARRAY_EXTENDED", e)),
                    (false, true) => out.push(("ENUM_ARRAY_NARROWED", e)),
                    (false, false) => out.push(("ENUM_ARRAY_CHANGED", e)),
                }
            }
            (Some(_), None) => out.push(("ENUM_ARRAY_EXTENDED", join(path, "enum"))),
            (None, Some(_)) => out.push(("ENUM_ARRAY_NARROWED", join(path, "enum"))),
            _ => {}
        }
        // not (contravariant)
        match (o.get("not"), u.get("not")) {
            (Some(a), Some(b)) => {
                let np = join(path, "not");
                if self.probe(b, a, &np) {
                    out.push(("NOT_TYPE_NARROWED", np));
                } else {
                    out.push(("NOT_TYPE_EXTENDED", np));
                }
            }
            (Some(_), None) => out.push(("NOT_TYPE_NARROWED", join(path, "not"))),
            (None, Some(_)) => out.push(("NOT_TYPE_EXTENDED", join(path, "not"))),
            _ => {}
        }
        // if / then / else
        match (o.get("if"), u.get("if")) {
            (Some(a), Some(b)) if a != b => {
                out.push(("COMBINED_TYPE_SUBSCHEMAS_CHANGED", join(path, "if")))
            }
            (Some(_), None) | (None, Some(_)) => {
                out.push(("COMBINED_TYPE_CHANGED", join(path, "if")))
            }
            _ => {}
        }
        for k in ["then", "else"] {
            let (a, b) = (o.get(k).unwrap_or(&TRUE), u.get(k).unwrap_or(&TRUE));
            if o.contains_key(k) || u.contains_key(k) {
                self.compare(a, b, &join(path, k), out);
            }
        }
        self.objects(o, u, path, out);
        self.arrays(o, u, path, out);
    }

    fn limits(
        &mut self,
        o: &Map<String, Value>,
        u: &Map<String, Value>,
        path: &str,
        out: &mut Out,
    ) {
        // (keyword, is upper bound, [ADDED, REMOVED, INCREASED, DECREASED])
        let table: [(&str, bool, [&'static str; 4]); 8] = [
            (
                "maxLength",
                true,
                [
                    "MAX_LENGTH_ADDED",
                    "MAX_LENGTH_REMOVED",
                    "MAX_LENGTH_INCREASED",
                    "MAX_LENGTH_DECREASED",
                ],
            ),
            (
                "minLength",
                false,
                [
                    "MIN_LENGTH_ADDED",
                    "MIN_LENGTH_REMOVED",
                    "MIN_LENGTH_INCREASED",
                    "MIN_LENGTH_DECREASED",
                ],
            ),
            (
                "maxProperties",
                true,
                [
                    "MAX_PROPERTIES_ADDED",
                    "MAX_PROPERTIES_REMOVED",
                    "MAX_PROPERTIES_INCREASED",
                    "MAX_PROPERTIES_DECREASED",
                ],
            ),
            (
                "minProperties",
                false,
                [
                    "MIN_PROPERTIES_ADDED",
                    "MIN_PROPERTIES_REMOVED",
                    "MIN_PROPERTIES_INCREASED",
                    "MIN_PROPERTIES_DECREASED",
                ],
            ),
            (
                "maxItems",
                true,
                [
                    "MAX_ITEMS_ADDED",
                    "MAX_ITEMS_REMOVED",
                    "MAX_ITEMS_INCREASED",
                    "MAX_ITEMS_DECREASED",
                ],
            ),
            (
                "minItems",
                false,
                [
                    "MIN_ITEMS_ADDED",
                    "MIN_ITEMS_REMOVED",
                    "MIN_ITEMS_INCREASED",
                    "MIN_ITEMS_DECREASED",
                ],
            ),
            (
                "maxContains",
                true,
                [
                    "MAX_CONTAINS_ADDED",
                    "MAX_CONTAINS_REMOVED",
                    "MAX_CONTAINS_INCREASED",
                    "MAX_CONTAINS_DECREASED",
                ],
            ),
            (
                "minContains",
                false,
                [
                    "MIN_CONTAINS_ADDED",
                    "MIN_CONTAINS_REMOVED",
                    "MIN_CONTAINS_INCREASED",
                    "MIN_CONTAINS_DECREASED",
                ],
            ),
        ];
        for (k, _upper, names) in table {
            let kp = join(path, k);
            match (num(o, k), num(u, k)) {
                (None, Some(_)) => out.push((names[0], kp)),
                (Some(_), None) => out.push((names[1], kp)),
                (Some(a), Some(b)) if b > a => out.push((names[2], kp)),
                (Some(a), Some(b)) if b < a => out.push((names[3], kp)),
                _ => {}
            }
        }
        match (
            o.get("uniqueItems") == Some(&Value::Bool(true)),
            u.get("uniqueItems") == Some(&Value::Bool(true)),
        ) {
            (false, true) => out.push(("UNIQUE_ITEMS_ADDED", join(path, "uniqueItems"))),
            (true, false) => out.push(("UNIQUE_ITEMS_REMOVED", join(path, "uniqueItems"))),
            _ => {}
        }
    }

    fn numbers(
        &mut self,
        o: &Map<String, Value>,
        u: &Map<String, Value>,
        path: &str,
        out: &mut Out,
    ) {
        for (plain, excl, lower) in [
            ("minimum", "exclusiveMinimum", true),
            ("maximum", "exclusiveMaximum", false),
        ] {
            let (ob, ub) = (bound(o, plain, excl), bound(u, plain, excl));
            let (plain_up, excl_up) = if lower {
                (
                    (
                        "MINIMUM_ADDED",
                        "MINIMUM_REMOVED",
                        "MINIMUM_INCREASED",
                        "MINIMUM_DECREASED",
                    ),
                    (
                        "EXCLUSIVE_MINIMUM_ADDED",
                        "EXCLUSIVE_MINIMUM_REMOVED",
                        "EXCLUSIVE_MINIMUM_INCREASED",
                        "EXCLUSIVE_MINIMUM_DECREASED",
                    ),
                )
            } else {
                (
                    (
                        "MAXIMUM_ADDED",
                        "MAXIMUM_REMOVED",
                        "MAXIMUM_INCREASED",
                        "MAXIMUM_DECREASED",
                    ),
                    (
                        "EXCLUSIVE_MAXIMUM_ADDED",
                        "EXCLUSIVE_MAXIMUM_REMOVED",
                        "EXCLUSIVE_MAXIMUM_INCREASED",
                        "EXCLUSIVE_MAXIMUM_DECREASED",
                    ),
                )
            };
            let names = |exclusive: bool| if exclusive { excl_up } else { plain_up };
            match (ob, ub) {
                (None, Some((_, ue))) => {
                    out.push((names(ue).0, join(path, if ue { excl } else { plain })))
                }
                (Some((_, oe)), None) => {
                    out.push((names(oe).1, join(path, if oe { excl } else { plain })))
                }
                (Some((ov, oe)), Some((uv, ue))) => {
                    if ov == uv && oe == ue {
                        continue;
                    }
                    // Does the update accept at least what the original accepted?
                    let looser = if lower {
                        uv < ov || (uv == ov && (!ue || oe))
                    } else {
                        uv > ov || (uv == ov && (!ue || oe))
                    };
                    let kp = join(path, if ue { excl } else { plain });
                    let ty = match (looser, oe, ue) {
                        (true, true, false) => names(true).1,
                        (true, _, _) => {
                            if lower {
                                names(ue).3
                            } else {
                                names(ue).2
                            }
                        }
                        (false, false, true) => names(true).0,
                        (false, _, _) => {
                            if lower {
                                names(ue).2
                            } else {
                                names(ue).3
                            }
                        }
                    };
                    out.push((ty, kp));
                }
                (None, None) => {}
            }
        }
        match (num(o, "multipleOf"), num(u, "multipleOf")) {
            (None, Some(_)) => out.push(("MULTIPLE_OF_ADDED", join(path, "multipleOf"))),
            (Some(_), None) => out.push(("MULTIPLE_OF_REMOVED", join(path, "multipleOf"))),
            (Some(a), Some(b)) if a != b => {
                let divides = |x: f64, y: f64| y != 0.0 && ((x / y) - (x / y).round()).abs() < 1e-9;
                let ty = if divides(a, b) {
                    "MULTIPLE_OF_REDUCED"
                } else if divides(b, a) {
                    "MULTIPLE_OF_EXPANDED"
                } else {
                    "MULTIPLE_OF_CHANGED"
                };
                out.push((ty, join(path, "multipleOf")));
            }
            _ => {}
        }
    }

    fn objects(
        &mut self,
        o: &Map<String, Value>,
        u: &Map<String, Value>,
        path: &str,
        out: &mut Out,
    ) {
        let empty = Map::new();
        let op = o
            .get("properties")
            .and_then(Value::as_object)
            .unwrap_or(&empty);
        let up = u
            .get("properties")
            .and_then(Value::as_object)
            .unwrap_or(&empty);
        let opat = o
            .get("patternProperties")
            .and_then(Value::as_object)
            .unwrap_or(&empty);
        let upat = u
            .get("patternProperties")
            .and_then(Value::as_object)
            .unwrap_or(&empty);
        let (oreq, ureq) = (str_set(o.get("required")), str_set(u.get("required")));
        let (o_ap, u_ap) = (
            extra(o.get("additionalProperties")),
            extra(u.get("additionalProperties")),
        );
        let (o_uep, u_uep) = (
            extra(o.get("unevaluatedProperties")),
            extra(u.get("unevaluatedProperties")),
        );
        // What applies to an undeclared property: `additionalProperties`, else (2019-09+)
        // `unevaluatedProperties`.
        let (ox, ux) = (effective(&o_ap, &o_uep), effective(&u_ap, &u_uep));
        let o_open = matches!(ox, Extra::Open) && opat.is_empty();
        let u_open = matches!(ux, Extra::Open) && upat.is_empty();
        // The schema a partially open model applies to an undeclared property.
        fn partial<'v>(pat: &'v Map<String, Value>, x: &Extra<'v>, key: &str) -> Option<&'v Value> {
            for (re, s) in pat {
                if regex::Regex::new(re).is_ok_and(|r| r.is_match(key)) {
                    return Some(s);
                }
            }
            match x {
                Extra::Schema(s) => Some(s),
                Extra::Open => Some(&TRUE),
                Extra::Closed => None,
            }
        }
        let keys: BTreeSet<&String> = op.keys().chain(up.keys()).collect();
        for k in keys {
            let (ov, uv) = (op.get(k), up.get(k));
            if let (Some(a), Some(b)) = (ov, uv)
                && a == b
                && !contains_ref(a)
            {
                continue; // unchanged: nothing to report, no path to build
            }
            let kp = join(path, &format!("properties/{k}"));
            match (ov, uv) {
                (Some(a), None) => {
                    if u_open {
                        out.push(("PROPERTY_REMOVED_FROM_OPEN_CONTENT_MODEL", kp));
                    } else if let Some(s) = partial(upat, &ux, k) {
                        let covered = self.probe(a, s, &kp);
                        out.push((
                            if covered {
                                "PROPERTY_REMOVED_IS_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL"
                            } else {
                                "PROPERTY_REMOVED_NOT_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL"
                            },
                            kp,
                        ));
                    } else if a == &Value::Bool(false) {
                        out.push(("PROPERTY_WITH_FALSE_REMOVED_FROM_CLOSED_CONTENT_MODEL", kp));
                    } else {
                        out.push(("PROPERTY_REMOVED_FROM_CLOSED_CONTENT_MODEL", kp));
                    }
                }
                (None, Some(b)) => {
                    let required = ureq.contains(k.as_str());
                    let has_default = b.get("default").is_some();
                    if o_open {
                        let ty = if is_empty_schema(b) {
                            "PROPERTY_WITH_EMPTY_SCHEMA_ADDED_TO_OPEN_CONTENT_MODEL"
                        } else if required && has_default {
                            "REQUIRED_PROPERTY_WITH_DEFAULT_ADDED_TO_OPEN_CONTENT_MODEL"
                        } else if required {
                            "REQUIRED_PROPERTY_ADDED_TO_OPEN_CONTENT_MODEL"
                        } else {
                            "OPTIONAL_PROPERTY_ADDED_TO_OPEN_CONTENT_MODEL"
                        };
                        out.push((ty, kp));
                    } else {
                        let part = partial(opat, &ox, k);
                        if let Some(s) = part {
                            let covered = self.probe(s, b, &kp);
                            out.push((
                                if covered {
                                    "PROPERTY_ADDED_IS_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL"
                                } else {
                                    "PROPERTY_ADDED_NOT_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL"
                                },
                                kp.clone(),
                            ));
                        }
                        if required && !oreq.contains(k.as_str()) {
                            out.push((
                                if has_default {
                                    "REQUIRED_PROPERTY_WITH_DEFAULT_ADDED_TO_UNOPEN_CONTENT_MODEL"
                                } else {
                                    "REQUIRED_PROPERTY_ADDED_TO_UNOPEN_CONTENT_MODEL"
                                },
                                kp,
                            ));
                        } else if part.is_none() {
                            out.push(("OPTIONAL_PROPERTY_ADDED_TO_UNOPEN_CONTENT_MODEL", kp));
                        }
                    }
                }
                (Some(a), Some(b)) => self.compare(a, b, &kp, out),
                (None, None) => {}
            }
        }
        for k in ureq.difference(&oreq) {
            if up.contains_key(k.as_str()) && !op.contains_key(k.as_str()) {
                continue; // reported as a property added to the content model
            }
            let has_default = up
                .get(k.as_str())
                .is_some_and(|p| p.get("default").is_some());
            out.push((
                if has_default {
                    "REQUIRED_ATTRIBUTE_WITH_DEFAULT_ADDED"
                } else {
                    "REQUIRED_ATTRIBUTE_ADDED"
                },
                join(path, &format!("required/{k}")),
            ));
        }
        for k in oreq.difference(&ureq) {
            out.push((
                "REQUIRED_ATTRIBUTE_REMOVED",
                join(path, &format!("required/{k}")),
            ));
        }
        self.extras(&o_ap, &u_ap, path, EXTRA_PROPERTIES, out);
        self.extras(&o_uep, &u_uep, path, UNEVALUATED_PROPERTIES, out);
        // patternProperties
        let pats: BTreeSet<&String> = opat.keys().chain(upat.keys()).collect();
        for k in pats {
            let kp = join(path, &format!("patternProperties/{k}"));
            match (opat.get(k), upat.get(k)) {
                (Some(a), Some(b)) => self.compare(a, b, &kp, out),
                (Some(a), None) => match &ux {
                    Extra::Open => out.push(("PROPERTY_REMOVED_FROM_OPEN_CONTENT_MODEL", kp)),
                    Extra::Closed => out.push(("PROPERTY_REMOVED_FROM_CLOSED_CONTENT_MODEL", kp)),
                    Extra::Schema(s) => {
                        let s = *s;
                        let covered = self.probe(a, s, &kp);
                        out.push((
                            if covered {
                                "PROPERTY_REMOVED_IS_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL"
                            } else {
                                "PROPERTY_REMOVED_NOT_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL"
                            },
                            kp,
                        ));
                    }
                },
                (None, Some(b)) => match &ox {
                    Extra::Open => out.push(("OPTIONAL_PROPERTY_ADDED_TO_OPEN_CONTENT_MODEL", kp)),
                    Extra::Closed => {
                        out.push(("OPTIONAL_PROPERTY_ADDED_TO_UNOPEN_CONTENT_MODEL", kp))
                    }
                    Extra::Schema(s) => {
                        let s = *s;
                        let covered = self.probe(s, b, &kp);
                        out.push((
                            if covered {
                                "PROPERTY_ADDED_IS_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL"
                            } else {
                                "PROPERTY_ADDED_NOT_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL"
                            },
                            kp,
                        ));
                    }
                },
                (None, None) => {}
            }
        }
        if let (Some(a), Some(b)) = (o.get("propertyNames"), u.get("propertyNames")) {
            self.compare(a, b, &join(path, "propertyNames"), out);
        }
        // dependencies (draft <= 7), dependentRequired / dependentSchemas (2019-09+)
        let mut deps_o: Vec<(&String, &Value)> = Vec::new();
        let mut deps_u: Vec<(&String, &Value)> = Vec::new();
        for k in ["dependencies", "dependentRequired", "dependentSchemas"] {
            if let Some(m) = o.get(k).and_then(Value::as_object) {
                deps_o.extend(m.iter());
            }
            if let Some(m) = u.get(k).and_then(Value::as_object) {
                deps_u.extend(m.iter());
            }
        }
        let dkeys: BTreeSet<&String> = deps_o
            .iter()
            .chain(deps_u.iter())
            .map(|(k, _)| *k)
            .collect();
        for k in dkeys {
            let a = deps_o.iter().find(|(x, _)| *x == k).map(|(_, v)| *v);
            let b = deps_u.iter().find(|(x, _)| *x == k).map(|(_, v)| *v);
            let kp = join(path, &format!("dependencies/{k}"));
            match (a, b) {
                (Some(Value::Array(x)), Some(Value::Array(y))) => {
                    let sub = y.iter().all(|v| x.contains(v));
                    let sup = x.iter().all(|v| y.contains(v));
                    match (sub, sup) {
                        (true, true) => {}
                        (true, false) => out.push(("DEPENDENCY_ARRAY_NARROWED", kp)),
                        (false, true) => out.push(("DEPENDENCY_ARRAY_EXTENDED", kp)),
                        (false, false) => out.push(("DEPENDENCY_ARRAY_CHANGED", kp)),
                    }
                }
                (Some(Value::Array(_)), None) => out.push(("DEPENDENCY_ARRAY_REMOVED", kp)),
                (None, Some(Value::Array(_))) => out.push(("DEPENDENCY_ARRAY_ADDED", kp)),
                (Some(x), Some(y)) if !x.is_array() && !y.is_array() => {
                    self.compare(x, y, &kp, out)
                }
                (Some(_), None) => out.push(("DEPENDENCY_SCHEMA_REMOVED", kp)),
                (None, Some(_)) => out.push(("DEPENDENCY_SCHEMA_ADDED", kp)),
                (Some(_), Some(_)) => out.push(("DEPENDENCY_ARRAY_CHANGED", kp)),
                (None, None) => {}
            }
        }
    }

    /// Compares what two content models allow beyond their declared properties or items
    /// (`additionalProperties`, `unevaluatedProperties`, `additionalItems`, `unevaluatedItems`).
    fn extras(&mut self, o: &Extra<'_>, u: &Extra<'_>, path: &str, k: &ExtraKind, out: &mut Out) {
        let p = join(path, k.keyword);
        match (o, u) {
            (Extra::Open | Extra::Schema(_), Extra::Closed) => out.push((k.removed, p)),
            (Extra::Open, Extra::Schema(_)) => out.push((k.narrowed, p)),
            (Extra::Closed, Extra::Open | Extra::Schema(_)) => out.push((k.added, p)),
            (Extra::Schema(_), Extra::Open) => out.push((k.extended, p)),
            (Extra::Schema(a), Extra::Schema(b)) => {
                let (a, b) = (*a, *b);
                self.compare(a, b, &p, out)
            }
            _ => {}
        }
    }

    fn arrays(
        &mut self,
        o: &Map<String, Value>,
        u: &Map<String, Value>,
        path: &str,
        out: &mut Out,
    ) {
        // (tuple items, what applies after them); None = no tuple form.
        fn tuple(m: &Map<String, Value>) -> Option<(Vec<&Value>, Option<&Value>)> {
            if let Some(Value::Array(p)) = m.get("prefixItems") {
                return Some((p.iter().collect(), m.get("items")));
            }
            if let Some(Value::Array(p)) = m.get("items") {
                return Some((p.iter().collect(), m.get("additionalItems")));
            }
            None
        }
        let (ot, ut) = (tuple(o), tuple(u));
        let (o_uei, u_uei) = (
            extra(o.get("unevaluatedItems")),
            extra(u.get("unevaluatedItems")),
        );
        self.extras(&o_uei, &u_uei, path, UNEVALUATED_ITEMS, out);
        if ot.is_none() && ut.is_none() {
            if o.contains_key("items") || u.contains_key("items") {
                let a = o.get("items").unwrap_or(&TRUE);
                let b = u.get("items").unwrap_or(&TRUE);
                self.compare(a, b, &join(path, "items"), out);
            }
        } else {
            // A non-tuple array: no positional items, `items` (if any) covers everything.
            fn single(m: &Map<String, Value>) -> (Vec<&Value>, Option<&Value>) {
                (Vec::new(), m.get("items"))
            }
            let (oi, orest) = ot.unwrap_or_else(|| single(o));
            let (ui, urest) = ut.unwrap_or_else(|| single(u));
            let (o_ai, u_ai) = (extra(orest), extra(urest));
            self.extras(&o_ai, &u_ai, path, EXTRA_ITEMS, out);
            // What applies after the positional items: `additionalItems`/`items`, else
            // (2019-09+) `unevaluatedItems`.
            let (ox, ux) = (effective(&o_ai, &o_uei), effective(&u_ai, &u_uei));
            for i in 0..oi.len().max(ui.len()) {
                let ip = join(path, &format!("items/{i}"));
                match (oi.get(i), ui.get(i)) {
                    (Some(a), Some(b)) => self.compare(a, b, &ip, out),
                    (Some(a), None) => match &ux {
                        Extra::Open => out.push(("ITEM_REMOVED_FROM_OPEN_CONTENT_MODEL", ip)),
                        Extra::Schema(s) => {
                            let s = *s;
                            let covered = self.probe(a, s, &ip);
                            out.push((
                                if covered {
                                    "ITEM_REMOVED_IS_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL"
                                } else {
                                    "ITEM_REMOVED_NOT_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL"
                                },
                                ip,
                            ));
                        }
                        Extra::Closed => out.push((
                            if **a == Value::Bool(false) {
                                "ITEM_WITH_FALSE_REMOVED_FROM_CLOSED_CONTENT_MODEL"
                            } else {
                                "ITEM_REMOVED_FROM_CLOSED_CONTENT_MODEL"
                            },
                            ip,
                        )),
                    },
                    (None, Some(b)) => match &ox {
                        Extra::Open => out.push((
                            if is_empty_schema(b) {
                                "ITEM_WITH_EMPTY_SCHEMA_ADDED_TO_OPEN_CONTENT_MODEL"
                            } else {
                                "ITEM_ADDED_TO_OPEN_CONTENT_MODEL"
                            },
                            ip,
                        )),
                        Extra::Schema(s) => {
                            let s = *s;
                            let covered = self.probe(s, b, &ip);
                            out.push((
                                if covered {
                                    "ITEM_ADDED_IS_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL"
                                } else {
                                    "ITEM_ADDED_NOT_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL"
                                },
                                ip,
                            ));
                        }
                        Extra::Closed => out.push(("ITEM_ADDED_TO_CLOSED_CONTENT_MODEL", ip)),
                    },
                    (None, None) => {}
                }
            }
        }
        if let (Some(a), Some(b)) = (o.get("contains"), u.get("contains")) {
            self.compare(a, b, &join(path, "contains"), out);
        }
    }
}
