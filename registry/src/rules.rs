//! Data-quality rules (Confluent data contracts) run on the gateway's produce path.
//!
//! A schema version's `ruleSet.domainRules` may hold `CONDITION` rules of type `CEL` (the
//! expression sees the decoded record as `message`) or `CEL_FIELD` (evaluated once per field
//! carrying one of the rule's tags, or every field when the rule has none, with `value`,
//! `name`, `fullName`, `tags` and `message` bound). Only enabled rules whose mode is `WRITE` or
//! `WRITEREAD` run ([`RuleSet::write_rules`]); `TRANSFORM` rules and other executors (`ENCRYPT`,
//! `JSONATA`, ...) are stored but not run. An expression may start with a guard,
//! `guard ; expr` (Confluent's form): when the guard is false the rule passes.
//!
//! Expressions are compiled once per cached schema ([`compile`]); the evaluation answers a
//! bool: `false`, any other type, or an evaluation error fails the rule. Failure reasons name
//! the rule, its expression and at most field names and types, never record values.

use std::sync::{Arc, LazyLock};

use cel::common::value::Val;
use cel::{Context, Env, ExecutionError, Program, Value as Cel};

use crate::contract::{Rule, RuleKind, RuleSet};
use crate::decode::{Datum, TagPatterns, visit_fields};

/// Longest rule expression accepted.
pub const MAX_EXPR_LEN: usize = 4096;
/// Deepest bracket nesting accepted in an expression (the parser recurses).
const MAX_EXPR_NESTING: usize = 32;
/// Longest expression quoted in error messages.
const QUOTED_EXPR_LEN: usize = 160;

static ENV: LazyLock<Arc<Env>> = LazyLock::new(|| Arc::new(Env::stdlib()));

/// The executor of a compiled rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RuleExecutor {
    /// `CEL`: one evaluation per record, `message` bound.
    Cel,
    /// `CEL_FIELD`: one evaluation per matching scalar field.
    CelField {
        /// Field tags the rule applies to (empty: every field).
        tags: Vec<String>,
    },
}

impl RuleExecutor {
    fn label(&self) -> &'static str {
        match self {
            RuleExecutor::Cel => "CEL",
            RuleExecutor::CelField { .. } => "CEL_FIELD",
        }
    }
}

/// A rule ready to run.
#[derive(Debug)]
pub struct CompiledRule {
    /// The rule's name.
    pub name: String,
    /// The expression as written.
    pub expr: String,
    /// Its executor.
    pub executor: RuleExecutor,
    /// The dead-letter topic of `onFailure: DLQ` (`params["dlq.topic"]`).
    pub dlq_topic: Option<String>,
    /// `onFailure: NONE`: a failure is ignored (Confluent's action that does nothing).
    pub ignore_failure: bool,
    guard: Option<Program>,
    program: Result<Program, String>,
}

/// Why a record failed a rule (no record values).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleFailure {
    /// The rule's name.
    pub rule: String,
    /// `CEL` or `CEL_FIELD`.
    pub executor: &'static str,
    /// The expression (shortened).
    pub expr: String,
    /// The field, for `CEL_FIELD` rules.
    pub field: Option<String>,
    /// `None`: the expression answered false; otherwise what went wrong.
    pub why: Option<String>,
    /// The expression does not compile.
    pub invalid: bool,
    /// `onFailure: DLQ` topic.
    pub dlq_topic: Option<String>,
}

/// Whether a rule is one the gateway runs on the write path.
fn runs_on_write(r: &Rule) -> bool {
    r.kind == RuleKind::Condition
        && matches!(r.rule_type.as_str(), "CEL" | "CEL_FIELD")
        && !r.disabled
        && r.mode.on_write()
}

/// Compiles the write-path CEL rules of a rule set (empty when there are none).
pub fn compile(rule_set: Option<&RuleSet>) -> Vec<CompiledRule> {
    let Some(rs) = rule_set else {
        return Vec::new();
    };
    rs.write_rules()
        .filter(|r| runs_on_write(r))
        .map(|r| {
            let expr = r.expr.clone().unwrap_or_default();
            let (guard, body) = split_guard(&expr);
            let guard = match guard.map(compile_expr) {
                Some(Ok(p)) => Some(p),
                Some(Err(e)) => {
                    return CompiledRule {
                        name: r.name.clone(),
                        expr: expr.clone(),
                        executor: executor(r),
                        dlq_topic: dlq_topic(r),
                        ignore_failure: ignores_failure(r),
                        guard: None,
                        program: Err(format!("guard: {e}")),
                    };
                }
                None => None,
            };
            CompiledRule {
                name: r.name.clone(),
                executor: executor(r),
                dlq_topic: dlq_topic(r),
                ignore_failure: ignores_failure(r),
                guard,
                program: compile_expr(body),
                expr,
            }
        })
        .collect()
}

/// Checks that every write-path CEL rule of `rule_set` compiles (for registration).
pub fn check_rule_set(rule_set: &RuleSet) -> Result<(), String> {
    for r in compile(Some(rule_set)) {
        if let Err(e) = &r.program {
            return Err(format!(
                "data-quality rule '{}' ({}: {}) does not compile: {e}",
                r.name,
                r.executor.label(),
                shorten(&r.expr)
            ));
        }
    }
    Ok(())
}

fn executor(r: &Rule) -> RuleExecutor {
    if r.rule_type == "CEL_FIELD" {
        RuleExecutor::CelField {
            tags: r.tags.iter().flatten().cloned().collect(),
        }
    } else {
        RuleExecutor::Cel
    }
}

/// The write-side action of `onFailure` (`"DLQ"` or `"ERROR,NONE"` for WRITEREAD rules).
fn on_failure_write(r: &Rule) -> Option<String> {
    r.on_failure
        .as_deref()?
        .split(',')
        .next()
        .map(|a| a.trim().to_ascii_uppercase())
}

fn ignores_failure(r: &Rule) -> bool {
    on_failure_write(r).as_deref() == Some("NONE")
}

fn dlq_topic(r: &Rule) -> Option<String> {
    if on_failure_write(r).as_deref() != Some("DLQ") {
        return None;
    }
    r.params
        .as_ref()?
        .get("dlq.topic")
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty())
}

/// Splits `guard ; expr` at the first `;` outside string literals.
fn split_guard(expr: &str) -> (Option<&str>, &str) {
    let mut quote: Option<u8> = None;
    let mut escaped = false;
    for (i, b) in expr.bytes().enumerate() {
        if escaped {
            escaped = false;
            continue;
        }
        match (quote, b) {
            (Some(_), b'\\') => escaped = true,
            (Some(q), c) if c == q => quote = None,
            (None, b'"' | b'\'') => quote = Some(b),
            (None, b';') => {
                let guard = expr[..i].trim();
                let body = &expr[i + 1..];
                return (if guard.is_empty() { None } else { Some(guard) }, body);
            }
            _ => {}
        }
    }
    (None, expr)
}

fn compile_expr(src: &str) -> Result<Program, String> {
    if src.trim().is_empty() {
        return Err("the expression is empty".into());
    }
    if src.len() > MAX_EXPR_LEN {
        return Err(format!("longer than {MAX_EXPR_LEN} bytes"));
    }
    let mut depth = 0usize;
    let mut max = 0usize;
    for b in src.bytes() {
        match b {
            b'(' | b'[' | b'{' => {
                depth += 1;
                max = max.max(depth);
            }
            b')' | b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    if max > MAX_EXPR_NESTING {
        return Err(format!("nested deeper than {MAX_EXPR_NESTING} brackets"));
    }
    let compiled = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| ENV.compile(src)));
    match compiled {
        Ok(Ok(p)) => Ok(p),
        Ok(Err(e)) => Err(e
            .to_string()
            .lines()
            .next()
            .unwrap_or("syntax error")
            .to_string()),
        Err(_) => Err("the CEL parser failed on this expression".into()),
    }
}

fn shorten(expr: &str) -> String {
    let e = expr.trim();
    if e.len() <= QUOTED_EXPR_LEN {
        return e.to_string();
    }
    let mut end = QUOTED_EXPR_LEN;
    while !e.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &e[..end])
}

/// Converts a decoded value for CEL: records and maps become maps with string keys.
pub fn to_cel(d: &Datum) -> Cel {
    match d {
        Datum::Null => Cel::Null,
        Datum::Bool(b) => Cel::Bool(*b),
        Datum::Int(i) => Cel::Int(*i),
        Datum::UInt(u) => Cel::UInt(*u),
        Datum::Double(f) => Cel::Float(*f),
        Datum::Str(s) => Cel::String(Arc::new(s.clone())),
        Datum::Bytes(b) => Cel::Bytes(Arc::new(b.clone())),
        Datum::List(items) => Cel::List(Arc::new(items.iter().map(to_cel).collect())),
        Datum::Map(entries) => {
            let m: std::collections::HashMap<String, Cel> = entries
                .iter()
                .map(|(k, v)| (k.clone(), to_cel(v)))
                .collect();
            Cel::Map(m.into())
        }
        Datum::Record(fields) => {
            let m: std::collections::HashMap<String, Cel> = fields
                .iter()
                .map(|f| (f.name.clone(), to_cel(&f.value)))
                .collect();
            Cel::Map(m.into())
        }
    }
}

fn val(v: Cel) -> Result<Box<dyn Val>, String> {
    v.try_into()
        .map_err(|_| "the record could not be given to CEL".to_string())
}

/// What went wrong, without values (CEL's own messages may quote them).
fn describe(e: &ExecutionError) -> String {
    match e {
        ExecutionError::NoSuchKey(k) => format!("no such key '{k}'"),
        ExecutionError::UndeclaredReference(r) => format!("undeclared reference '{r}'"),
        ExecutionError::NoSuchOverload(o) => o.to_string(),
        ExecutionError::FunctionError { function, .. } => {
            format!("function '{function}' failed")
        }
        ExecutionError::UnexpectedType { got, want } => {
            format!("unexpected type: got {got}, want {want}")
        }
        ExecutionError::InvalidArgumentCount { expected, actual } => {
            format!("invalid argument count: expected {expected}, got {actual}")
        }
        ExecutionError::DivisionByZero(_) => "division by zero".into(),
        ExecutionError::RemainderByZero(_) => "remainder by zero".into(),
        ExecutionError::Overflow(op, _, _) => format!("overflow in '{op}'"),
        ExecutionError::IndexOutOfBounds(_) => "index out of bounds".into(),
        ExecutionError::ValuesNotComparable(a, b) => {
            format!("a {} cannot be compared to a {}", a.type_of(), b.type_of())
        }
        _ => "evaluation error".into(),
    }
}

fn eval(p: &Program, ctx: &Context<'_, '_>) -> Result<bool, String> {
    match p.execute(ctx) {
        Ok(Cel::Bool(b)) => Ok(b),
        Ok(other) => Err(format!(
            "the expression answered a {} instead of a bool",
            other.type_of()
        )),
        Err(e) => Err(format!("evaluation failed: {}", describe(&e))),
    }
}

impl CompiledRule {
    fn failure(&self, field: Option<&str>, why: Option<String>, invalid: bool) -> Box<RuleFailure> {
        Box::new(RuleFailure {
            rule: self.name.clone(),
            executor: self.executor.label(),
            expr: shorten(&self.expr),
            field: field.map(str::to_string),
            why,
            invalid,
            dlq_topic: self.dlq_topic.clone(),
        })
    }

    /// Runs the guard and the expression in `ctx`: `Ok(())` passes (or the failure is ignored).
    fn check(&self, ctx: &Context<'_, '_>, field: Option<&str>) -> Result<(), Box<RuleFailure>> {
        match self.check_strict(ctx, field) {
            Err(_) if self.ignore_failure => Ok(()),
            r => r,
        }
    }

    fn check_strict(
        &self,
        ctx: &Context<'_, '_>,
        field: Option<&str>,
    ) -> Result<(), Box<RuleFailure>> {
        let program = match &self.program {
            Ok(p) => p,
            Err(e) => return Err(self.failure(field, Some(e.clone()), true)),
        };
        if let Some(g) = &self.guard {
            match eval(g, ctx) {
                Ok(false) => return Ok(()),
                Ok(true) => {}
                Err(why) => return Err(self.failure(field, Some(format!("guard: {why}")), false)),
            }
        }
        match eval(program, ctx) {
            Ok(true) => Ok(()),
            Ok(false) => Err(self.failure(field, None, false)),
            Err(why) => Err(self.failure(field, Some(why), false)),
        }
    }
}

/// Runs `rules` over a decoded record. `root_name` and `patterns` give fields their full names
/// and `metadata.tags`. The first failing rule is answered.
pub fn run(
    rules: &[CompiledRule],
    record: &Datum,
    root_name: &str,
    patterns: &TagPatterns,
) -> Result<(), Box<RuleFailure>> {
    if rules.is_empty() {
        return Ok(());
    }
    // The interpreter runs on record data: a panic in it refuses the record, nothing more.
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        run_rules(rules, record, root_name, patterns)
    }))
    .unwrap_or_else(|_| {
        Err(rules[0].failure(
            None,
            Some("the CEL interpreter failed on this record".into()),
            false,
        ))
    })
}

fn run_rules(
    rules: &[CompiledRule],
    record: &Datum,
    root_name: &str,
    patterns: &TagPatterns,
) -> Result<(), Box<RuleFailure>> {
    let message = val(to_cel(record)).map_err(|why| rules[0].failure(None, Some(why), false))?;
    let mut ctx = Context::with_env(ENV.clone());
    ctx.add_variable_as_val("message", message);
    for rule in rules {
        match &rule.executor {
            RuleExecutor::Cel => rule.check(&ctx, None)?,
            RuleExecutor::CelField { tags } => {
                if let Err(e) = &rule.program {
                    if rule.ignore_failure {
                        continue;
                    }
                    return Err(rule.failure(None, Some(e.clone()), true));
                }
                visit_fields(record, root_name, patterns, &mut |f| {
                    if f.in_collection || f.path.is_empty() {
                        return Ok(());
                    }
                    if !tags.is_empty() && !f.tags.iter().any(|t| tags.contains(t)) {
                        return Ok(());
                    }
                    let bind = |v: Cel| {
                        val(v).map_err(|why| rule.failure(Some(f.full_name), Some(why), false))
                    };
                    let mut scope = ctx.new_inner_scope();
                    scope.add_variable_as_val("value", bind(to_cel(f.value))?);
                    scope.add_variable_as_val("name", bind(Cel::from(f.name))?);
                    scope.add_variable_as_val("fullName", bind(Cel::from(f.full_name))?);
                    let tags: Vec<Cel> = f.tags.iter().map(|t| Cel::from(t.as_str())).collect();
                    scope.add_variable_as_val("tags", bind(Cel::from(tags))?);
                    rule.check(&scope, Some(f.full_name))
                })?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contract::RuleMode;
    use crate::decode::FieldDatum;

    fn rule(name: &str, ty: &str, expr: &str) -> Rule {
        Rule {
            name: name.into(),
            rule_type: ty.into(),
            expr: Some(expr.into()),
            ..Default::default()
        }
    }

    fn set(rules: Vec<Rule>) -> RuleSet {
        RuleSet {
            domain_rules: Some(rules),
            ..Default::default()
        }
    }

    fn order(amount: i64, sku: &str) -> Datum {
        Datum::Record(vec![
            FieldDatum {
                name: "sku".into(),
                tags: vec!["CODE".into()],
                value: Datum::Str(sku.into()),
            },
            FieldDatum {
                name: "amount".into(),
                tags: vec![],
                value: Datum::Int(amount),
            },
        ])
    }

    #[test]
    fn cel_pass_fail_and_guard() {
        let rs = set(vec![rule("positive", "CEL", "message.amount > 0")]);
        let c = compile(Some(&rs));
        assert!(run(&c, &order(5, "a"), "shop.Order", &Vec::new()).is_ok());
        let f = run(&c, &order(-5, "a"), "shop.Order", &Vec::new()).unwrap_err();
        assert_eq!((f.rule.as_str(), f.why.as_deref()), ("positive", None));
        // Guard false: skipped.
        let rs = set(vec![rule(
            "g",
            "CEL",
            "message.sku == 'x'; message.amount > 0",
        )]);
        let c = compile(Some(&rs));
        assert!(run(&c, &order(-5, "a"), "shop.Order", &Vec::new()).is_ok());
        assert!(run(&c, &order(-5, "x"), "shop.Order", &Vec::new()).is_err());
    }

    #[test]
    fn non_bool_errors_and_bad_expressions_fail() {
        let c = compile(Some(&set(vec![rule("n", "CEL", "message.amount")])));
        let f = run(&c, &order(5, "SECRETSKU"), "shop.Order", &Vec::new()).unwrap_err();
        assert!(
            f.why.as_deref().unwrap_or("").contains("instead of a bool"),
            "{f:?}"
        );
        let c = compile(Some(&set(vec![rule("m", "CEL", "message.missing > 1")])));
        let f = run(&c, &order(5, "SECRETSKU"), "shop.Order", &Vec::new()).unwrap_err();
        assert!(f.why.as_deref().unwrap_or("").contains("missing"), "{f:?}");
        let c = compile(Some(&set(vec![rule("cmp", "CEL", "message.sku > 3")])));
        let f = run(&c, &order(5, "SECRETSKU"), "shop.Order", &Vec::new()).unwrap_err();
        assert!(!format!("{f:?}").contains("SECRETSKU"), "{f:?}");
        let rs = set(vec![rule("bad", "CEL", "message.amount >")]);
        assert!(check_rule_set(&rs).unwrap_err().contains("'bad'"));
        let f = run(
            &compile(Some(&rs)),
            &order(5, "a"),
            "shop.Order",
            &Vec::new(),
        )
        .unwrap_err();
        assert!(f.invalid);
        let deep = format!("{}1{}", "(".repeat(100), ")".repeat(100));
        assert!(check_rule_set(&set(vec![rule("deep", "CEL", &deep)])).is_err());
    }

    #[test]
    fn only_enabled_write_conditions_run() {
        let mut read = rule("read", "CEL", "false");
        read.mode = RuleMode::Read;
        let mut off = rule("off", "CEL", "false");
        off.disabled = true;
        let mut transform = rule("t", "CEL", "false");
        transform.kind = RuleKind::Transform;
        let other = rule("enc", "ENCRYPT", "false");
        let mut both = rule("both", "CEL", "true");
        both.mode = RuleMode::Writeread;
        let mut ignored = rule("ignored", "CEL", "false");
        ignored.on_failure = Some("NONE".into());
        let c = compile(Some(&set(vec![read, off, transform, other, both, ignored])));
        assert_eq!(c.len(), 2);
        assert!(run(&c, &order(1, "a"), "R", &Vec::new()).is_ok());
    }

    #[test]
    fn cel_field_rules_use_tags() {
        let mut r = rule(
            "short",
            "CEL_FIELD",
            "size(value) < 3 && name == 'sku' && 'CODE' in tags",
        );
        r.tags = Some(["CODE".to_string()].into_iter().collect());
        r.on_failure = Some("DLQ".into());
        r.params = Some(
            [("dlq.topic".to_string(), "bad".to_string())]
                .into_iter()
                .collect(),
        );
        let c = compile(Some(&set(vec![r])));
        assert!(run(&c, &order(1, "ab"), "shop.Order", &Vec::new()).is_ok());
        let f = run(&c, &order(1, "abcd"), "shop.Order", &Vec::new()).unwrap_err();
        assert_eq!(f.field.as_deref(), Some("shop.Order.sku"));
        assert_eq!(f.dlq_topic.as_deref(), Some("bad"));
    }
}
