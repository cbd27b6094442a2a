//! Compression codecs of record batches (attribute bits 0-2).

use crate::ProtocolError;

/// The codecs Kafka defines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Compression {
    None,
    Gzip,
    Snappy,
    Lz4,
    Zstd,
}

impl Compression {
    /// Reads the codec from batch attributes.
    pub fn from_attributes(attributes: i16) -> Result<Self, ProtocolError> {
        match attributes & 0x07 {
            0 => Ok(Compression::None),
            1 => Ok(Compression::Gzip),
            2 => Ok(Compression::Snappy),
            3 => Ok(Compression::Lz4),
            4 => Ok(Compression::Zstd),
            other => Err(ProtocolError::UnknownCompression(other)),
        }
    }
}
