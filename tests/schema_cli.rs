//! End-to-end: `gatehouse schema register|check|get|list|delete` (the real binary) against a
//! registry started in process (`gatehouse_registry::start`) over the real broker: exit codes
//! (0 ok / compatible, 1 incompatible or refused, 2 usage or connection errors) and output.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;

const V1: &str =
    r#"{"type":"record","name":"User","namespace":"cli","fields":[{"name":"id","type":"long"}]}"#;
const V2_OK: &str = r#"{"type":"record","name":"User","namespace":"cli","fields":[{"name":"id","type":"long"},{"name":"email","type":["null","string"],"default":null}]}"#;
const V2_BAD: &str = r#"{"type":"record","name":"User","namespace":"cli","fields":[{"name":"id","type":"long"},{"name":"age","type":"int"}]}"#;
const PROTO: &str = "syntax = \"proto3\";\npackage cli;\nmessage Order {\n  string id = 1;\n}\n";

/// Runs `gatehouse schema ARGS` with the registry URL in the environment.
fn schema(url: &str, args: &[&str]) -> (i32, String, String) {
    let out: Output = Command::new(env!("CARGO_BIN_EXE_gatehouse"))
        .arg("schema")
        .args(args)
        .env("GATEHOUSE_REGISTRY_URL", url)
        .env_remove("GATEHOUSE_REGISTRY_USER")
        .env_remove("GATEHOUSE_REGISTRY_PASSWORD")
        .env_remove("GATEHOUSE_REGISTRY_CA_CERT")
        .output()
        .expect("run gatehouse");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    eprintln!("$ gatehouse schema {}\n{stdout}{stderr}", args.join(" "));
    (out.status.code().unwrap_or(-1), stdout, stderr)
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p.to_str().unwrap().to_string()
}

#[test]
fn schema_cli_against_registry() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let broker = common::Broker::start();
    let reg = common::start_registry(&rt, &broker.bootstrap());
    let url = format!("http://{}", reg.local_addr());
    let dir = tempfile::tempdir().unwrap();
    let v1 = write(dir.path(), "v1.avsc", V1);
    let v2_ok = write(dir.path(), "v2.avsc", V2_OK);
    let v2_bad = write(dir.path(), "bad.avsc", V2_BAD);
    let proto = write(dir.path(), "order.proto", PROTO);

    // The subcommand must be wired into main.rs.
    let (code, _, err) = schema(&url, &["--help"]);
    assert_eq!(
        code, 0,
        "`gatehouse schema` is not wired into src/main.rs: {err}"
    );

    // register
    let (code, out, _) = schema(&url, &["register", "users-value", "--file", &v1]);
    assert_eq!(code, 0);
    assert!(out.starts_with("registered users-value: id "), "{out}");
    let (code, out, _) = schema(
        &url,
        &[
            "register",
            "orders-value",
            "--file",
            &proto,
            "--output",
            "json",
        ],
    );
    assert_eq!(code, 0);
    let proto_id = serde_json::from_str::<Value>(&out).unwrap()["id"]
        .as_i64()
        .unwrap();

    // check: compatible (0), incompatible (1, names the difference type), bad input (2)
    let (code, out, _) = schema(&url, &["check", "users-value", "--file", &v2_ok]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("compatible with users-value version latest"),
        "{out}"
    );
    let (code, out, _) = schema(
        &url,
        &["check", "users-value", "--file", &v2_bad, "--version", "1"],
    );
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("INCOMPATIBLE"), "{out}");
    assert!(out.contains("READER_FIELD_MISSING_DEFAULT_VALUE"), "{out}");
    let (code, out, _) = schema(
        &url,
        &[
            "check",
            "users-value",
            "--file",
            &v2_bad,
            "--output",
            "json",
        ],
    );
    assert_eq!(code, 1);
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["is_compatible"], Value::Bool(false));
    let (code, _, err) = schema(&url, &["check", "nobody-value", "--file", &v1]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("40401"), "{err}");
    let (code, _, err) = schema(
        &url,
        &["check", "users-value", "--file", "/nonexistent.avsc"],
    );
    assert_eq!(code, 2);
    assert!(err.contains("cannot read schema file"), "{err}");

    // register v2, get
    let (code, _, _) = schema(&url, &["register", "users-value", "--file", &v2_ok]);
    assert_eq!(code, 0);
    let (code, out, _) = schema(&url, &["get", "users-value", "--output", "json"]);
    assert_eq!(code, 0);
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["version"], 2);
    let (code, out, _) = schema(&url, &["get", "users-value", "--version", "1"]);
    assert_eq!(code, 0);
    assert!(
        out.lines()
            .any(|l| l.split_whitespace().eq(["version:", "1"])),
        "{out}"
    );
    assert!(out.contains(r#""name":"User""#), "{out}");
    let (code, out, _) = schema(&url, &["get", "--id", &proto_id.to_string()]);
    assert_eq!(code, 0);
    assert!(
        out.contains("PROTOBUF") && out.contains("message Order"),
        "{out}"
    );
    let (code, _, err) = schema(&url, &["get", "--id", "424242"]);
    assert_eq!(code, 1);
    assert!(err.contains("40403"), "{err}");

    // list
    let (code, out, _) = schema(&url, &["list"]);
    assert_eq!(code, 0);
    let lines: Vec<&str> = out.lines().collect();
    assert!(
        lines.contains(&"users-value") && lines.contains(&"orders-value"),
        "{out}"
    );

    // delete: version, subject soft then permanent
    let (code, out, _) = schema(&url, &["delete", "users-value", "--version", "2"]);
    assert_eq!(code, 0);
    assert!(out.contains("deleted users-value version(s) 2"), "{out}");
    let (code, _, err) = schema(&url, &["delete", "orders-value", "--permanent"]);
    assert_eq!(code, 1, "hard delete before soft delete is refused");
    assert!(err.contains("40405"), "{err}");
    let (code, _, _) = schema(&url, &["delete", "orders-value"]);
    assert_eq!(code, 0);
    let (code, out, _) = schema(&url, &["delete", "orders-value", "--permanent"]);
    assert_eq!(code, 0);
    assert!(out.contains("permanently deleted orders-value"), "{out}");
    let (_, out, _) = schema(&url, &["list", "--output", "json"]);
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v, serde_json::json!(["users-value"]));

    // usage and connection errors exit 2
    let (code, _, err) = schema("https://127.0.0.1:1", &["list"]);
    assert_eq!(code, 2);
    assert!(
        err.contains("cannot connect") || err.contains("no system root certificates"),
        "{err}"
    );
    let (code, _, err) = schema(&url, &["list", "--ca-cert", "/nonexistent.pem"]);
    assert_eq!(code, 2);
    assert!(err.contains("needs an https://"), "{err}");
    let (code, _, err) = schema(&url, &["list", "--user", "alice"]);
    assert_eq!(code, 2);
    assert!(err.contains("GATEHOUSE_REGISTRY_PASSWORD"), "{err}");
    let dead = format!("http://127.0.0.1:{}", common::free_port());
    let (code, _, err) = schema(&dead, &["list"]);
    assert_eq!(code, 2);
    assert!(err.contains("cannot connect"), "{err}");
    let (code, _, _) = schema(&url, &["get"]);
    assert_eq!(code, 2, "clap usage error");

    rt.block_on(reg.shutdown()).unwrap();
}
