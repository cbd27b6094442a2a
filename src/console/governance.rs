//! Console pages over governance: the "explain this decision" view, keys and their rotation
//! history, the evidence-package download, and OIDC authorization-code login.

use super::AdminState;

/// Routes of these pages (merged into the console router).
pub(super) fn routes() -> axum::Router<AdminState> {
    axum::Router::new()
}
