//! Writing record batches (helper fills in).

/// Builds RecordBatch v2 bytes.
#[derive(Debug, Default)]
pub struct BatchBuilder {}
