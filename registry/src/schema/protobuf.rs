//! Protobuf schemas: `.proto` text compiled in memory with `protox` (imports resolved from the
//! schema's references, then the well-known types), kept as a `prost-reflect` descriptor pool
//! for the compatibility checker.
//!
//! A schema whose text is not `.proto` but the base64 of a serialized `FileDescriptorProto`
//! (what confluent-kafka's `ProtobufSerializer` registers) is printed to `.proto` text by
//! [`super::proto_print`] and compiled from that; the printed text is then its canonical
//! string. [`ProtobufSchema::serialized`] gives the reverse (`format=serialized`).
//!
//! The canonical string of a `.proto` text is the submitted text (trimmed). The normalised form is printed from
//! the descriptors: comments and layout dropped, imports sorted, fields ordered by number,
//! type names fully qualified, common options sorted. Files using constructs the printer does
//! not reproduce (extensions, groups, custom options) normalise to their canonical string.

use std::collections::HashMap;
use std::fmt::Write as _;

use prost_reflect::prost_types::{
    DescriptorProto, EnumDescriptorProto, FieldDescriptorProto, FileDescriptorProto,
    field_descriptor_proto::{Label, Type},
};
use prost_reflect::{DescriptorPool, FileDescriptor};
use protox::file::{ChainFileResolver, File, FileResolver, GoogleFileResolver};

use super::{Dependency, MAX_DEPTH, SchemaError};

/// Name under which the schema itself is compiled.
pub const ROOT_FILE: &str = "__gatehouse_schema__.proto";

/// A compiled Protobuf schema.
#[derive(Debug, Clone)]
pub struct ProtobufSchema {
    text: String,
    pool: DescriptorPool,
    file: FileDescriptor,
    from_descriptor: bool,
}

/// Decodes `text` as base64 of a `FileDescriptorProto`, when it is one.
fn decode_descriptor(text: &str) -> Option<FileDescriptorProto> {
    use base64::Engine as _;
    use prost::Message as _;
    let compact: String = text.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    if compact.is_empty()
        || !compact
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'='))
    {
        return None;
    }
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(compact.as_bytes())
        .ok()?;
    let fd = FileDescriptorProto::decode(bytes.as_slice()).ok()?;
    // Short words are valid base64 too and may decode to an empty descriptor: not a schema.
    (fd != FileDescriptorProto::default()).then_some(fd)
}

struct MemoryResolver {
    files: HashMap<String, String>,
}

impl FileResolver for MemoryResolver {
    fn open_file(&self, name: &str) -> Result<File, protox::Error> {
        match self.files.get(name) {
            Some(src) => File::from_source(name, src),
            None => Err(protox::Error::file_not_found(name)),
        }
    }
}

/// Deepest `{` nesting outside comments and string literals (the parser recurses on it).
fn brace_depth(text: &str) -> usize {
    let b = text.as_bytes();
    let (mut i, mut depth, mut max) = (0usize, 0usize, 0usize);
    while i < b.len() {
        match b[i] {
            b'/' if b.get(i + 1) == Some(&b'/') => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                i += 2;
                while i + 1 < b.len() && !(b[i] == b'*' && b[i + 1] == b'/') {
                    i += 1;
                }
                i += 1;
            }
            q @ (b'"' | b'\'') => {
                i += 1;
                while i < b.len() && b[i] != q {
                    if b[i] == b'\\' {
                        i += 1;
                    }
                    i += 1;
                }
            }
            b'{' | b'<' | b'[' | b'(' => {
                depth += 1;
                max = max.max(depth);
            }
            b'}' | b'>' | b']' | b')' => depth = depth.saturating_sub(1),
            _ => {}
        }
        i += 1;
    }
    max
}

impl ProtobufSchema {
    /// Compiles `text`; `deps` supply imported files by import path.
    pub fn parse(text: &str, deps: &[Dependency]) -> Result<Self, SchemaError> {
        match Self::compile(text, deps) {
            Ok(s) => Ok(s),
            Err(e) => match decode_descriptor(text) {
                Some(fd) => {
                    let printed = super::proto_print::print(&fd)?;
                    let mut s = Self::compile(&printed, deps).map_err(|e2| {
                        SchemaError::Invalid(format!(
                            "base64 FileDescriptorProto does not compile: {e2}"
                        ))
                    })?;
                    s.from_descriptor = true;
                    Ok(s)
                }
                None => Err(e),
            },
        }
    }

    fn compile(text: &str, deps: &[Dependency]) -> Result<Self, SchemaError> {
        for t in std::iter::once(text).chain(deps.iter().map(|d| d.schema.as_str())) {
            if brace_depth(t) > MAX_DEPTH {
                return Err(SchemaError::TooDeep(MAX_DEPTH));
            }
        }
        let mut files = HashMap::new();
        for d in deps {
            files.insert(d.reference.name.clone(), d.schema.clone());
        }
        files.insert(ROOT_FILE.to_string(), text.to_string());
        let mut chain = ChainFileResolver::new();
        chain.add(MemoryResolver { files });
        chain.add(GoogleFileResolver::new());
        let mut compiler = protox::Compiler::with_file_resolver(chain);
        compiler.include_imports(true);
        compiler
            .open_file(ROOT_FILE)
            .map_err(|e| SchemaError::Invalid(e.to_string().replace(ROOT_FILE, "schema")))?;
        let pool = compiler.descriptor_pool();
        let file = pool
            .get_file_by_name(ROOT_FILE)
            .ok_or_else(|| SchemaError::Invalid("schema file missing after compilation".into()))?;
        Ok(ProtobufSchema {
            text: text.trim().to_string(),
            pool,
            file,
            from_descriptor: false,
        })
    }

    /// True when the schema was submitted as a base64 `FileDescriptorProto`.
    pub fn from_descriptor(&self) -> bool {
        self.from_descriptor
    }

    /// The file's `FileDescriptorProto` (without source info, named `default.proto`).
    pub fn descriptor_proto(&self) -> FileDescriptorProto {
        let mut fd = self.file.file_descriptor_proto().clone();
        fd.source_code_info = None;
        fd.name = Some("default.proto".to_string());
        fd
    }

    /// Base64 of the serialized `FileDescriptorProto` (Confluent's `format=serialized`).
    pub fn serialized(&self) -> String {
        use base64::Engine as _;
        use prost::Message as _;
        base64::engine::general_purpose::STANDARD.encode(self.descriptor_proto().encode_to_vec())
    }

    /// The compiled file.
    pub fn file(&self) -> &FileDescriptor {
        &self.file
    }

    /// The descriptor pool (the file plus its imports).
    pub fn pool(&self) -> &DescriptorPool {
        &self.pool
    }

    /// The submitted text, trimmed.
    pub fn canonical_string(&self) -> String {
        self.text.clone()
    }

    /// Normalised text printed from the descriptors (see the module doc).
    pub fn normalized_string(&self) -> String {
        let fd = self.file.file_descriptor_proto();
        if !printable(fd) {
            return self.canonical_string();
        }
        print_file(fd)
    }
}

fn printable(fd: &FileDescriptorProto) -> bool {
    fn msg_ok(m: &DescriptorProto) -> bool {
        m.extension.is_empty()
            && m.extension_range.is_empty()
            && m.field.iter().all(|f| f.r#type() != Type::Group)
            && m.nested_type.iter().all(msg_ok)
    }
    let custom_options = fd
        .options
        .as_ref()
        .is_some_and(|o| !o.uninterpreted_option.is_empty());
    fd.extension.is_empty() && !custom_options && fd.message_type.iter().all(msg_ok)
}

fn scalar_name(t: Type) -> &'static str {
    match t {
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
        Type::Group | Type::Message | Type::Enum => "",
    }
}

fn quote(s: &str) -> String {
    serde_json::Value::from(s).to_string()
}

fn lower_camel(name: &str) -> String {
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

fn print_file(fd: &FileDescriptorProto) -> String {
    let mut out = String::new();
    let syntax = fd.syntax.as_deref().unwrap_or("proto2");
    let _ = writeln!(out, "syntax = {};", quote(syntax));
    if let Some(p) = &fd.package {
        let _ = writeln!(out, "package {p};");
    }
    let mut imports: Vec<&String> = fd.dependency.iter().collect();
    imports.sort();
    for imp in imports {
        let _ = writeln!(out, "import {};", quote(imp));
    }
    if let Some(o) = &fd.options {
        let mut opts: Vec<(String, String)> = Vec::new();
        let mut s = |k: &str, v: &Option<String>| {
            if let Some(v) = v {
                opts.push((k.to_string(), quote(v)));
            }
        };
        s("csharp_namespace", &o.csharp_namespace);
        s("go_package", &o.go_package);
        s("java_outer_classname", &o.java_outer_classname);
        s("java_package", &o.java_package);
        s("objc_class_prefix", &o.objc_class_prefix);
        s("php_namespace", &o.php_namespace);
        s("ruby_package", &o.ruby_package);
        s("swift_prefix", &o.swift_prefix);
        if let Some(b) = o.java_multiple_files {
            opts.push(("java_multiple_files".into(), b.to_string()));
        }
        if let Some(b) = o.deprecated {
            opts.push(("deprecated".into(), b.to_string()));
        }
        opts.sort();
        for (k, v) in opts {
            let _ = writeln!(out, "option {k} = {v};");
        }
    }
    let proto3 = syntax == "proto3";
    for m in &fd.message_type {
        print_message(&mut out, m, 0, proto3);
    }
    for e in &fd.enum_type {
        print_enum(&mut out, e, 0);
    }
    for s in &fd.service {
        let _ = writeln!(out, "service {} {{", s.name());
        for m in &s.method {
            let _ = writeln!(
                out,
                "  rpc {} ({}{}) returns ({}{});",
                m.name(),
                if m.client_streaming() { "stream " } else { "" },
                m.input_type(),
                if m.server_streaming() { "stream " } else { "" },
                m.output_type()
            );
        }
        out.push_str("}\n");
    }
    out
}

fn field_type(f: &FieldDescriptorProto, m: &DescriptorProto) -> String {
    match f.r#type() {
        Type::Message | Type::Enum => {
            // map<K, V> when the type is this message's synthetic entry.
            let tn = f.type_name();
            if let Some(entry) = m.nested_type.iter().find(|n| {
                n.options.as_ref().is_some_and(|o| o.map_entry())
                    && tn.ends_with(&format!(".{}", n.name()))
            }) {
                let k = entry.field.iter().find(|x| x.number() == 1);
                let v = entry.field.iter().find(|x| x.number() == 2);
                if let (Some(k), Some(v)) = (k, v) {
                    return format!("map<{}, {}>", field_type(k, entry), field_type(v, entry));
                }
            }
            tn.to_string()
        }
        t => scalar_name(t).to_string(),
    }
}

fn print_field(
    out: &mut String,
    f: &FieldDescriptorProto,
    m: &DescriptorProto,
    pad: &str,
    proto3: bool,
    in_oneof: bool,
) {
    let ty = field_type(f, m);
    let is_map = ty.starts_with("map<");
    let label = match (f.label(), proto3, in_oneof, is_map) {
        (_, _, true, _) | (_, _, _, true) => "",
        (Label::Repeated, _, _, _) => "repeated ",
        (Label::Required, _, _, _) => "required ",
        (Label::Optional, false, _, _) => "optional ",
        (Label::Optional, true, _, _) if f.proto3_optional() => "optional ",
        _ => "",
    };
    let mut opts = Vec::new();
    if let Some(d) = &f.default_value {
        let v = match f.r#type() {
            Type::String | Type::Bytes => quote(d),
            _ => d.clone(),
        };
        opts.push(format!("default = {v}"));
    }
    if let Some(o) = &f.options {
        if let Some(d) = o.deprecated {
            opts.push(format!("deprecated = {d}"));
        }
        if let Some(p) = o.packed {
            opts.push(format!("packed = {p}"));
        }
    }
    if let Some(j) = &f.json_name
        && *j != lower_camel(f.name())
    {
        opts.push(format!("json_name = {}", quote(j)));
    }
    opts.sort();
    let opts = if opts.is_empty() {
        String::new()
    } else {
        format!(" [{}]", opts.join(", "))
    };
    let _ = writeln!(out, "{pad}{label}{ty} {} = {}{opts};", f.name(), f.number());
}

fn print_message(out: &mut String, m: &DescriptorProto, indent: usize, proto3: bool) {
    let pad = "  ".repeat(indent);
    let inner = "  ".repeat(indent + 1);
    let _ = writeln!(out, "{pad}message {} {{", m.name());
    let mut fields: Vec<&FieldDescriptorProto> = m.field.iter().collect();
    fields.sort_by_key(|f| f.number());
    let mut printed_oneofs = Vec::new();
    for f in &fields {
        let real_oneof = f.oneof_index.filter(|_| !f.proto3_optional());
        match real_oneof {
            Some(oi) => {
                if printed_oneofs.contains(&oi) {
                    continue;
                }
                printed_oneofs.push(oi);
                let name = m
                    .oneof_decl
                    .get(oi as usize)
                    .map(|o| o.name())
                    .unwrap_or("oneof");
                let _ = writeln!(out, "{inner}oneof {name} {{");
                let deeper = "  ".repeat(indent + 2);
                for g in fields
                    .iter()
                    .filter(|g| g.oneof_index == Some(oi) && !g.proto3_optional())
                {
                    print_field(out, g, m, &deeper, proto3, true);
                }
                let _ = writeln!(out, "{inner}}}");
            }
            None => print_field(out, f, m, &inner, proto3, false),
        }
    }
    let mut ranges: Vec<(i32, i32)> = m
        .reserved_range
        .iter()
        .map(|r| (r.start(), r.end() - 1))
        .collect();
    ranges.sort();
    if !ranges.is_empty() {
        let parts: Vec<String> = ranges
            .iter()
            .map(|(a, b)| {
                if a == b {
                    a.to_string()
                } else {
                    format!("{a} to {b}")
                }
            })
            .collect();
        let _ = writeln!(out, "{inner}reserved {};", parts.join(", "));
    }
    if !m.reserved_name.is_empty() {
        let mut names: Vec<String> = m.reserved_name.iter().map(|n| quote(n)).collect();
        names.sort();
        let _ = writeln!(out, "{inner}reserved {};", names.join(", "));
    }
    for n in &m.nested_type {
        if n.options.as_ref().is_some_and(|o| o.map_entry()) {
            continue;
        }
        print_message(out, n, indent + 1, proto3);
    }
    for e in &m.enum_type {
        print_enum(out, e, indent + 1);
    }
    let _ = writeln!(out, "{pad}}}");
}

fn print_enum(out: &mut String, e: &EnumDescriptorProto, indent: usize) {
    let pad = "  ".repeat(indent);
    let inner = "  ".repeat(indent + 1);
    let _ = writeln!(out, "{pad}enum {} {{", e.name());
    if e.options.as_ref().is_some_and(|o| o.allow_alias()) {
        let _ = writeln!(out, "{inner}option allow_alias = true;");
    }
    for v in &e.value {
        let _ = writeln!(out, "{inner}{} = {};", v.name(), v.number());
    }
    let _ = writeln!(out, "{pad}}}");
}
