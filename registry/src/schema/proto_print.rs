//! `FileDescriptorProto` → `.proto` text, for schemas registered as base64 descriptors (what
//! confluent-kafka's `ProtobufSerializer` sends). Unlike the normalising printer in
//! [`super::protobuf`] this one keeps the descriptor's declaration order, so the text compiles
//! back to the same descriptor: syntax proto2/proto3, package, imports (`public`/`weak`),
//! the standard file, message, field, enum, value, service and method options, nested
//! messages and enums, oneofs, proto3 `optional`, maps, labels, defaults, extension ranges,
//! `extend` blocks, reserved ranges and names, services.
//!
//! Not reproducible (refused with an error): groups and editions. Custom options are not kept
//! (prost drops unknown option fields when decoding).

use std::fmt::Write as _;

use prost_reflect::prost_types::{
    DescriptorProto, EnumDescriptorProto, FieldDescriptorProto, FileDescriptorProto,
    ServiceDescriptorProto,
    field_descriptor_proto::{Label, Type},
    field_options::{CType, JsType},
    file_options::OptimizeMode,
    method_options::IdempotencyLevel,
};

use super::SchemaError;

/// Largest field number + 1 (`max` in range syntax).
const FIELD_MAX_EXCLUSIVE: i32 = 536_870_912;

/// Prints `fd` as `.proto` text.
pub fn print(fd: &FileDescriptorProto) -> Result<String, SchemaError> {
    let syntax = fd.syntax.as_deref().unwrap_or("proto2");
    let syntax = match syntax {
        "" | "proto2" => "proto2",
        "proto3" => "proto3",
        other => {
            return Err(SchemaError::Invalid(format!(
                "descriptor syntax '{other}' is not supported"
            )));
        }
    };
    let mut p = Printer {
        out: String::new(),
        proto3: syntax == "proto3",
    };
    let _ = writeln!(p.out, "syntax = \"{syntax}\";");
    if let Some(pkg) = fd.package.as_deref().filter(|s| !s.is_empty()) {
        let _ = writeln!(p.out, "package {pkg};");
    }
    for (i, dep) in fd.dependency.iter().enumerate() {
        let i = i32::try_from(i).unwrap_or(i32::MAX);
        let kind = if fd.public_dependency.contains(&i) {
            "public "
        } else if fd.weak_dependency.contains(&i) {
            "weak "
        } else {
            ""
        };
        let _ = writeln!(p.out, "import {kind}{};", quote(dep));
    }
    if let Some(o) = &fd.options {
        let mut opts: Vec<(&str, String)> = Vec::new();
        let s = |v: &Option<String>| v.as_deref().map(quote);
        let b = |v: Option<bool>| v.map(|b| b.to_string());
        let pairs: Vec<(&str, Option<String>)> = vec![
            ("java_package", s(&o.java_package)),
            ("java_outer_classname", s(&o.java_outer_classname)),
            ("java_multiple_files", b(o.java_multiple_files)),
            ("java_string_check_utf8", b(o.java_string_check_utf8)),
            (
                "optimize_for",
                o.optimize_for.map(|_| {
                    match o.optimize_for() {
                        OptimizeMode::Speed => "SPEED",
                        OptimizeMode::CodeSize => "CODE_SIZE",
                        OptimizeMode::LiteRuntime => "LITE_RUNTIME",
                    }
                    .to_string()
                }),
            ),
            ("go_package", s(&o.go_package)),
            ("cc_generic_services", b(o.cc_generic_services)),
            ("java_generic_services", b(o.java_generic_services)),
            ("py_generic_services", b(o.py_generic_services)),
            ("deprecated", b(o.deprecated)),
            ("cc_enable_arenas", b(o.cc_enable_arenas)),
            ("objc_class_prefix", s(&o.objc_class_prefix)),
            ("csharp_namespace", s(&o.csharp_namespace)),
            ("swift_prefix", s(&o.swift_prefix)),
            ("php_class_prefix", s(&o.php_class_prefix)),
            ("php_namespace", s(&o.php_namespace)),
            ("php_metadata_namespace", s(&o.php_metadata_namespace)),
            ("ruby_package", s(&o.ruby_package)),
        ];
        for (k, v) in pairs {
            if let Some(v) = v {
                opts.push((k, v));
            }
        }
        for (k, v) in opts {
            let _ = writeln!(p.out, "option {k} = {v};");
        }
    }
    let scope = match fd.package.as_deref().filter(|s| !s.is_empty()) {
        Some(pkg) => format!(".{pkg}"),
        None => String::new(),
    };
    for m in &fd.message_type {
        p.message(m, &scope, 0)?;
    }
    for e in &fd.enum_type {
        p.enumeration(e, 0);
    }
    p.extensions(&fd.extension, 0)?;
    for s in &fd.service {
        p.service(s);
    }
    Ok(p.out)
}

struct Printer {
    out: String,
    proto3: bool,
}

fn pad(indent: usize) -> String {
    "  ".repeat(indent)
}

/// A string literal with C-style escapes (what protoc accepts back).
fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for b in s.bytes() {
        match b {
            b'"' => out.push_str("\\\""),
            b'\\' => out.push_str("\\\\"),
            b'\n' => out.push_str("\\n"),
            b'\r' => out.push_str("\\r"),
            b'\t' => out.push_str("\\t"),
            0x20..=0x7e => out.push(char::from(b)),
            _ => {
                let _ = write!(out, "\\{b:03o}");
            }
        }
    }
    out.push('"');
    out
}

/// protoc's default `json_name`: underscores dropped, the next letter upper-cased.
pub(crate) fn default_json_name(name: &str) -> String {
    let mut out = String::new();
    let mut upper = false;
    for c in name.chars() {
        if c == '_' {
            upper = true;
        } else if upper {
            out.extend(c.to_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
}

pub(crate) fn scalar_name(t: Type) -> Option<&'static str> {
    Some(match t {
        Type::Double => "double",
        Type::Float => "float",
        Type::Int64 => "int64",
        Type::Uint64 => "uint64",
        Type::Int32 => "int32",
        Type::Fixed64 => "fixed64",
        Type::Fixed32 => "fixed32",
        Type::Bool => "bool",
        Type::String => "string",
        Type::Bytes => "bytes",
        Type::Uint32 => "uint32",
        Type::Sfixed32 => "sfixed32",
        Type::Sfixed64 => "sfixed64",
        Type::Sint32 => "sint32",
        Type::Sint64 => "sint64",
        Type::Group | Type::Message | Type::Enum => return None,
    })
}

fn range_text(start: i32, end_inclusive: i32, max: i32) -> String {
    if end_inclusive >= max {
        format!("{start} to max")
    } else if start == end_inclusive {
        start.to_string()
    } else {
        format!("{start} to {end_inclusive}")
    }
}

impl Printer {
    fn message(
        &mut self,
        m: &DescriptorProto,
        scope: &str,
        indent: usize,
    ) -> Result<(), SchemaError> {
        let full = format!("{scope}.{}", m.name());
        let (p, inner) = (pad(indent), pad(indent + 1));
        let _ = writeln!(self.out, "{p}message {} {{", m.name());
        if let Some(o) = &m.options {
            if o.message_set_wire_format() {
                let _ = writeln!(self.out, "{inner}option message_set_wire_format = true;");
            }
            if o.no_standard_descriptor_accessor() {
                let _ = writeln!(
                    self.out,
                    "{inner}option no_standard_descriptor_accessor = true;"
                );
            }
            if let Some(d) = o.deprecated {
                let _ = writeln!(self.out, "{inner}option deprecated = {d};");
            }
        }
        let mut printed_oneofs: Vec<i32> = Vec::new();
        for f in &m.field {
            match f.oneof_index.filter(|_| !f.proto3_optional()) {
                Some(oi) => {
                    if printed_oneofs.contains(&oi) {
                        continue;
                    }
                    printed_oneofs.push(oi);
                    let name = usize::try_from(oi)
                        .ok()
                        .and_then(|i| m.oneof_decl.get(i))
                        .map(|o| o.name())
                        .ok_or_else(|| {
                            SchemaError::Invalid(format!(
                                "field '{}' names oneof {oi}, which does not exist",
                                f.name()
                            ))
                        })?;
                    let _ = writeln!(self.out, "{inner}oneof {name} {{");
                    for g in m
                        .field
                        .iter()
                        .filter(|g| g.oneof_index == Some(oi) && !g.proto3_optional())
                    {
                        self.field(g, m, &full, indent + 2, true)?;
                    }
                    let _ = writeln!(self.out, "{inner}}}");
                }
                None => self.field(f, m, &full, indent + 1, false)?,
            }
        }
        for n in &m.nested_type {
            if n.options.as_ref().is_some_and(|o| o.map_entry()) {
                continue;
            }
            self.message(n, &full, indent + 1)?;
        }
        for e in &m.enum_type {
            self.enumeration(e, indent + 1);
        }
        self.extensions(&m.extension, indent + 1)?;
        if !m.extension_range.is_empty() {
            let parts: Vec<String> = m
                .extension_range
                .iter()
                .map(|r| range_text(r.start(), r.end() - 1, FIELD_MAX_EXCLUSIVE - 1))
                .collect();
            let _ = writeln!(self.out, "{inner}extensions {};", parts.join(", "));
        }
        if !m.reserved_range.is_empty() {
            let parts: Vec<String> = m
                .reserved_range
                .iter()
                .map(|r| range_text(r.start(), r.end() - 1, FIELD_MAX_EXCLUSIVE - 1))
                .collect();
            let _ = writeln!(self.out, "{inner}reserved {};", parts.join(", "));
        }
        if !m.reserved_name.is_empty() {
            let names: Vec<String> = m.reserved_name.iter().map(|n| quote(n)).collect();
            let _ = writeln!(self.out, "{inner}reserved {};", names.join(", "));
        }
        let _ = writeln!(self.out, "{p}}}");
        Ok(())
    }

    /// The map entry type this field uses, when it is a map field of `m`.
    fn map_entry<'a>(
        f: &FieldDescriptorProto,
        m: &'a DescriptorProto,
        full: &str,
    ) -> Option<&'a DescriptorProto> {
        if f.label() != Label::Repeated || f.r#type() != Type::Message {
            return None;
        }
        m.nested_type.iter().find(|n| {
            n.options.as_ref().is_some_and(|o| o.map_entry())
                && f.type_name() == format!("{full}.{}", n.name())
        })
    }

    fn type_text(f: &FieldDescriptorProto) -> Result<String, SchemaError> {
        match f.r#type() {
            Type::Group => Err(SchemaError::Invalid(format!(
                "field '{}' is a group, which is not supported",
                f.name()
            ))),
            Type::Message | Type::Enum => Ok(f.type_name().to_string()),
            t => Ok(scalar_name(t).unwrap_or_default().to_string()),
        }
    }

    fn field(
        &mut self,
        f: &FieldDescriptorProto,
        m: &DescriptorProto,
        full: &str,
        indent: usize,
        in_oneof: bool,
    ) -> Result<(), SchemaError> {
        let (ty, is_map) = match Self::map_entry(f, m, full) {
            Some(entry) => {
                let k = entry.field.iter().find(|x| x.number() == 1);
                let v = entry.field.iter().find(|x| x.number() == 2);
                match (k, v) {
                    (Some(k), Some(v)) => (
                        format!("map<{}, {}>", Self::type_text(k)?, Self::type_text(v)?),
                        true,
                    ),
                    _ => (Self::type_text(f)?, false),
                }
            }
            None => (Self::type_text(f)?, false),
        };
        let label = if in_oneof || is_map {
            ""
        } else {
            match f.label() {
                Label::Repeated => "repeated ",
                Label::Required => "required ",
                Label::Optional if !self.proto3 || f.proto3_optional() => "optional ",
                Label::Optional => "",
            }
        };
        let mut opts: Vec<String> = Vec::new();
        if let Some(d) = &f.default_value {
            let v = match f.r#type() {
                Type::String => quote(d),
                // protoc stores bytes defaults already C-escaped.
                Type::Bytes => format!("\"{d}\""),
                _ => d.clone(),
            };
            opts.push(format!("default = {v}"));
        }
        if let Some(j) = &f.json_name
            && *j != default_json_name(f.name())
        {
            opts.push(format!("json_name = {}", quote(j)));
        }
        if let Some(o) = &f.options {
            if o.ctype.is_some() {
                let c = match o.ctype() {
                    CType::String => "STRING",
                    CType::Cord => "CORD",
                    CType::StringPiece => "STRING_PIECE",
                };
                opts.push(format!("ctype = {c}"));
            }
            if let Some(p) = o.packed {
                opts.push(format!("packed = {p}"));
            }
            if o.jstype.is_some() {
                let j = match o.jstype() {
                    JsType::JsNormal => "JS_NORMAL",
                    JsType::JsString => "JS_STRING",
                    JsType::JsNumber => "JS_NUMBER",
                };
                opts.push(format!("jstype = {j}"));
            }
            if let Some(l) = o.lazy {
                opts.push(format!("lazy = {l}"));
            }
            if let Some(d) = o.deprecated {
                opts.push(format!("deprecated = {d}"));
            }
        }
        let opts = if opts.is_empty() {
            String::new()
        } else {
            format!(" [{}]", opts.join(", "))
        };
        let _ = writeln!(
            self.out,
            "{}{label}{ty} {} = {}{opts};",
            pad(indent),
            f.name(),
            f.number()
        );
        Ok(())
    }

    fn extensions(
        &mut self,
        exts: &[FieldDescriptorProto],
        indent: usize,
    ) -> Result<(), SchemaError> {
        let mut i = 0;
        while i < exts.len() {
            let extendee = exts[i].extendee().to_string();
            let _ = writeln!(self.out, "{}extend {extendee} {{", pad(indent));
            while i < exts.len() && exts[i].extendee() == extendee {
                // Extensions carry a label even in proto3 files (`optional` is implied).
                let saved = self.proto3;
                self.proto3 = false;
                let r = self.field(&exts[i], &DescriptorProto::default(), "", indent + 1, false);
                self.proto3 = saved;
                r?;
                i += 1;
            }
            let _ = writeln!(self.out, "{}}}", pad(indent));
        }
        Ok(())
    }

    fn enumeration(&mut self, e: &EnumDescriptorProto, indent: usize) {
        let (p, inner) = (pad(indent), pad(indent + 1));
        let _ = writeln!(self.out, "{p}enum {} {{", e.name());
        if let Some(o) = &e.options {
            if let Some(a) = o.allow_alias {
                let _ = writeln!(self.out, "{inner}option allow_alias = {a};");
            }
            if let Some(d) = o.deprecated {
                let _ = writeln!(self.out, "{inner}option deprecated = {d};");
            }
        }
        for v in &e.value {
            let opts = match v.options.as_ref().and_then(|o| o.deprecated) {
                Some(d) => format!(" [deprecated = {d}]"),
                None => String::new(),
            };
            let _ = writeln!(self.out, "{inner}{} = {}{opts};", v.name(), v.number());
        }
        if !e.reserved_range.is_empty() {
            let parts: Vec<String> = e
                .reserved_range
                .iter()
                .map(|r| range_text(r.start(), r.end(), i32::MAX))
                .collect();
            let _ = writeln!(self.out, "{inner}reserved {};", parts.join(", "));
        }
        if !e.reserved_name.is_empty() {
            let names: Vec<String> = e.reserved_name.iter().map(|n| quote(n)).collect();
            let _ = writeln!(self.out, "{inner}reserved {};", names.join(", "));
        }
        let _ = writeln!(self.out, "{p}}}");
    }

    fn service(&mut self, s: &ServiceDescriptorProto) {
        let _ = writeln!(self.out, "service {} {{", s.name());
        if let Some(d) = s.options.as_ref().and_then(|o| o.deprecated) {
            let _ = writeln!(self.out, "  option deprecated = {d};");
        }
        for m in &s.method {
            let head = format!(
                "  rpc {} ({}{}) returns ({}{})",
                m.name(),
                if m.client_streaming() { "stream " } else { "" },
                m.input_type(),
                if m.server_streaming() { "stream " } else { "" },
                m.output_type()
            );
            let mut opts = Vec::new();
            if let Some(o) = &m.options {
                if let Some(d) = o.deprecated {
                    opts.push(format!("option deprecated = {d};"));
                }
                if o.idempotency_level.is_some() {
                    let l = match o.idempotency_level() {
                        IdempotencyLevel::IdempotencyUnknown => "IDEMPOTENCY_UNKNOWN",
                        IdempotencyLevel::NoSideEffects => "NO_SIDE_EFFECTS",
                        IdempotencyLevel::Idempotent => "IDEMPOTENT",
                    };
                    opts.push(format!("option idempotency_level = {l};"));
                }
            }
            if opts.is_empty() {
                let _ = writeln!(self.out, "{head};");
            } else {
                let _ = writeln!(self.out, "{head} {{");
                for o in opts {
                    let _ = writeln!(self.out, "    {o}");
                }
                let _ = writeln!(self.out, "  }}");
            }
        }
        self.out.push_str("}\n");
    }
}
