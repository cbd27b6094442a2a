//! `GET/POST /console/access/explain`: why would the gateway allow or deny this? The form's
//! answer comes from `POST /v1/authz/explain`, called as the signed-in user.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};

use axum::body::Bytes;
use axum::extract::{ConnectInfo, Extension, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::Response;
use serde_json::{Value, json};

use super::super::{
    AdminState, Me, Nav, Store, api, current, document, esc, html, message, parse_form,
    posted_form, relogin, section_error, table, text,
};
use super::{checked, select};

/// Resource types offered by the form: (value sent to the API, label).
const RESOURCE_TYPES: [(&str, &str); 7] = [
    ("topic", "Topic"),
    ("group", "Consumer group"),
    ("cluster", "Cluster (kafka-cluster)"),
    ("transactional_id", "Transactional id"),
    ("subject", "Schema subject"),
    ("delegation_token", "Delegation token"),
    ("user", "User"),
];

/// Operations offered by the form.
const OPERATIONS: [(&str, &str); 11] = [
    ("READ", "READ"),
    ("WRITE", "WRITE"),
    ("CREATE", "CREATE"),
    ("DELETE", "DELETE"),
    ("ALTER", "ALTER"),
    ("DESCRIBE", "DESCRIBE"),
    ("CLUSTER_ACTION", "CLUSTER_ACTION"),
    ("DESCRIBE_CONFIGS", "DESCRIBE_CONFIGS"),
    ("ALTER_CONFIGS", "ALTER_CONFIGS"),
    ("IDEMPOTENT_WRITE", "IDEMPOTENT_WRITE"),
    ("ALL", "ALL"),
];

/// The form's fields (kept on an error so the user can correct them).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct ExplainForm {
    principal: String,
    resource_type: String,
    resource_name: String,
    operation: String,
    host: String,
}

impl ExplainForm {
    fn from_map(f: &BTreeMap<String, String>) -> Self {
        let get = |k: &str| f.get(k).map(|v| v.trim().to_string()).unwrap_or_default();
        Self {
            principal: get("principal"),
            resource_type: get("resource_type"),
            resource_name: get("resource_name"),
            operation: get("operation"),
            host: get("host"),
        }
    }

    /// Checks every field; the API request body, or what is wrong.
    fn validate(&self) -> Result<Value, String> {
        checked("The principal", &self.principal, 256)?;
        let Some((kind, name)) = self.principal.split_once(':') else {
            return Err(
                "Enter the principal as Type:name, e.g. User:alice (User:* for everyone).".into(),
            );
        };
        if kind.is_empty() || name.is_empty() {
            return Err(
                "Enter the principal as Type:name, e.g. User:alice (User:* for everyone).".into(),
            );
        }
        if !RESOURCE_TYPES.iter().any(|(v, _)| *v == self.resource_type) {
            return Err("Choose a resource type from the list.".into());
        }
        if !OPERATIONS.iter().any(|(v, _)| *v == self.operation) {
            return Err("Choose an operation from the list.".into());
        }
        checked("The resource name", &self.resource_name, 1024)?;
        let cluster = self.resource_type == "cluster";
        if self.resource_name.is_empty() && !cluster {
            return Err("Enter the resource name (a topic, group, subject, ...).".into());
        }
        if cluster && !self.resource_name.is_empty() && self.resource_name != "kafka-cluster" {
            return Err("The only cluster resource is kafka-cluster.".into());
        }
        if !self.host.is_empty() && self.host != "*" && self.host.parse::<IpAddr>().is_err() {
            return Err(
                "The client address must be an IP address (or empty for any address).".into(),
            );
        }
        let mut body = json!({
            "principal": self.principal,
            "resource_type": self.resource_type,
            "operation": self.operation,
        });
        if !self.resource_name.is_empty() {
            body["resource_name"] = json!(self.resource_name);
        }
        if !self.host.is_empty() {
            body["host"] = json!(self.host);
        }
        Ok(body)
    }
}

fn form_html(f: &ExplainForm, csrf: &str) -> String {
    let rtype = if f.resource_type.is_empty() {
        "topic"
    } else {
        &f.resource_type
    };
    let op = if f.operation.is_empty() {
        "READ"
    } else {
        &f.operation
    };
    format!(
        "<form class=\"card\" id=\"explain-form\" method=\"post\" action=\"/console/access/explain\">\
         <h2>Would the gateway allow this?</h2>\
         <input type=\"hidden\" name=\"csrf\" value=\"{}\">\
         <label>Principal <input name=\"principal\" id=\"principal\" value=\"{}\" required \
         maxlength=\"256\" placeholder=\"User:alice\"></label>\
         <label>Resource type {}</label>\
         <label>Resource name <input name=\"resource_name\" id=\"resource_name\" value=\"{}\" \
         maxlength=\"1024\" placeholder=\"orders\"></label>\
         <label>Operation {}</label>\
         <label>Client address (optional) <input name=\"host\" id=\"host\" value=\"{}\" \
         maxlength=\"64\" placeholder=\"any address\"></label>\
         <button type=\"submit\">Explain</button>\
         <p class=\"hint\">The answer is the gateway's own authorizer's, for these bindings now: \
         a DENY binding wins over any ALLOW, and without a matching ALLOW the answer is no. \
         Without a client address only bindings for every host (*) apply.</p></form>",
        esc(csrf),
        esc(&f.principal),
        select("resource_type", &RESOURCE_TYPES, rtype),
        esc(&f.resource_name),
        select("operation", &OPERATIONS, op),
        esc(&f.host),
    )
}

fn bindings_table(id: &str, list: &Value) -> String {
    let rows: Vec<Vec<String>> = list
        .as_array()
        .map(|items| {
            items
                .iter()
                .map(|b| {
                    let source = match (b.get("role").and_then(Value::as_str), b.get("scope")) {
                        (Some(role), Some(scope)) => {
                            format!("role {role} on {}", scope.as_str().unwrap_or_default())
                        }
                        _ => text(b, "source"),
                    };
                    vec![
                        text(b, "permission"),
                        source,
                        text(b, "principal"),
                        text(b, "host"),
                        text(b, "resource_type"),
                        text(b, "resource_name"),
                        text(b, "pattern_type"),
                        text(b, "operation"),
                    ]
                })
                .collect()
        })
        .unwrap_or_default();
    table(
        id,
        &[
            "Permission",
            "Source",
            "Principal",
            "Host",
            "Resource type",
            "Resource",
            "Pattern",
            "Operation",
        ],
        &rows,
        "None.",
    )
}

/// The answer of `POST /v1/authz/explain`, with the decision large.
fn result_html(a: &Value) -> String {
    let allowed = a.get("decision").and_then(Value::as_str) == Some("allow");
    let (class, word) = if allowed {
        ("allow", "ALLOWED")
    } else {
        ("deny", "DENIED")
    };
    let req = a.get("request").cloned().unwrap_or(Value::Null);
    let mut out = format!(
        "<section class=\"card wide\" id=\"explain-result\"><h2>Decision</h2>\
         <p class=\"decision {class}\" id=\"explain-decision\">{word}</p>\
         <p class=\"muted\" id=\"explain-request\">{} {} on {} {} from {}</p>\
         <p id=\"explain-reason\">{}</p>",
        esc(&text(&req, "principal")),
        esc(&text(&req, "operation")),
        esc(&text(&req, "resource_type")),
        esc(&text(&req, "resource_name")),
        esc(&match text(&req, "host").as_str() {
            "*" => "any address".to_string(),
            h => h.to_string(),
        }),
        esc(&text(a, "reason")),
    );
    let matched = a.get("matched").cloned().unwrap_or(Value::Null);
    if matched.as_array().is_some_and(|m| !m.is_empty()) {
        out.push_str("<h3>The binding that decided</h3>");
        out.push_str(&bindings_table("explain-matched", &matched));
    } else if !allowed {
        out.push_str("<p class=\"hint\">No binding decided: the gateway denies by default.</p>");
    }
    if let Some(o) = a
        .get("overridden")
        .filter(|o| o.as_array().is_some_and(|o| !o.is_empty()))
    {
        out.push_str("<h3>ALLOW bindings overridden by the DENY</h3>");
        out.push_str(&bindings_table("explain-overridden", o));
    }
    out.push_str(&format!(
        "<p class=\"hint\">{} binding(s) considered (the principal's own and those for User:*). \
         This check is recorded in the audit trail (authz.explain).</p></section>",
        esc(&text(a, "considered"))
    ));
    out
}

fn render(me: &Me, form: &ExplainForm, result: &str, status: StatusCode) -> Response {
    let mut body =
        String::from("<p><a href=\"/console/access\">Back to users &amp; access</a></p>");
    body.push_str(result);
    body.push_str(&form_html(form, &me.session.csrf));
    html(
        status,
        document(
            "Explain an access decision",
            Nav::Access,
            Some(&me.header()),
            &body,
        ),
    )
}

/// `GET /console/access/explain[?principal&resource_type&resource_name&operation&host]`: the
/// form, pre-filled from the query.
pub(super) async fn page(
    Extension(store): Extension<Store>,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    let me = match current(&store, &headers) {
        Ok(m) => m,
        Err(r) => return *r,
    };
    let query = parse_form(uri.query().unwrap_or_default().as_bytes()).unwrap_or_default();
    let mut form = ExplainForm::from_map(&query);
    // Only known choices are kept from a link; free text is escaped when shown.
    if !RESOURCE_TYPES.iter().any(|(v, _)| *v == form.resource_type) {
        form.resource_type = String::new();
    }
    if !OPERATIONS.iter().any(|(v, _)| *v == form.operation) {
        form.operation = String::new();
    }
    render(&me, &form, "", StatusCode::OK)
}

/// `POST /console/access/explain`: asks `POST /v1/authz/explain` as the user.
pub(super) async fn run(
    State(s): State<AdminState>,
    Extension(store): Extension<Store>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (me, f) = match posted_form(&store, &headers, &body) {
        Ok(x) => x,
        Err(r) => return *r,
    };
    let form = ExplainForm::from_map(&f);
    let request = match form.validate() {
        Ok(b) => b,
        Err(m) => {
            return render(
                &me,
                &form,
                &message("error", &m),
                StatusCode::UNPROCESSABLE_ENTITY,
            );
        }
    };
    let answer = api(crate::admin::explain::explain(
        State(s),
        ConnectInfo(peer),
        me.auth(),
        Bytes::from(request.to_string()),
    )
    .await)
    .await;
    match answer {
        Ok(a) => render(&me, &form, &result_html(&a), StatusCode::OK),
        Err(e) if e.status == StatusCode::UNAUTHORIZED => relogin(&store, &me),
        Err(e) => {
            let status = if e.status.is_client_error() {
                e.status
            } else {
                StatusCode::BAD_GATEWAY
            };
            render(
                &me,
                &form,
                &format!(
                    "<section class=\"card wide\" id=\"explain-result\">{}</section>",
                    section_error(&e)
                ),
                status,
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form() -> ExplainForm {
        ExplainForm {
            principal: "User:bob".into(),
            resource_type: "topic".into(),
            resource_name: "orders".into(),
            operation: "READ".into(),
            host: String::new(),
        }
    }

    #[test]
    fn the_form_is_validated() {
        let body = form().validate().expect("valid");
        assert_eq!(
            body,
            json!({"principal": "User:bob", "resource_type": "topic",
                   "resource_name": "orders", "operation": "READ"})
        );
        let cluster = ExplainForm {
            resource_type: "cluster".into(),
            resource_name: String::new(),
            operation: "IDEMPOTENT_WRITE".into(),
            host: "10.0.0.1".into(),
            ..form()
        };
        let body = cluster.validate().expect("cluster without a name");
        assert_eq!(body["host"], "10.0.0.1");
        assert!(body.get("resource_name").is_none());
        for (bad, why) in [
            (
                ExplainForm {
                    principal: "bob".into(),
                    ..form()
                },
                "Type:name",
            ),
            (
                ExplainForm {
                    principal: "User:".into(),
                    ..form()
                },
                "Type:name",
            ),
            (
                ExplainForm {
                    resource_type: "table".into(),
                    ..form()
                },
                "resource type",
            ),
            (
                ExplainForm {
                    operation: "FLY".into(),
                    ..form()
                },
                "operation",
            ),
            (
                ExplainForm {
                    resource_name: String::new(),
                    ..form()
                },
                "resource name",
            ),
            (
                ExplainForm {
                    resource_type: "cluster".into(),
                    resource_name: "other".into(),
                    ..form()
                },
                "kafka-cluster",
            ),
            (
                ExplainForm {
                    host: "example.com".into(),
                    ..form()
                },
                "IP address",
            ),
            (
                ExplainForm {
                    resource_name: "a\u{0}b".into(),
                    ..form()
                },
                "control characters",
            ),
        ] {
            let e = bad.validate().expect_err(why);
            assert!(e.contains(why), "{bad:?}: {e}");
        }
    }

    #[test]
    fn results_show_the_decision_and_escape_everything() {
        let a = json!({
            "decision": "deny",
            "reason": "DENIED by the DENY binding <script>",
            "matched": [{"source": "acl", "principal": "User:<b>x</b>", "host": "*",
                "resource_type": "TOPIC", "resource_name": "t\"><img>", "pattern_type": "LITERAL",
                "operation": "READ", "permission": "DENY", "role": null, "scope": null}],
            "overridden": [{"source": "role", "principal": "User:x", "host": "*",
                "resource_type": "TOPIC", "resource_name": "t", "pattern_type": "PREFIXED",
                "operation": "READ", "permission": "ALLOW", "role": "developer-read",
                "scope": "Topic:t (PREFIXED)"}],
            "considered": 2,
            "request": {"principal": "User:x", "resource_type": "TOPIC", "resource_name": "t",
                "operation": "READ", "host": "*"}
        });
        let h = result_html(&a);
        assert!(h.contains("id=\"explain-decision\">DENIED<"), "{h}");
        assert!(!h.contains("<script>") && !h.contains("<img>") && !h.contains("<b>x"));
        assert!(h.contains("explain-matched") && h.contains("explain-overridden"));
        assert!(h.contains("role developer-read on Topic:t (PREFIXED)"));
        assert!(h.contains("from any address"));
        let allow = json!({"decision": "allow", "reason": "ALLOWED by ...", "matched": [],
            "overridden": [], "considered": 0, "request": {}});
        assert!(result_html(&allow).contains(">ALLOWED<"));
        let none = json!({"decision": "deny", "reason": "DENIED by default: no binding allows it",
            "matched": [], "overridden": [], "considered": 0, "request": {}});
        let h = result_html(&none);
        assert!(h.contains("denies by default") && !h.contains("explain-matched"));
    }
}
