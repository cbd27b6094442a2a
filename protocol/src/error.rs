//! Errors of the protocol layer and the Kafka error codes the rest of the workspace maps to.

use thiserror::Error;

/// Everything that can go wrong while framing, peeking or decoding Kafka bytes.
#[derive(Debug, Error)]
pub enum ProtocolError {
    /// The size prefix announced a frame larger than the configured maximum.
    #[error("frame of {size} bytes exceeds the maximum of {max} bytes")]
    FrameTooLarge { size: usize, max: usize },
    /// The size prefix was negative.
    #[error("frame size {0} is negative")]
    NegativeFrameSize(i32),
    /// A frame or header ended before all of its fields.
    #[error("truncated {what}: needed {needed} bytes, had {had}")]
    Truncated {
        what: &'static str,
        needed: usize,
        had: usize,
    },
    /// A request named an API key this build does not know.
    #[error("unknown API key {0}")]
    UnknownApiKey(i16),
    /// A field held a value the format does not allow.
    #[error("malformed {what}: {why}")]
    Malformed { what: &'static str, why: String },
    /// The CRC32C stored in a record batch does not match its contents.
    #[error("record batch CRC mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    CrcMismatch { stored: u32, computed: u32 },
    /// A record batch used a magic (format version) other than 2.
    #[error("unsupported record batch magic {0} (only v2 is supported)")]
    UnsupportedMagic(i8),
    /// A compression codec id outside 0..=4.
    #[error("unknown compression codec {0}")]
    UnknownCompression(i16),
    /// Compressing or decompressing failed.
    #[error("{codec} compression error: {why}")]
    Compression { codec: &'static str, why: String },
    /// A generated codec from `kafka-protocol` failed to encode or decode a message.
    #[error("codec error: {0}")]
    Codec(String),
    /// Socket-level failure (only the client module does I/O).
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// The peer answered with a Kafka error code.
    #[error("broker returned {code:?}: {message}")]
    Broker { code: ErrorCode, message: String },
}

impl ProtocolError {
    /// Wraps an error from the `kafka-protocol` crate's generated codecs.
    pub fn codec(e: impl std::fmt::Display) -> Self {
        ProtocolError::Codec(e.to_string())
    }
}

/// The Kafka error codes Gatehouse emits. Values are Kafka's (`org.apache.kafka.common.protocol.Errors`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(i16)]
pub enum ErrorCode {
    UnknownServerError = -1,
    None = 0,
    OffsetOutOfRange = 1,
    CorruptMessage = 2,
    UnknownTopicOrPartition = 3,
    InvalidFetchSize = 4,
    LeaderNotAvailable = 5,
    NotLeaderOrFollower = 6,
    RequestTimedOut = 7,
    MessageTooLarge = 10,
    OffsetMetadataTooLarge = 12,
    CoordinatorLoadInProgress = 14,
    CoordinatorNotAvailable = 15,
    NotCoordinator = 16,
    InvalidTopicException = 17,
    RecordListTooLarge = 18,
    InvalidRequiredAcks = 21,
    IllegalGeneration = 22,
    InconsistentGroupProtocol = 23,
    InvalidGroupId = 24,
    UnknownMemberId = 25,
    InvalidSessionTimeout = 26,
    RebalanceInProgress = 27,
    InvalidCommitOffsetSize = 28,
    TopicAuthorizationFailed = 29,
    GroupAuthorizationFailed = 30,
    ClusterAuthorizationFailed = 31,
    InvalidTimestamp = 32,
    UnsupportedSaslMechanism = 33,
    IllegalSaslState = 34,
    UnsupportedVersion = 35,
    TopicAlreadyExists = 36,
    InvalidPartitions = 37,
    InvalidReplicationFactor = 38,
    InvalidReplicaAssignment = 39,
    InvalidConfig = 40,
    NotController = 41,
    InvalidRequest = 42,
    UnsupportedForMessageFormat = 43,
    PolicyViolation = 44,
    OutOfOrderSequenceNumber = 45,
    DuplicateSequenceNumber = 46,
    InvalidProducerEpoch = 47,
    InvalidTxnState = 48,
    InvalidProducerIdMapping = 49,
    InvalidTransactionTimeout = 50,
    ConcurrentTransactions = 51,
    TransactionalIdAuthorizationFailed = 53,
    SaslAuthenticationFailed = 58,
    UnknownProducerId = 59,
    ReassignmentInProgress = 60,
    NonEmptyGroup = 68,
    GroupIdNotFound = 69,
    FetchSessionIdNotFound = 70,
    InvalidFetchSessionEpoch = 71,
    FencedLeaderEpoch = 74,
    UnknownLeaderEpoch = 75,
    UnsupportedCompressionType = 76,
    MemberIdRequired = 79,
    GroupMaxSizeReached = 81,
    FencedInstanceId = 82,
    InvalidRecord = 87,
    UnstableOffsetCommit = 88,
    ThrottlingQuotaExceeded = 89,
    ProducerFenced = 90,
    UnknownTopicId = 100,
    InconsistentTopicId = 103,
}

impl ErrorCode {
    /// The numeric code as it goes on the wire.
    pub fn code(self) -> i16 {
        self as i16
    }

    /// True when the code means success.
    pub fn is_ok(self) -> bool {
        self == ErrorCode::None
    }
}

impl From<ErrorCode> for i16 {
    fn from(e: ErrorCode) -> i16 {
        e.code()
    }
}
