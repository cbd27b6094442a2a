//! End-to-end OIDC test against a real third-party OpenID Provider: npm `oidc-provider`
//! (panva), started from `tests/oidc/issuer.mjs` at the workspace root.
//!
//! CI installs the provider with `npm ci --prefix tests/oidc`; without `node_modules` the test
//! runs `npm install --no-audit --no-fund` there first. Without `node` on PATH it is skipped
//! with a printed notice.

use std::io::{BufRead, BufReader, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, SystemTime};

use gatehouse_policy::{OidcConfig, OidcValidator, Principal, TokenValidator};

const CLIENT_ID: &str = "gateway-test";
const CLIENT_SECRET: &str = "secret-123";
const AUDIENCE: &str = "urn:kafka:gateway";
const OTHER_AUDIENCE: &str = "urn:kafka:other";

/// The node process running the issuer; killed when dropped (also when the test panics).
struct Issuer {
    child: Child,
    url: String,
}

impl Drop for Issuer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn issuer_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/oidc")
}

fn node_available() -> bool {
    Command::new("node")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn ensure_installed(dir: &Path) {
    if dir
        .join("node_modules/oidc-provider/package.json")
        .is_file()
    {
        return;
    }
    eprintln!(
        "tests/oidc/node_modules missing: running `npm install --no-audit --no-fund` in {}",
        dir.display()
    );
    let status = Command::new("npm")
        .args(["install", "--no-audit", "--no-fund"])
        .current_dir(dir)
        .status()
        .expect("run npm (node is on PATH but npm is not?)");
    assert!(
        status.success(),
        "npm install in tests/oidc failed: {status}"
    );
}

/// Starts `node tests/oidc/issuer.mjs 0` (the script binds a free port on 127.0.0.1 itself, so
/// there is no race between choosing a port and listening) and waits for `READY <issuer>`.
fn start_issuer() -> Issuer {
    let dir = issuer_dir();
    ensure_installed(&dir);
    let mut child = Command::new("node")
        .arg(dir.join("issuer.mjs"))
        .arg("0")
        .current_dir(&dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn node tests/oidc/issuer.mjs");
    let stdout = child.stdout.take().expect("issuer stdout");
    // Wrap right away so the process is killed even if waiting below panics.
    let mut issuer = Issuer {
        child,
        url: String::new(),
    };

    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if let Some(url) = line.strip_prefix("READY ") {
                let _ = tx.send(url.trim().to_string());
            }
            // Keep draining so the child never blocks on a full pipe.
        }
    });
    issuer.url = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("issuer did not print READY within 30 s");
    issuer
}

/// client_credentials grant with client_secret_basic; `resource` selects the audience.
async fn client_credentials_token(issuer: &Issuer, resource: Option<&str>) -> String {
    let mut form = "grant_type=client_credentials&scope=kafka".to_string();
    if let Some(resource) = resource {
        // The resource indicators used here are URL-safe apart from ':'.
        form.push_str("&resource=");
        form.push_str(&resource.replace(':', "%3A"));
    }
    let response = reqwest::Client::new()
        .post(format!("{}/token", issuer.url))
        .basic_auth(CLIENT_ID, Some(CLIENT_SECRET))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form)
        .send()
        .await
        .expect("POST /token");
    let status = response.status();
    let body = response.text().await.expect("token response body");
    assert!(
        status.is_success(),
        "token endpoint answered {status}: {body}"
    );
    let json: serde_json::Value = serde_json::from_str(&body).expect("token response JSON");
    json["access_token"]
        .as_str()
        .expect("access_token in token response")
        .to_string()
}

#[tokio::test]
async fn validates_client_credentials_tokens_from_oidc_provider() {
    if !node_available() {
        // Written to the raw stderr handle so libtest's output capture does not hide it.
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED validates_client_credentials_tokens_from_oidc_provider: `node` is not on PATH"
        );
        return;
    }
    let issuer = start_issuer();

    let validator = OidcValidator::discover(OidcConfig::new(issuer.url.clone(), AUDIENCE))
        .await
        .expect("discover the oidc-provider issuer");
    assert_eq!(validator.jwks_uri(), format!("{}/jwks", issuer.url));

    // Default resource → aud urn:kafka:gateway, sub = client id, RS256, typ at+jwt.
    let token = client_credentials_token(&issuer, None).await;
    let validated = validator.validate(&token).await.expect("token is valid");
    assert_eq!(validated.principal, Principal::user(CLIENT_ID));
    let lifetime = validated
        .expires_at
        .duration_since(SystemTime::now())
        .expect("expires in the future");
    assert!(
        lifetime <= Duration::from_secs(300) && lifetime > Duration::from_secs(200),
        "accessTokenTTL is 300 s, got {lifetime:?}"
    );

    // Asking for the resource explicitly gives the same audience.
    let token = client_credentials_token(&issuer, Some(AUDIENCE)).await;
    validator.validate(&token).await.expect("token is valid");

    // A token minted for another resource server is refused.
    let other = client_credentials_token(&issuer, Some(OTHER_AUDIENCE)).await;
    let err = validator
        .validate(&other)
        .await
        .expect_err("other audience");
    assert_eq!(err.0, "token audience does not match");
    assert!(!err.0.contains(&other));

    // Tampering with the payload breaks the signature.
    let mut parts: Vec<String> = token.split('.').map(str::to_string).collect();
    parts[1].pop();
    parts[1].push('A');
    let err = validator
        .validate(&parts.join("."))
        .await
        .expect_err("tampered token");
    assert!(
        err.0 == "token signature is invalid" || err.0 == "token is malformed",
        "{}",
        err.0
    );

    // Issuer identifiers must match exactly: a configured trailing slash fails discovery.
    let err = OidcValidator::discover(OidcConfig::new(format!("{}/", issuer.url), AUDIENCE))
        .await
        .expect_err("issuer with trailing slash does not match discovery");
    assert!(err.to_string().contains("does not match"), "{err}");
}
