//! Protobuf compatibility with Confluent's difference rules: messages are matched by name, fields
//! by tag number (regardless of oneof membership), scalar kinds in wire-compatible groups
//! ({int32, int64, uint32, uint64, bool, enum}, {sint32, sint64}, {string, bytes},
//! {fixed32, sfixed32}, {fixed64, sfixed64}, {float}, {double}). Only the incompatible
//! difference types are reported: `PACKAGE_CHANGED`, `MESSAGE_REMOVED`, `FIELD_KIND_CHANGED`,
//! `FIELD_SCALAR_KIND_CHANGED`, `FIELD_NAMED_TYPE_CHANGED`, `FIELD_NUMERIC_LABEL_CHANGED`,
//! `REQUIRED_FIELD_ADDED`, `REQUIRED_FIELD_REMOVED`, `ONEOF_FIELD_REMOVED`,
//! `MULTIPLE_FIELDS_MOVED_TO_ONEOF`, `FIELD_MOVED_TO_EXISTING_ONEOF`. Compatible ones
//! (`FIELD_ADDED`, `FIELD_REMOVED`, `MESSAGE_ADDED`, `ENUM_*`, ...) pass silently.
//! Paths: `#/Message/Nested/fieldNumber`.

use std::collections::BTreeSet;

use prost_reflect::{Cardinality, FieldDescriptor, Kind, MessageDescriptor};

use super::{Direction, Found};
use crate::schema::protobuf::ProtobufSchema;

/// Checks that `update` can read data written with `original`.
pub(crate) fn check(
    original: &ProtobufSchema,
    update: &ProtobufSchema,
    dir: Direction,
) -> Vec<Found> {
    let mut d = Diff {
        dir,
        out: Vec::new(),
    };
    let (of, uf) = (original.file(), update.file());
    if of.package_name() != uf.package_name() {
        d.push("PACKAGE_CHANGED", "#/".into());
    }
    let om: Vec<MessageDescriptor> = of.messages().collect();
    let um: Vec<MessageDescriptor> = uf.messages().collect();
    d.messages(&om, &um, "#");
    d.out
}

struct Diff {
    dir: Direction,
    out: Vec<Found>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    Scalar,
    Message,
    Map,
}

fn class(f: &FieldDescriptor) -> Class {
    if f.is_map() {
        Class::Map
    } else if matches!(f.kind(), Kind::Message(_)) {
        Class::Message
    } else {
        Class::Scalar
    }
}

fn scalar_group(k: &Kind) -> u8 {
    match k {
        Kind::Int32 | Kind::Int64 | Kind::Uint32 | Kind::Uint64 | Kind::Bool | Kind::Enum(_) => 0,
        Kind::Sint32 | Kind::Sint64 => 1,
        Kind::String | Kind::Bytes => 2,
        Kind::Fixed32 | Kind::Sfixed32 => 3,
        Kind::Fixed64 | Kind::Sfixed64 => 4,
        Kind::Float => 5,
        Kind::Double => 6,
        Kind::Message(_) => 7,
    }
}

fn real_oneof(f: &FieldDescriptor) -> Option<String> {
    f.containing_oneof()
        .filter(|o| !o.is_synthetic())
        .map(|o| o.name().to_string())
}

fn has_oneof(m: &MessageDescriptor, name: &str) -> bool {
    m.oneofs().any(|o| !o.is_synthetic() && o.name() == name)
}

fn short(n: &str) -> &str {
    n.rsplit('.').next().unwrap_or(n)
}

impl Diff {
    fn push(&mut self, error_type: &'static str, path: String) {
        let (u, o) = (self.dir.update_label(), self.dir.original_label());
        let p = &path;
        let description = match error_type {
            "PACKAGE_CHANGED" => format!(
                "The package at '{p}' in the {u} schema does not match the package in the {o} schema"
            ),
            "MESSAGE_REMOVED" => format!(
                "The {o} schema has a message at path '{p}' that is missing in the {u} schema"
            ),
            "FIELD_KIND_CHANGED" => format!(
                "The kind of a field at path '{p}' in the {u} schema does not match its kind in the {o} schema"
            ),
            "FIELD_SCALAR_KIND_CHANGED" => format!(
                "The kind of a SCALAR field at path '{p}' in the {u} schema does not match its kind in the {o} schema"
            ),
            "FIELD_NAMED_TYPE_CHANGED" => format!(
                "The type of a MESSAGE or ENUM field at path '{p}' in the {u} schema does not match its type in the {o} schema"
            ),
            "FIELD_NUMERIC_LABEL_CHANGED" => format!(
                "The label of a NUMERIC field at path '{p}' in the {u} schema does not match its label in the {o} schema"
            ),
            "REQUIRED_FIELD_ADDED" => format!(
                "A required field at path '{p}' in the {u} schema is missing in the {o} schema"
            ),
            "REQUIRED_FIELD_REMOVED" => format!(
                "A required field at path '{p}' in the {o} schema is missing in the {u} schema"
            ),
            "ONEOF_FIELD_REMOVED" => format!(
                "A field of the ONEOF at path '{p}' in the {o} schema is missing in the {u} schema"
            ),
            "MULTIPLE_FIELDS_MOVED_TO_ONEOF" => format!(
                "Multiple fields of the {o} schema were moved into the new ONEOF at path '{p}' in the {u} schema"
            ),
            _ => format!(
                "A field at path '{p}' in the {o} schema was moved into an existing ONEOF in the {u} schema"
            ),
        };
        self.out.push(Found {
            error_type,
            path,
            description,
            additional_info: String::new(),
        });
    }

    fn messages(&mut self, om: &[MessageDescriptor], um: &[MessageDescriptor], prefix: &str) {
        for o in om.iter().filter(|m| !m.is_map_entry()) {
            let path = format!("{prefix}/{}", o.name());
            match um.iter().find(|u| u.name() == o.name()) {
                None => self.push("MESSAGE_REMOVED", path),
                Some(u) => self.message(o, u, &path),
            }
        }
    }

    fn message(&mut self, o: &MessageDescriptor, u: &MessageDescriptor, path: &str) {
        let numbers: BTreeSet<u32> = o.fields().chain(u.fields()).map(|f| f.number()).collect();
        for n in numbers {
            let fpath = format!("{path}/{n}");
            match (o.get_field(n), u.get_field(n)) {
                (Some(of), None) => {
                    if of.cardinality() == Cardinality::Required {
                        self.push("REQUIRED_FIELD_REMOVED", fpath);
                    } else if let Some(oneof) = real_oneof(&of)
                        && has_oneof(u, &oneof)
                    {
                        self.push("ONEOF_FIELD_REMOVED", fpath);
                    }
                }
                (None, Some(uf)) => {
                    if uf.cardinality() == Cardinality::Required {
                        self.push("REQUIRED_FIELD_ADDED", fpath);
                    }
                }
                (Some(of), Some(uf)) => self.field(&of, &uf, fpath),
                (None, None) => {}
            }
        }
        // Fields moved into oneofs.
        for oneof in u.oneofs().filter(|x| !x.is_synthetic()) {
            let moved: Vec<u32> = oneof
                .fields()
                .filter_map(|uf| {
                    let of = o.get_field(uf.number())?;
                    (real_oneof(&of).as_deref() != Some(oneof.name())).then_some(uf.number())
                })
                .collect();
            if moved.is_empty() {
                continue;
            }
            if has_oneof(o, oneof.name()) {
                for n in moved {
                    self.push("FIELD_MOVED_TO_EXISTING_ONEOF", format!("{path}/{n}"));
                }
            } else if moved.len() > 1 {
                self.push(
                    "MULTIPLE_FIELDS_MOVED_TO_ONEOF",
                    format!("{path}/{}", oneof.name()),
                );
            }
        }
        let on: Vec<MessageDescriptor> = o.child_messages().collect();
        let un: Vec<MessageDescriptor> = u.child_messages().collect();
        self.messages(&on, &un, path);
    }

    fn field(&mut self, of: &FieldDescriptor, uf: &FieldDescriptor, path: String) {
        let (oc, uc) = (class(of), class(uf));
        if oc != uc {
            self.push("FIELD_KIND_CHANGED", path);
            return;
        }
        match oc {
            Class::Map => {
                if let (Kind::Message(om), Kind::Message(um)) = (of.kind(), uf.kind()) {
                    let ok = om.map_entry_key_field();
                    let uk = um.map_entry_key_field();
                    let ov = om.map_entry_value_field();
                    let uv = um.map_entry_value_field();
                    self.field(&ok, &uk, path.clone());
                    self.field(&ov, &uv, path);
                }
                return;
            }
            Class::Message => {
                if let (Kind::Message(om), Kind::Message(um)) = (of.kind(), uf.kind())
                    && om.full_name() != um.full_name()
                    && short(om.full_name()) != short(um.full_name())
                {
                    self.push("FIELD_NAMED_TYPE_CHANGED", path.clone());
                }
            }
            Class::Scalar => {
                let (ok, uk) = (of.kind(), uf.kind());
                if scalar_group(&ok) != scalar_group(&uk) {
                    self.push("FIELD_SCALAR_KIND_CHANGED", path);
                    return;
                }
                if let (Kind::Enum(oe), Kind::Enum(ue)) = (&ok, &uk)
                    && oe.full_name() != ue.full_name()
                    && short(oe.full_name()) != short(ue.full_name())
                {
                    self.push("FIELD_NAMED_TYPE_CHANGED", path.clone());
                }
            }
        }
        let (or, ur) = (of.is_list(), uf.is_list());
        if or != ur {
            let numeric = !matches!(of.kind(), Kind::String | Kind::Bytes | Kind::Message(_));
            if numeric {
                self.push("FIELD_NUMERIC_LABEL_CHANGED", path.clone());
            }
        }
        let (oreq, ureq) = (
            of.cardinality() == Cardinality::Required,
            uf.cardinality() == Cardinality::Required,
        );
        if ureq && !oreq {
            self.push("REQUIRED_FIELD_ADDED", path);
        } else if oreq && !ureq {
            self.push("REQUIRED_FIELD_REMOVED", path);
        }
    }
}
