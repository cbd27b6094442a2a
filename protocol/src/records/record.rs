//! Records inside a batch (helper fills in).
use bytes::Bytes;

use super::BatchHeader;
use crate::ProtocolError;

/// One record header; keys may repeat and order is kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordHeader {
    pub key: Bytes,
    pub value: Option<Bytes>,
}

/// One decoded record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub offset_delta: i32,
    pub timestamp_delta: i64,
    pub key: Option<Bytes>,
    pub value: Option<Bytes>,
    pub headers: Vec<RecordHeader>,
}

pub(crate) fn decode_records(_h: &BatchHeader, _b: &Bytes) -> Result<Vec<Record>, ProtocolError> {
    Err(ProtocolError::Malformed { what: "records", why: "not yet".into() })
}
