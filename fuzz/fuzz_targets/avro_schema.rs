//! Fuzz target: the registry's Avro schema JSON parser. Any input must give a schema or a
//! `SchemaError`, never a panic; a schema that parses must normalise, and its normal form must
//! parse again to the same normal form.

#![no_main]

use gatehouse_registry::schema::{NoReferences, ParsedSchema, SchemaType};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(schema) = ParsedSchema::parse(SchemaType::Avro, text, &[], &NoReferences) else {
        return;
    };
    let normal = schema.normalized_string();
    let again = ParsedSchema::parse(SchemaType::Avro, &normal, &[], &NoReferences)
        .expect("a normalised schema parses");
    assert_eq!(again.normalized_string(), normal, "normalisation is idempotent");
});
