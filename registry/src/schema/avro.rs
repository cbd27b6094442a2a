//! Avro schemas: validation (via `apache-avro`, with named-type references), an own model of
//! the type tree used by the compatibility checker, and two printers:
//!
//! * the canonical string (Java `Schema.toString()` layout: `type`, `name`, `namespace`, `doc`,
//!   `fields`/`symbols`/`size`, other properties, `aliases`; names relative to the enclosing
//!   namespace; types defined in references printed by name), and
//! * the normalised form for `normalize=true`: the same layout with every name fully
//!   qualified and no `namespace` keys, so equivalent spellings (expanded/minified, relative or
//!   absolute names) print identically. Field order is kept: it is part of Avro's encoding.

use std::collections::{BTreeMap, HashMap, HashSet};

use serde_json::{Map, Value};

use super::{Dependency, SchemaError, parse_json};

/// Avro primitive types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Prim {
    /// `null`
    Null,
    /// `boolean`
    Boolean,
    /// `int`
    Int,
    /// `long`
    Long,
    /// `float`
    Float,
    /// `double`
    Double,
    /// `bytes`
    Bytes,
    /// `string`
    String,
}

impl Prim {
    fn from_name(s: &str) -> Option<Prim> {
        Some(match s {
            "null" => Prim::Null,
            "boolean" => Prim::Boolean,
            "int" => Prim::Int,
            "long" => Prim::Long,
            "float" => Prim::Float,
            "double" => Prim::Double,
            "bytes" => Prim::Bytes,
            "string" => Prim::String,
            _ => return None,
        })
    }

    /// The Avro name.
    pub fn name(self) -> &'static str {
        match self {
            Prim::Null => "null",
            Prim::Boolean => "boolean",
            Prim::Int => "int",
            Prim::Long => "long",
            Prim::Float => "float",
            Prim::Double => "double",
            Prim::Bytes => "bytes",
            Prim::String => "string",
        }
    }
}

/// A node of the Avro type tree.
#[derive(Debug, Clone)]
pub enum AvroType {
    /// A primitive, with extra properties such as `logicalType`.
    Primitive {
        /// The primitive.
        prim: Prim,
        /// Other properties (sorted).
        props: BTreeMap<String, Value>,
    },
    /// `{"type":"array","items":...}`
    Array {
        /// Item type.
        items: Box<AvroType>,
        /// Other properties.
        props: BTreeMap<String, Value>,
    },
    /// `{"type":"map","values":...}`
    Map {
        /// Value type.
        values: Box<AvroType>,
        /// Other properties.
        props: BTreeMap<String, Value>,
    },
    /// A union of branches.
    Union(Vec<AvroType>),
    /// A named type (record, enum, fixed), by index into [`AvroSchema::names`].
    Named(usize),
}

/// A record field.
#[derive(Debug, Clone)]
pub struct Field {
    /// Field name.
    pub name: String,
    /// Field type.
    pub ty: AvroType,
    /// Default value, if any.
    pub default: Option<Value>,
    /// Documentation.
    pub doc: Option<String>,
    /// Sort order (`ascending` is not printed).
    pub order: Option<String>,
    /// Field aliases.
    pub aliases: Vec<String>,
    /// Other properties.
    pub props: BTreeMap<String, Value>,
}

/// What a named type is.
#[derive(Debug, Clone)]
pub enum NamedKind {
    /// A record (or error) with fields.
    Record {
        /// Fields in declaration order.
        fields: Vec<Field>,
        /// Declared as `error`.
        is_error: bool,
    },
    /// An enum.
    Enum {
        /// Symbols in order.
        symbols: Vec<String>,
        /// Reader default symbol.
        default: Option<String>,
    },
    /// A fixed.
    Fixed {
        /// Size in bytes.
        size: u64,
    },
}

/// A named type definition.
#[derive(Debug, Clone)]
pub struct NamedType {
    /// Fully qualified name.
    pub full_name: String,
    /// Namespace (empty for none).
    pub namespace: String,
    /// Aliases, fully qualified.
    pub aliases: Vec<String>,
    /// Documentation.
    pub doc: Option<String>,
    /// Record, enum or fixed.
    pub kind: NamedKind,
    /// Other properties.
    pub props: BTreeMap<String, Value>,
    /// Defined in a referenced schema rather than in this one.
    pub from_reference: bool,
}

impl NamedType {
    fn short_name(&self) -> &str {
        self.full_name.rsplit('.').next().unwrap_or(&self.full_name)
    }
}

/// A parsed Avro schema.
#[derive(Debug, Clone)]
pub struct AvroSchema {
    /// The root type.
    pub root: AvroType,
    /// Named types (including those of references).
    pub names: Vec<NamedType>,
    index: HashMap<String, usize>,
}

fn split_name(name: &str, ns: &str) -> (String, String) {
    match name.rfind('.') {
        Some(i) => (name.to_string(), name[..i].to_string()),
        None if ns.is_empty() => (name.to_string(), String::new()),
        None => (format!("{ns}.{name}"), ns.to_string()),
    }
}

fn qualify(name: &str, ns: &str) -> String {
    split_name(name, ns).0
}

fn other_props(o: &Map<String, Value>, known: &[&str]) -> BTreeMap<String, Value> {
    o.iter()
        .filter(|(k, _)| !known.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

fn str_list(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

fn invalid(msg: impl Into<String>) -> SchemaError {
    SchemaError::Invalid(msg.into())
}

struct Parser {
    names: Vec<NamedType>,
    index: HashMap<String, usize>,
    from_reference: bool,
}

impl Parser {
    fn lookup(&self, name: &str, ns: &str) -> Option<usize> {
        let full = qualify(name, ns);
        self.index
            .get(&full)
            .or_else(|| self.index.get(name))
            .copied()
    }

    fn define(&mut self, t: NamedType) -> Result<usize, SchemaError> {
        if self.index.contains_key(&t.full_name) {
            return Err(invalid(format!("can't redefine: {}", t.full_name)));
        }
        let i = self.names.len();
        self.index.insert(t.full_name.clone(), i);
        self.names.push(t);
        Ok(i)
    }

    fn parse(&mut self, v: &Value, ns: &str) -> Result<AvroType, SchemaError> {
        match v {
            Value::String(s) => {
                if let Some(p) = Prim::from_name(s) {
                    return Ok(AvroType::Primitive {
                        prim: p,
                        props: BTreeMap::new(),
                    });
                }
                self.lookup(s, ns)
                    .map(AvroType::Named)
                    .ok_or_else(|| invalid(format!("undefined name: {s}")))
            }
            Value::Array(branches) => {
                let mut out = Vec::with_capacity(branches.len());
                for b in branches {
                    out.push(self.parse(b, ns)?);
                }
                Ok(AvroType::Union(out))
            }
            Value::Object(o) => {
                let t = o
                    .get("type")
                    .ok_or_else(|| invalid("no \"type\" property"))?;
                let ts = match t {
                    Value::String(s) => s.as_str(),
                    other => return self.parse(other, ns),
                };
                match ts {
                    "record" | "error" => self.parse_record(o, ns, ts == "error"),
                    "enum" => self.parse_enum(o, ns),
                    "fixed" => self.parse_fixed(o, ns),
                    "array" => {
                        let items = o
                            .get("items")
                            .ok_or_else(|| invalid("array has no items"))?;
                        Ok(AvroType::Array {
                            items: Box::new(self.parse(items, ns)?),
                            props: other_props(o, &["type", "items"]),
                        })
                    }
                    "map" => {
                        let values = o
                            .get("values")
                            .ok_or_else(|| invalid("map has no values"))?;
                        Ok(AvroType::Map {
                            values: Box::new(self.parse(values, ns)?),
                            props: other_props(o, &["type", "values"]),
                        })
                    }
                    other => {
                        if let Some(p) = Prim::from_name(other) {
                            Ok(AvroType::Primitive {
                                prim: p,
                                props: other_props(o, &["type"]),
                            })
                        } else {
                            self.lookup(other, ns)
                                .map(AvroType::Named)
                                .ok_or_else(|| invalid(format!("undefined name: {other}")))
                        }
                    }
                }
            }
            other => Err(invalid(format!("not a schema: {other}"))),
        }
    }

    fn header(
        &self,
        o: &Map<String, Value>,
        ns: &str,
    ) -> Result<(String, String, Vec<String>), SchemaError> {
        let name = o
            .get("name")
            .and_then(Value::as_str)
            .ok_or_else(|| invalid("named type has no \"name\""))?;
        let own_ns = match o.get("namespace").and_then(Value::as_str) {
            Some(n) => n,
            None => ns,
        };
        let (full, nsp) = split_name(name, own_ns);
        let aliases = str_list(o.get("aliases"))
            .iter()
            .map(|a| qualify(a, &nsp))
            .collect();
        Ok((full, nsp, aliases))
    }

    fn parse_record(
        &mut self,
        o: &Map<String, Value>,
        ns: &str,
        is_error: bool,
    ) -> Result<AvroType, SchemaError> {
        let (full_name, namespace, aliases) = self.header(o, ns)?;
        let idx = self.define(NamedType {
            full_name,
            namespace: namespace.clone(),
            aliases,
            doc: o.get("doc").and_then(Value::as_str).map(str::to_string),
            kind: NamedKind::Record {
                fields: Vec::new(),
                is_error,
            },
            props: other_props(
                o,
                &["type", "name", "namespace", "doc", "aliases", "fields"],
            ),
            from_reference: self.from_reference,
        })?;
        let raw = o
            .get("fields")
            .and_then(Value::as_array)
            .ok_or_else(|| invalid("record has no \"fields\" array"))?;
        let mut fields = Vec::with_capacity(raw.len());
        for f in raw {
            let fo = f
                .as_object()
                .ok_or_else(|| invalid("field is not an object"))?;
            let name = fo
                .get("name")
                .and_then(Value::as_str)
                .ok_or_else(|| invalid("field has no name"))?;
            let ty = fo
                .get("type")
                .ok_or_else(|| invalid(format!("field '{name}' has no type")))?;
            let ty = self.parse(ty, &namespace)?;
            fields.push(Field {
                name: name.to_string(),
                ty,
                default: fo.get("default").cloned(),
                doc: fo.get("doc").and_then(Value::as_str).map(str::to_string),
                order: fo
                    .get("order")
                    .and_then(Value::as_str)
                    .filter(|o| *o != "ascending")
                    .map(str::to_string),
                aliases: str_list(fo.get("aliases")),
                props: other_props(fo, &["name", "type", "default", "doc", "order", "aliases"]),
            });
        }
        if let Some(NamedKind::Record { fields: slot, .. }) =
            self.names.get_mut(idx).map(|n| &mut n.kind)
        {
            *slot = fields;
        }
        Ok(AvroType::Named(idx))
    }

    fn parse_enum(&mut self, o: &Map<String, Value>, ns: &str) -> Result<AvroType, SchemaError> {
        let (full_name, namespace, aliases) = self.header(o, ns)?;
        let idx = self.define(NamedType {
            full_name,
            namespace,
            aliases,
            doc: o.get("doc").and_then(Value::as_str).map(str::to_string),
            kind: NamedKind::Enum {
                symbols: str_list(o.get("symbols")),
                default: o.get("default").and_then(Value::as_str).map(str::to_string),
            },
            props: other_props(
                o,
                &[
                    "type",
                    "name",
                    "namespace",
                    "doc",
                    "aliases",
                    "symbols",
                    "default",
                ],
            ),
            from_reference: self.from_reference,
        })?;
        Ok(AvroType::Named(idx))
    }

    fn parse_fixed(&mut self, o: &Map<String, Value>, ns: &str) -> Result<AvroType, SchemaError> {
        let (full_name, namespace, aliases) = self.header(o, ns)?;
        let size = o
            .get("size")
            .and_then(Value::as_u64)
            .ok_or_else(|| invalid("fixed has no valid \"size\""))?;
        let idx = self.define(NamedType {
            full_name,
            namespace,
            aliases,
            doc: o.get("doc").and_then(Value::as_str).map(str::to_string),
            kind: NamedKind::Fixed { size },
            props: other_props(o, &["type", "name", "namespace", "doc", "aliases", "size"]),
            from_reference: self.from_reference,
        })?;
        Ok(AvroType::Named(idx))
    }
}

impl AvroSchema {
    /// Validates `text` (with `deps` as named-type references) and builds the model.
    pub fn parse(text: &str, deps: &[Dependency]) -> Result<Self, SchemaError> {
        let root_json = parse_json(text)?;
        let mut dep_json = Vec::with_capacity(deps.len());
        for d in deps {
            dep_json.push(parse_json(&d.schema)?);
        }
        // Validation by apache-avro: names, defaults, symbols, sizes, union rules.
        let dep_texts: Vec<&str> = deps.iter().map(|d| d.schema.as_str()).collect();
        let check = if dep_texts.is_empty() {
            apache_avro::Schema::parse(&root_json).map(|_| ())
        } else {
            apache_avro::Schema::parse_str_with_list(text, dep_texts).map(|_| ())
        };
        check.map_err(|e| invalid(e.to_string()))?;

        let mut p = Parser {
            names: Vec::new(),
            index: HashMap::new(),
            from_reference: true,
        };
        for d in &dep_json {
            p.parse(d, "")?;
        }
        p.from_reference = false;
        let root = p.parse(&root_json, "")?;
        Ok(AvroSchema {
            root,
            names: p.names,
            index: p.index,
        })
    }

    /// Looks up a named type by full name.
    pub fn named(&self, full_name: &str) -> Option<&NamedType> {
        self.index.get(full_name).and_then(|i| self.names.get(*i))
    }

    /// Confluent's canonical string (Java `Schema.toString()` layout, compact).
    pub fn canonical_string(&self) -> String {
        self.print(false)
    }

    /// The normalised form used for `normalize=true`.
    pub fn normalized_string(&self) -> String {
        self.print(true)
    }

    /// Confluent's `formattedString("resolved")`: the canonical layout with every named type
    /// from a reference defined inline at its first use, so a reader without reference
    /// support can parse it on its own.
    pub fn resolved_string(&self) -> String {
        let mut known = HashSet::new();
        let mut out = String::new();
        self.write(&mut out, &self.root, "", &mut known, false);
        out
    }

    fn print(&self, full: bool) -> String {
        let mut known: HashSet<usize> = self
            .names
            .iter()
            .enumerate()
            .filter(|(_, n)| n.from_reference)
            .map(|(i, _)| i)
            .collect();
        let mut out = String::new();
        self.write(&mut out, &self.root, "", &mut known, full);
        out
    }

    fn write(
        &self,
        out: &mut String,
        t: &AvroType,
        ns: &str,
        known: &mut HashSet<usize>,
        full: bool,
    ) {
        match t {
            AvroType::Primitive { prim, props } => {
                if props.is_empty() {
                    push_str(out, prim.name());
                } else {
                    out.push_str("{\"type\":");
                    push_str(out, prim.name());
                    write_props(out, props);
                    out.push('}');
                }
            }
            AvroType::Array { items, props } => {
                out.push_str("{\"type\":\"array\",\"items\":");
                self.write(out, items, ns, known, full);
                write_props(out, props);
                out.push('}');
            }
            AvroType::Map { values, props } => {
                out.push_str("{\"type\":\"map\",\"values\":");
                self.write(out, values, ns, known, full);
                write_props(out, props);
                out.push('}');
            }
            AvroType::Union(bs) => {
                out.push('[');
                for (i, b) in bs.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    self.write(out, b, ns, known, full);
                }
                out.push(']');
            }
            AvroType::Named(i) => {
                let Some(n) = self.names.get(*i) else {
                    push_str(out, "null");
                    return;
                };
                if known.contains(i) {
                    if full || n.namespace != ns {
                        push_str(out, &n.full_name);
                    } else {
                        push_str(out, n.short_name());
                    }
                    return;
                }
                known.insert(*i);
                let kind = match &n.kind {
                    NamedKind::Record { is_error: true, .. } => "error",
                    NamedKind::Record { .. } => "record",
                    NamedKind::Enum { .. } => "enum",
                    NamedKind::Fixed { .. } => "fixed",
                };
                out.push_str("{\"type\":");
                push_str(out, kind);
                out.push_str(",\"name\":");
                if full {
                    push_str(out, &n.full_name);
                } else {
                    push_str(out, n.short_name());
                    if n.namespace != ns {
                        out.push_str(",\"namespace\":");
                        push_str(out, &n.namespace);
                    }
                }
                if let Some(d) = &n.doc {
                    out.push_str(",\"doc\":");
                    push_str(out, d);
                }
                match &n.kind {
                    NamedKind::Record { fields, .. } => {
                        out.push_str(",\"fields\":[");
                        for (fi, f) in fields.iter().enumerate() {
                            if fi > 0 {
                                out.push(',');
                            }
                            out.push_str("{\"name\":");
                            push_str(out, &f.name);
                            out.push_str(",\"type\":");
                            self.write(out, &f.ty, &n.namespace, known, full);
                            if let Some(d) = &f.doc {
                                out.push_str(",\"doc\":");
                                push_str(out, d);
                            }
                            if let Some(d) = &f.default {
                                out.push_str(",\"default\":");
                                out.push_str(&d.to_string());
                            }
                            if let Some(o) = &f.order {
                                out.push_str(",\"order\":");
                                push_str(out, o);
                            }
                            if !f.aliases.is_empty() {
                                out.push_str(",\"aliases\":");
                                out.push_str(&Value::from(f.aliases.clone()).to_string());
                            }
                            write_props(out, &f.props);
                            out.push('}');
                        }
                        out.push(']');
                    }
                    NamedKind::Enum { symbols, default } => {
                        out.push_str(",\"symbols\":");
                        out.push_str(&Value::from(symbols.clone()).to_string());
                        if let Some(d) = default {
                            out.push_str(",\"default\":");
                            push_str(out, d);
                        }
                    }
                    NamedKind::Fixed { size } => {
                        out.push_str(",\"size\":");
                        out.push_str(&size.to_string());
                    }
                }
                write_props(out, &n.props);
                if !n.aliases.is_empty() {
                    out.push_str(",\"aliases\":");
                    let a: Vec<String> = if full {
                        n.aliases.clone()
                    } else {
                        n.aliases
                            .iter()
                            .map(|a| match a.strip_prefix(&format!("{}.", n.namespace)) {
                                Some(s) if !n.namespace.is_empty() && !s.contains('.') => {
                                    s.to_string()
                                }
                                _ => a.clone(),
                            })
                            .collect()
                    };
                    out.push_str(&Value::from(a).to_string());
                }
                out.push('}');
            }
        }
    }
}

fn push_str(out: &mut String, s: &str) {
    out.push_str(&Value::from(s).to_string());
}

fn write_props(out: &mut String, props: &BTreeMap<String, Value>) {
    for (k, v) in props {
        out.push(',');
        push_str(out, k);
        out.push(':');
        out.push_str(&v.to_string());
    }
}
