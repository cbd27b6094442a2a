//! Avro schema resolution (the rules of the Avro specification, "Schema Resolution"), reported
//! with the incompatibility kinds of Apache Avro's `SchemaCompatibility` that Confluent
//! surfaces: `NAME_MISMATCH`, `FIXED_SIZE_MISMATCH`, `MISSING_ENUM_SYMBOLS`,
//! `READER_FIELD_MISSING_DEFAULT_VALUE`, `TYPE_MISMATCH`, `MISSING_UNION_BRANCH`.
//! Paths are locations in the reader schema (`/fields/1/type`).

use std::collections::HashSet;

use super::{Direction, Found};
use crate::schema::avro::{AvroSchema, AvroType, NamedKind, NamedType, Prim};

/// Checks that `reader` can read data written with `writer`.
pub(crate) fn check(reader: &AvroSchema, writer: &AvroSchema, dir: Direction) -> Vec<Found> {
    let mut c = Checker {
        r: reader,
        w: writer,
        dir,
        in_progress: HashSet::new(),
    };
    let mut path = Vec::new();
    c.compat(&reader.root, &writer.root, &mut path)
}

struct Checker<'a> {
    r: &'a AvroSchema,
    w: &'a AvroSchema,
    dir: Direction,
    in_progress: HashSet<(usize, usize)>,
}

#[derive(Clone, Copy)]
enum Kind<'a> {
    Prim(Prim),
    Array,
    Map,
    Union,
    Named(&'a NamedType),
}

fn kind<'a>(s: &'a AvroSchema, t: &AvroType) -> Option<Kind<'a>> {
    Some(match t {
        AvroType::Primitive { prim, .. } => Kind::Prim(*prim),
        AvroType::Array { .. } => Kind::Array,
        AvroType::Map { .. } => Kind::Map,
        AvroType::Union(_) => Kind::Union,
        AvroType::Named(i) => Kind::Named(s.names.get(*i)?),
    })
}

fn type_name(k: Option<Kind<'_>>) -> &'static str {
    match k {
        Some(Kind::Prim(p)) => match p {
            Prim::Null => "NULL",
            Prim::Boolean => "BOOLEAN",
            Prim::Int => "INT",
            Prim::Long => "LONG",
            Prim::Float => "FLOAT",
            Prim::Double => "DOUBLE",
            Prim::Bytes => "BYTES",
            Prim::String => "STRING",
        },
        Some(Kind::Array) => "ARRAY",
        Some(Kind::Map) => "MAP",
        Some(Kind::Union) => "UNION",
        Some(Kind::Named(n)) => match n.kind {
            NamedKind::Record { .. } => "RECORD",
            NamedKind::Enum { .. } => "ENUM",
            NamedKind::Fixed { .. } => "FIXED",
        },
        None => "UNKNOWN",
    }
}

fn loc(path: &[String]) -> String {
    format!("/{}", path.join("/"))
}

fn short(n: &str) -> &str {
    n.rsplit('.').next().unwrap_or(n)
}

impl Checker<'_> {
    fn found(&self, error_type: &'static str, path: &[String], info: String) -> Found {
        let p = loc(path);
        let (r, w) = (self.dir.update_label(), self.dir.original_label());
        let description = match error_type {
            "READER_FIELD_MISSING_DEFAULT_VALUE" => format!(
                "The field '{info}' at path '{p}' in the {r} schema has no default value and is missing in the {w} schema"
            ),
            "TYPE_MISMATCH" => format!(
                "The type (path '{p}') of a field in the {r} schema does not match with the {w} schema"
            ),
            "NAME_MISMATCH" => format!("The name of the schema has changed (path '{p}')"),
            "FIXED_SIZE_MISMATCH" => format!(
                "The size of FIXED type field at path '{p}' in the {r} schema does not match with the {w} schema"
            ),
            "MISSING_ENUM_SYMBOLS" => format!(
                "The {r} schema is missing enum symbols '{info}' at path '{p}' in the {w} schema"
            ),
            _ => format!(
                "The {r} schema is missing a type inside a union field at path '{p}' in the {w} schema"
            ),
        };
        Found {
            error_type,
            path: p,
            description,
            additional_info: info,
        }
    }

    fn names_match(r: &NamedType, w: &NamedType) -> bool {
        short(&r.full_name) == short(&w.full_name) || r.aliases.contains(&w.full_name)
    }

    fn compat(&mut self, rt: &AvroType, wt: &AvroType, path: &mut Vec<String>) -> Vec<Found> {
        let (rk, wk) = (kind(self.r, rt), kind(self.w, wt));
        let mut out = Vec::new();
        // A writer union: every branch must be readable.
        if let AvroType::Union(wbs) = wt {
            if let AvroType::Union(_) = rt {
                for (i, wb) in wbs.iter().enumerate() {
                    if !self.compat(rt, wb, path).is_empty() {
                        path.push(i.to_string());
                        let info = format!(
                            "reader union lacking writer type: {}",
                            type_name(kind(self.w, wb))
                        );
                        out.push(self.found("MISSING_UNION_BRANCH", path, info));
                        path.pop();
                    }
                }
            } else {
                for wb in wbs {
                    out.extend(self.compat(rt, wb, path));
                }
            }
            return out;
        }
        if let AvroType::Union(rbs) = rt {
            if rbs.iter().any(|rb| self.compat(rb, wt, path).is_empty()) {
                return out;
            }
            let info = format!("reader union lacking writer type: {}", type_name(wk));
            out.push(self.found("MISSING_UNION_BRANCH", path, info));
            return out;
        }
        let mismatch = |c: &Self, path: &[String]| {
            let info = format!(
                "reader type: {} not compatible with writer type: {}",
                type_name(rk),
                type_name(wk)
            );
            c.found("TYPE_MISMATCH", path, info)
        };
        match (rk, wk, rt, wt) {
            (Some(Kind::Prim(r)), Some(Kind::Prim(w)), _, _) => {
                let ok = r == w
                    || matches!(
                        (r, w),
                        (Prim::Long, Prim::Int)
                            | (Prim::Float, Prim::Int | Prim::Long)
                            | (Prim::Double, Prim::Int | Prim::Long | Prim::Float)
                            | (Prim::String, Prim::Bytes)
                            | (Prim::Bytes, Prim::String)
                    );
                if !ok {
                    out.push(mismatch(self, path));
                }
            }
            (_, _, AvroType::Array { items: ri, .. }, AvroType::Array { items: wi, .. }) => {
                path.push("items".into());
                out.extend(self.compat(ri, wi, path));
                path.pop();
            }
            (_, _, AvroType::Map { values: rv, .. }, AvroType::Map { values: wv, .. }) => {
                path.push("values".into());
                out.extend(self.compat(rv, wv, path));
                path.pop();
            }
            (
                Some(Kind::Named(rn)),
                Some(Kind::Named(wn)),
                AvroType::Named(ri),
                AvroType::Named(wi),
            ) => {
                let mm = mismatch(self, path);
                out.extend(self.named(rn, wn, (*ri, *wi), path, mm));
            }
            _ => out.push(mismatch(self, path)),
        }
        out
    }

    fn named(
        &mut self,
        rn: &NamedType,
        wn: &NamedType,
        key: (usize, usize),
        path: &mut Vec<String>,
        mismatch: Found,
    ) -> Vec<Found> {
        let mut out = Vec::new();
        let name_ok = Self::names_match(rn, wn);
        match (&rn.kind, &wn.kind) {
            (NamedKind::Fixed { size: rs }, NamedKind::Fixed { size: ws }) => {
                if !name_ok {
                    path.push("name".into());
                    out.push(self.found(
                        "NAME_MISMATCH",
                        path,
                        format!("expected: {}", wn.full_name),
                    ));
                    path.pop();
                }
                if rs != ws {
                    path.push("size".into());
                    out.push(self.found(
                        "FIXED_SIZE_MISMATCH",
                        path,
                        format!("expected: {ws}, found: {rs}"),
                    ));
                    path.pop();
                }
            }
            (
                NamedKind::Enum {
                    symbols: rsym,
                    default: rdef,
                },
                NamedKind::Enum { symbols: wsym, .. },
            ) => {
                if !name_ok {
                    path.push("name".into());
                    out.push(self.found(
                        "NAME_MISMATCH",
                        path,
                        format!("expected: {}", wn.full_name),
                    ));
                    path.pop();
                }
                let mut missing: Vec<&String> = wsym.iter().filter(|s| !rsym.contains(s)).collect();
                missing.sort();
                if !missing.is_empty() && rdef.is_none() {
                    path.push("symbols".into());
                    let info = format!(
                        "[{}]",
                        missing
                            .iter()
                            .map(|s| s.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    );
                    out.push(self.found("MISSING_ENUM_SYMBOLS", path, info));
                    path.pop();
                }
            }
            (NamedKind::Record { fields: rf, .. }, NamedKind::Record { fields: wf, .. }) => {
                if !name_ok {
                    path.push("name".into());
                    out.push(self.found(
                        "NAME_MISMATCH",
                        path,
                        format!("expected: {}", wn.full_name),
                    ));
                    path.pop();
                }
                if !self.in_progress.insert(key) {
                    return out;
                }
                for (i, f) in rf.iter().enumerate() {
                    path.push("fields".into());
                    path.push(i.to_string());
                    let wfield = wf
                        .iter()
                        .find(|w| w.name == f.name)
                        .or_else(|| wf.iter().find(|w| f.aliases.contains(&w.name)));
                    match wfield {
                        None => {
                            if f.default.is_none() {
                                out.push(self.found(
                                    "READER_FIELD_MISSING_DEFAULT_VALUE",
                                    path,
                                    f.name.clone(),
                                ));
                            }
                        }
                        Some(w) => {
                            path.push("type".into());
                            out.extend(self.compat(&f.ty, &w.ty, path));
                            path.pop();
                        }
                    }
                    path.pop();
                    path.pop();
                }
                self.in_progress.remove(&key);
            }
            _ => out.push(mismatch),
        }
        out
    }
}
