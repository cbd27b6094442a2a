//! Output formats and exit codes shared by every `gatehouse` client command (`topic`, `group`,
//! `user`, `acl`, `role`, `key`, `cluster`, `schema`, `audit status|events`, `doctor`).
//!
//! `--output table|json` ([`OutputArgs`], default `table`): `table` prints aligned columns
//! under an upper-case header row ([`print_table`]) or, for one object, aligned `field: value`
//! lines ([`print_fields`]); `json` prints the server's answer pretty-printed, unchanged
//! ([`print_json`]). `--json` is accepted everywhere as a hidden alias of `--output json` (the
//! `key`, `user list` and `acl list` commands had it first, and scripts use it).
//!
//! The exit codes are the same for every client command (docs/cli.md, "Exit codes"):
//! [`EXIT_OK`], [`EXIT_FAILED`], [`EXIT_USAGE`] and [`EXIT_DENIED`]. Usage errors found by
//! clap itself exit 2 as well.

use clap::{Args, ValueEnum};
use serde_json::Value;

/// Success (for `schema check`: compatible; for `acl explain`: ALLOW).
pub const EXIT_OK: i32 = 0;
/// The server refused or failed the request (401, 403, 404, 409, 422, 5xx; a Kafka error),
/// or a check found a problem (`schema check`: incompatible; `doctor`, `audit verify`).
pub const EXIT_FAILED: i32 = 1;
/// Usage errors (clap's own included), a missing password variable, an unreachable server or
/// a failed login over the Kafka protocol: nothing was decided by the server.
pub const EXIT_USAGE: i32 = 2;
/// The question was answered, and the answer is no: `acl explain` for a request the policy
/// denies.
pub const EXIT_DENIED: i32 = 3;

/// How results are printed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Output {
    /// Aligned columns under a header row.
    Table,
    /// The server's JSON, pretty-printed.
    Json,
}

/// `--output table|json`, and the hidden `--json` alias of `--output json`.
#[derive(Args, Clone, Copy, Debug)]
pub struct OutputArgs {
    /// Output format: table (aligned columns under a header) or json (the answer as the API
    /// returned it).
    #[arg(long, value_enum, default_value_t = Output::Table)]
    output: Output,
    /// Same as --output json (kept for scripts).
    #[arg(long, hide = true)]
    json: bool,
}

impl Default for OutputArgs {
    fn default() -> Self {
        OutputArgs {
            output: Output::Table,
            json: false,
        }
    }
}

impl OutputArgs {
    /// The chosen format (`--json` wins as `--output json`).
    pub fn format(&self) -> Output {
        if self.json { Output::Json } else { self.output }
    }

    /// Whether JSON was asked for.
    pub fn is_json(&self) -> bool {
        self.format() == Output::Json
    }
}

/// Prints JSON to stdout, pretty-printed.
pub fn print_json(v: &Value) {
    match serde_json::to_string_pretty(v) {
        Ok(s) => println!("{s}"),
        Err(_) => println!("{v}"),
    }
}

/// A JSON value as a table cell: strings without quotes, `-` for null or missing.
pub fn cell(v: Option<&Value>) -> String {
    match v {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => "-".to_string(),
        Some(other) => other.to_string(),
    }
}

/// Rows of `v[key]` (an array of objects) as cells of the fields `cols`.
pub fn rows_of(v: &Value, key: &str, cols: &[&str]) -> Vec<Vec<String>> {
    v[key]
        .as_array()
        .into_iter()
        .flatten()
        .map(|row| cols.iter().map(|c| cell(row.get(*c))).collect())
        .collect()
}

/// Rows as aligned columns under a header; the last column is not padded.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (w, cell) in widths.iter_mut().zip(r) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: &mut dyn Iterator<Item = &str>| {
        let cells: Vec<&str> = cells.collect();
        let last = cells.len().min(widths.len()).saturating_sub(1);
        let mut text = String::new();
        for (i, (cell, w)) in cells.iter().zip(&widths).enumerate() {
            // One line per row: line breaks inside a value would break the columns.
            let cell = cell.replace(['\n', '\r'], " ");
            text.push_str(&cell);
            if i < last {
                let pad = w.saturating_sub(cell.chars().count()) + 2;
                text.extend(std::iter::repeat_n(' ', pad));
            }
        }
        out.push_str(text.trim_end());
        out.push('\n');
    };
    line(&mut header.iter().copied());
    for r in rows {
        line(&mut r.iter().map(String::as_str));
    }
    out
}

/// Prints [`table`] to stdout.
pub fn print_table(header: &[&str], rows: &[Vec<String>]) {
    print!("{}", table(header, rows));
}

/// One object as aligned `field: value` lines.
pub fn fields(pairs: &[(&str, String)]) -> String {
    let width = pairs
        .iter()
        .map(|(k, _)| k.chars().count() + 1)
        .max()
        .unwrap_or(0);
    let mut out = String::new();
    for (k, v) in pairs {
        let label = format!("{k}:");
        out.push_str(format!("{label:<width$}  {v}").trim_end());
        out.push('\n');
    }
    out
}

/// Prints [`fields`] to stdout.
pub fn print_fields(pairs: &[(&str, String)]) {
    print!("{}", fields(pairs));
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;
    use serde_json::json;

    #[test]
    fn tables_align_under_the_header() {
        let t = table(
            &["NAME", "N", "STATE"],
            &[
                vec!["a".into(), "10".into(), "ok".into()],
                vec!["long-name".into(), "2".into(), "multi\nline".into()],
            ],
        );
        assert_eq!(
            t,
            "NAME       N   STATE\na          10  ok\nlong-name  2   multi line\n"
        );
        assert_eq!(table(&["ONLY"], &[]), "ONLY\n");
    }

    #[test]
    fn fields_align() {
        assert_eq!(
            fields(&[("id", "7".into()), ("state", "active".into())]),
            "id:     7\nstate:  active\n"
        );
    }

    #[test]
    fn cells() {
        assert_eq!(cell(Some(&json!("x"))), "x");
        assert_eq!(cell(Some(&json!(3))), "3");
        assert_eq!(cell(Some(&Value::Null)), "-");
        assert_eq!(cell(None), "-");
        let v = json!({"r": [{"a": 1, "b": "x"}, {"a": 2}]});
        assert_eq!(
            rows_of(&v, "r", &["a", "b"]),
            vec![vec!["1", "x"], vec!["2", "-"]]
        );
    }

    #[derive(Parser)]
    struct T {
        #[command(flatten)]
        out: OutputArgs,
    }

    #[test]
    fn json_is_an_alias_of_output_json() {
        let p = |args: &[&str]| T::try_parse_from(args).map(|t| t.out.format());
        assert_eq!(p(&["t"]).ok(), Some(Output::Table));
        assert_eq!(p(&["t", "--output", "json"]).ok(), Some(Output::Json));
        assert_eq!(p(&["t", "--json"]).ok(), Some(Output::Json));
        assert_eq!(p(&["t", "--output", "table"]).ok(), Some(Output::Table));
        assert!(p(&["t", "--output", "yaml"]).is_err());
    }
}
