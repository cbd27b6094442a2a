//! [`AwsKms`]: KEKs in AWS KMS (or anything speaking its JSON API, such as `moto_server`).
//!
//! Calls `TrentService.CreateKey` (symmetric, `ENCRYPT_DECRYPT`), `Encrypt` / `Decrypt` with
//! the encryption context `{"gatehouse": "dek"}` (the DEK bytes never leave this process
//! except inside the TLS request to the KMS), and for destruction `DisableKey` followed by
//! `ScheduleKeyDeletion` (AWS enforces a 7–30 day window; the key is unusable from the
//! `DisableKey` on). Requests are signed with SigV4 (the private `sigv4` module).

use std::fmt;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::{Value, json};
use zeroize::Zeroizing;

use super::cipher::DataKey;
use super::kms::{KekRef, Kms, KmsError, KmsFuture};
use super::sigv4;

/// Static AWS credentials. `Debug` shows the access key id only.
#[derive(Clone)]
pub struct AwsCredentials {
    /// `AWS_ACCESS_KEY_ID`.
    pub access_key_id: String,
    secret_access_key: Zeroizing<String>,
    session_token: Option<Zeroizing<String>>,
}

impl fmt::Debug for AwsCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AwsCredentials")
            .field("access_key_id", &self.access_key_id)
            .finish_non_exhaustive()
    }
}

impl AwsCredentials {
    /// Credentials from their parts.
    pub fn new(
        access_key_id: impl Into<String>,
        secret_access_key: impl Into<String>,
        session_token: Option<String>,
    ) -> Self {
        Self {
            access_key_id: access_key_id.into(),
            secret_access_key: Zeroizing::new(secret_access_key.into()),
            session_token: session_token.map(Zeroizing::new),
        }
    }
}

/// Where and as whom [`AwsKms`] talks.
#[derive(Clone, Debug)]
pub struct AwsKmsConfig {
    /// Base URL, e.g. `https://kms.eu-west-1.amazonaws.com` or `http://127.0.0.1:5055`.
    pub endpoint: String,
    /// Region used in the SigV4 scope.
    pub region: String,
    /// Who signs.
    pub credentials: AwsCredentials,
    /// `PendingWindowInDays` of `ScheduleKeyDeletion` (AWS: 7–30).
    pub pending_window_days: u32,
    /// Per-request timeout.
    pub timeout: Duration,
}

impl AwsKmsConfig {
    /// A configuration with the default deletion window (7 days) and a 10 s timeout.
    pub fn new(
        endpoint: impl Into<String>,
        region: impl Into<String>,
        credentials: AwsCredentials,
    ) -> Self {
        Self {
            endpoint: endpoint.into(),
            region: region.into(),
            credentials,
            pending_window_days: 7,
            timeout: Duration::from_secs(10),
        }
    }

    /// From the environment: `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, optional
    /// `AWS_SESSION_TOKEN`, `AWS_REGION` (or `AWS_DEFAULT_REGION`); the endpoint is
    /// `endpoint` if given, else `AWS_ENDPOINT_URL_KMS`, `AWS_ENDPOINT_URL`, else
    /// `https://kms.<region>.amazonaws.com`.
    pub fn from_env(endpoint: Option<String>) -> Result<Self, KmsError> {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        let region = var("AWS_REGION")
            .or_else(|| var("AWS_DEFAULT_REGION"))
            .ok_or_else(|| KmsError::Config("AWS_REGION is not set".into()))?;
        let access = var("AWS_ACCESS_KEY_ID")
            .ok_or_else(|| KmsError::Config("AWS_ACCESS_KEY_ID is not set".into()))?;
        let secret = var("AWS_SECRET_ACCESS_KEY")
            .ok_or_else(|| KmsError::Config("AWS_SECRET_ACCESS_KEY is not set".into()))?;
        let endpoint = endpoint
            .or_else(|| var("AWS_ENDPOINT_URL_KMS"))
            .or_else(|| var("AWS_ENDPOINT_URL"))
            .unwrap_or_else(|| format!("https://kms.{region}.amazonaws.com"));
        Ok(Self::new(
            endpoint,
            region,
            AwsCredentials::new(access, secret, var("AWS_SESSION_TOKEN")),
        ))
    }
}

/// A [`Kms`] backed by AWS KMS (see the module documentation).
pub struct AwsKms {
    config: AwsKmsConfig,
    url: reqwest::Url,
    host: String,
    http: reqwest::Client,
}

impl fmt::Debug for AwsKms {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AwsKms")
            .field("endpoint", &self.config.endpoint)
            .field("region", &self.config.region)
            .finish_non_exhaustive()
    }
}

const ENCRYPTION_CONTEXT: (&str, &str) = ("gatehouse", "dek");

impl AwsKms {
    /// A client for `config` (no request is made yet).
    pub fn new(config: AwsKmsConfig) -> Result<Self, KmsError> {
        let url = reqwest::Url::parse(&config.endpoint)
            .map_err(|e| KmsError::Config(format!("endpoint {:?}: {e}", config.endpoint)))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(KmsError::Config("endpoint must be http(s)".into()));
        }
        let host = match (url.host_str(), url.port()) {
            (Some(h), Some(p)) => format!("{h}:{p}"),
            (Some(h), None) => h.to_string(),
            (None, _) => return Err(KmsError::Config("endpoint has no host".into())),
        };
        let http = reqwest::Client::builder()
            .timeout(config.timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| KmsError::Config(format!("HTTP client: {e}")))?;
        Ok(Self {
            config,
            url,
            host,
            http,
        })
    }

    /// One signed `TrentService.<action>` call; the parsed JSON answer.
    async fn call(&self, action: &str, body: &Value) -> Result<Value, KmsError> {
        let payload = serde_json::to_vec(body).map_err(|e| KmsError::Malformed(e.to_string()))?;
        let amz_date = sigv4::amz_date_now();
        let target = format!("TrentService.{action}");
        let creds = &self.config.credentials;
        let mut headers: Vec<(&str, &str)> = vec![
            ("content-type", "application/x-amz-json-1.1"),
            ("host", &self.host),
            ("x-amz-date", &amz_date),
            ("x-amz-target", &target),
        ];
        if let Some(token) = &creds.session_token {
            headers.push(("x-amz-security-token", token.as_str()));
        }
        let path = self.url.path();
        let auth = sigv4::authorization(
            &sigv4::Signer {
                access_key_id: &creds.access_key_id,
                secret_access_key: &creds.secret_access_key,
                region: &self.config.region,
                service: "kms",
            },
            &sigv4::Request {
                method: "POST",
                path: if path.is_empty() { "/" } else { path },
                query: "",
                headers: &headers,
                payload: &payload,
            },
            &amz_date,
        );
        let mut req = self.http.post(self.url.clone());
        for (k, v) in headers.iter().filter(|(k, _)| *k != "host") {
            req = req.header(*k, *v);
        }
        let resp = req
            .header("authorization", auth)
            .body(payload)
            .send()
            .await
            .map_err(|e| KmsError::Transport(format!("{action}: {e}")))?;
        let status = resp.status().as_u16();
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| KmsError::Transport(format!("{action}: {e}")))?;
        let value: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        if !(200..300).contains(&status) {
            let kind = value
                .get("__type")
                .and_then(Value::as_str)
                .map(|t| t.rsplit('#').next().unwrap_or(t).to_string())
                .unwrap_or_else(|| "UnknownError".into());
            let message = value
                .get("message")
                .or_else(|| value.get("Message"))
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            return Err(KmsError::Api {
                status,
                kind,
                message,
            });
        }
        Ok(value)
    }

    /// The key's `KeyState` (`Enabled`, `Disabled`, `PendingDeletion`, ...) from
    /// `DescribeKey`: what an auditor checks after a destruction.
    pub async fn key_state(&self, kek: &KekRef) -> Result<String, KmsError> {
        let v = self
            .call("DescribeKey", &json!({ "KeyId": bare_key_id(kek) }))
            .await?;
        v.get("KeyMetadata")
            .and_then(|m| m.get("KeyState"))
            .and_then(Value::as_str)
            .map(str::to_string)
            .ok_or_else(|| KmsError::Malformed("no KeyMetadata.KeyState".into()))
    }

    fn unusable(kek: &KekRef, e: KmsError) -> KmsError {
        match e {
            KmsError::Api { kind, message, .. }
                if matches!(
                    kind.as_str(),
                    "DisabledException"
                        | "KMSInvalidStateException"
                        | "NotFoundException"
                        | "KeyUnavailableException"
                ) =>
            {
                KmsError::Unusable {
                    kek: kek.clone(),
                    why: format!("{kind}: {message}"),
                }
            }
            other => other,
        }
    }
}

/// The key id part of a key ARN (`arn:aws:kms:<region>:<account>:key/<id>` → `<id>`). AWS
/// accepts either form everywhere; `moto_server` only resolves ARNs for Encrypt/Decrypt/
/// DescribeKey, so the administrative calls send the bare id.
fn bare_key_id(kek: &KekRef) -> &str {
    kek.as_str()
        .rsplit_once(":key/")
        .map_or(kek.as_str(), |(_, id)| id)
}

fn b64_field(v: &Value, field: &str) -> Result<Zeroizing<Vec<u8>>, KmsError> {
    let s = v
        .get(field)
        .and_then(Value::as_str)
        .ok_or_else(|| KmsError::Malformed(format!("no {field} in the answer")))?;
    B64.decode(s)
        .map(Zeroizing::new)
        .map_err(|e| KmsError::Malformed(format!("{field}: {e}")))
}

impl Kms for AwsKms {
    fn name(&self) -> &'static str {
        "aws-kms"
    }

    fn create_kek(&self) -> KmsFuture<'_, KekRef> {
        Box::pin(async move {
            let v = self
                .call(
                    "CreateKey",
                    &json!({
                        "KeySpec": "SYMMETRIC_DEFAULT",
                        "KeyUsage": "ENCRYPT_DECRYPT",
                        "Description": "Gatehouse KEK (envelope encryption)",
                        "Tags": [{"TagKey": "gatehouse", "TagValue": "kek"}],
                    }),
                )
                .await?;
            let meta = v
                .get("KeyMetadata")
                .ok_or_else(|| KmsError::Malformed("no KeyMetadata".into()))?;
            let id = meta
                .get("Arn")
                .or_else(|| meta.get("KeyId"))
                .and_then(Value::as_str)
                .ok_or_else(|| KmsError::Malformed("no key ARN".into()))?;
            Ok(KekRef::new(id))
        })
    }

    fn wrap<'a>(&'a self, kek: &'a KekRef, dek: &'a DataKey) -> KmsFuture<'a, Vec<u8>> {
        Box::pin(async move {
            let plaintext = Zeroizing::new(B64.encode(dek.expose_secret()));
            let body = json!({
                "KeyId": kek.as_str(),
                "Plaintext": plaintext.as_str(),
                "EncryptionContext": {ENCRYPTION_CONTEXT.0: ENCRYPTION_CONTEXT.1},
            });
            let v = self
                .call("Encrypt", &body)
                .await
                .map_err(|e| Self::unusable(kek, e))?;
            Ok(b64_field(&v, "CiphertextBlob")?.to_vec())
        })
    }

    fn unwrap<'a>(&'a self, kek: &'a KekRef, wrapped: &'a [u8]) -> KmsFuture<'a, DataKey> {
        Box::pin(async move {
            let v = self
                .call(
                    "Decrypt",
                    &json!({
                        "KeyId": kek.as_str(),
                        "CiphertextBlob": B64.encode(wrapped),
                        "EncryptionContext": {ENCRYPTION_CONTEXT.0: ENCRYPTION_CONTEXT.1},
                    }),
                )
                .await
                .map_err(|e| Self::unusable(kek, e))?;
            let plain = b64_field(&v, "Plaintext")?;
            Ok(DataKey::from_slice(&plain)?)
        })
    }

    fn destroy_kek<'a>(&'a self, kek: &'a KekRef) -> KmsFuture<'a, ()> {
        Box::pin(async move {
            let id = json!({ "KeyId": bare_key_id(kek) });
            match self.call("DisableKey", &id).await {
                Ok(_) => {}
                // Already pending deletion (an earlier destroy): nothing left to do.
                Err(KmsError::Api { kind, .. }) if kind == "KMSInvalidStateException" => {
                    return Ok(());
                }
                Err(e) => return Err(e),
            }
            self.call(
                "ScheduleKeyDeletion",
                &json!({
                    "KeyId": bare_key_id(kek),
                    "PendingWindowInDays": self.config.pending_window_days,
                }),
            )
            .await?;
            Ok(())
        })
    }
}
