//! What every admin-REST-API command shares (`topic`, `group`, `key`, `role`, `cluster`,
//! `acl explain`, `audit status|events`): the connection flags ([`AdminArgs`]), the client
//! ([`Client`]), failures and how they become exit codes ([`Failure`], [`run_with`]).
//!
//! Plain HTTP/1.1 to the admin listener (`--admin-url`, default `http://127.0.0.1:8080`, env
//! `GATEHOUSE_ADMIN_URL`), HTTP Basic as `--user` (default `admin`) with the password from the
//! variable named by `--password-env` (default `GATEHOUSE_ADMIN_PASSWORD`); secrets are never
//! taken on the command line nor printed. Exit codes as in [`crate::output`]: 0 success; 1 the
//! server refused or failed the request (401, 403, 404, 409, 422, 5xx); 2 usage or connection
//! errors; 3 a denial verdict (`acl explain`).

use anyhow::Result;
use clap::Args;
use serde_json::Value;

use crate::http_client::{ApiError, HttpClient};
use crate::output::{EXIT_DENIED, EXIT_FAILED, EXIT_OK, EXIT_USAGE, OutputArgs};

/// The default variable holding the `--user` password.
pub const PASSWORD_ENV: &str = "GATEHOUSE_ADMIN_PASSWORD";

/// Flags shared by every admin-API command.
#[derive(Args, Debug)]
pub struct AdminArgs {
    /// Admin API base URL (plain HTTP).
    #[arg(
        long,
        env = "GATEHOUSE_ADMIN_URL",
        default_value = "http://127.0.0.1:8080"
    )]
    pub admin_url: String,
    /// User for HTTP Basic authentication (password from --password-env).
    #[arg(long, default_value = "admin")]
    pub user: String,
    /// Environment variable holding the --user password.
    #[arg(long, default_value = PASSWORD_ENV)]
    pub password_env: String,
    #[command(flatten)]
    pub out: OutputArgs,
}

/// Failures with their exit code.
#[derive(Debug)]
pub enum Failure {
    /// The server answered with an error (exit 1).
    Refused {
        status: u16,
        code: i64,
        message: String,
    },
    /// The answer was printed and is a denial (exit 3).
    Denied,
    /// Usage or connection problems (exit 2).
    Local(anyhow::Error),
}

impl From<anyhow::Error> for Failure {
    fn from(e: anyhow::Error) -> Self {
        Failure::Local(e)
    }
}

impl From<ApiError> for Failure {
    fn from(e: ApiError) -> Self {
        Failure::Refused {
            status: e.status,
            code: e.code,
            message: e.message,
        }
    }
}

/// An admin API client: 2xx JSON, or [`Failure::Refused`].
pub struct Client(HttpClient);

impl AdminArgs {
    /// A client logged in as `--user`.
    pub fn client(&self) -> Result<Client> {
        Ok(Client(self.raw_client()?))
    }

    /// The HTTP client itself, logged in as `--user` (for answers that are not JSON).
    pub fn raw_client(&self) -> Result<HttpClient> {
        Ok(
            HttpClient::admin(&self.admin_url, &self.user, &self.password_env)?.with_media(
                "gatehouse-cli",
                "application/json",
                "application/json",
            ),
        )
    }

    /// Whether `--output json` (or `--json`) was given.
    pub fn json(&self) -> bool {
        self.out.is_json()
    }
}

impl Client {
    /// One request; the JSON of a 2xx answer.
    pub async fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, Failure> {
        Ok(self.0.call(method, path, body).await??)
    }
}

/// Runs `work` on a fresh runtime; returns the exit code.
pub fn run_with<F>(work: F) -> i32
where
    F: std::future::Future<Output = Result<(), Failure>>,
{
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return EXIT_USAGE;
        }
    };
    match rt.block_on(work) {
        Ok(()) => EXIT_OK,
        Err(Failure::Refused {
            status,
            code,
            message,
        }) => {
            eprintln!("error: the admin API answered {status} (error code {code}): {message}");
            EXIT_FAILED
        }
        Err(Failure::Denied) => EXIT_DENIED,
        Err(Failure::Local(e)) => {
            eprintln!("error: {e:#}");
            EXIT_USAGE
        }
    }
}

/// Appends `?k=v&...` for the parameters given (values percent-encoded).
pub fn query(path: &str, params: &[(&str, Option<String>)]) -> String {
    let mut out = path.to_string();
    let mut sep = if path.contains('?') { '&' } else { '?' };
    for (k, v) in params {
        if let Some(v) = v {
            out.push(sep);
            out.push_str(k);
            out.push('=');
            out.push_str(&crate::http_client::seg(v));
            sep = '&';
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admin_urls_are_plain_http() {
        let a = AdminArgs {
            admin_url: "https://127.0.0.1:8080".into(),
            user: "admin".into(),
            password_env: "GATEHOUSE_TEST_UNSET_VARIABLE".into(),
            out: OutputArgs::default(),
        };
        assert!(a.client().is_err());
    }

    #[test]
    fn query_strings() {
        assert_eq!(query("/p", &[("a", None)]), "/p");
        assert_eq!(
            query(
                "/p",
                &[
                    ("a", Some("x y".into())),
                    ("b", None),
                    ("c", Some("1".into()))
                ]
            ),
            "/p?a=x%20y&c=1"
        );
        assert_eq!(query("/p?z=1", &[("a", Some("2".into()))]), "/p?z=1&a=2");
    }
}
