//! Console pages over the data: the schema pages (subjects, versions side by side, the
//! compatibility check and register forms) and the message browser (each value as the
//! signed-in principal may see it).

use super::AdminState;

/// Routes of these pages (merged into the console router).
pub(super) fn routes() -> axum::Router<AdminState> {
    axum::Router::new()
}
