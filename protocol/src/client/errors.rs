//! Kafka error codes found in responses, mapped onto [`ProtocolError::Broker`].
//!
//! `ErrorCode` only names the codes Gatehouse itself emits, so a code outside it becomes
//! [`ErrorCode::UnknownServerError`]; the raw number is always kept in the message
//! (`"... (Kafka error code 58)"`) so nothing is lost.

use std::io;

use crate::{ErrorCode, ProtocolError};

/// Maps a raw Kafka error code to the [`ErrorCode`] enum, `None` when the enum lacks it.
pub fn error_code_from_i16(code: i16) -> Option<ErrorCode> {
    use ErrorCode::*;
    Some(match code {
        -1 => UnknownServerError,
        0 => None,
        1 => OffsetOutOfRange,
        2 => CorruptMessage,
        3 => UnknownTopicOrPartition,
        4 => InvalidFetchSize,
        5 => LeaderNotAvailable,
        6 => NotLeaderOrFollower,
        7 => RequestTimedOut,
        10 => MessageTooLarge,
        12 => OffsetMetadataTooLarge,
        14 => CoordinatorLoadInProgress,
        15 => CoordinatorNotAvailable,
        16 => NotCoordinator,
        17 => InvalidTopicException,
        18 => RecordListTooLarge,
        21 => InvalidRequiredAcks,
        22 => IllegalGeneration,
        23 => InconsistentGroupProtocol,
        24 => InvalidGroupId,
        25 => UnknownMemberId,
        26 => InvalidSessionTimeout,
        27 => RebalanceInProgress,
        28 => InvalidCommitOffsetSize,
        29 => TopicAuthorizationFailed,
        30 => GroupAuthorizationFailed,
        31 => ClusterAuthorizationFailed,
        32 => InvalidTimestamp,
        33 => UnsupportedSaslMechanism,
        34 => IllegalSaslState,
        35 => UnsupportedVersion,
        36 => TopicAlreadyExists,
        37 => InvalidPartitions,
        38 => InvalidReplicationFactor,
        39 => InvalidReplicaAssignment,
        40 => InvalidConfig,
        41 => NotController,
        42 => InvalidRequest,
        43 => UnsupportedForMessageFormat,
        44 => PolicyViolation,
        45 => OutOfOrderSequenceNumber,
        46 => DuplicateSequenceNumber,
        47 => InvalidProducerEpoch,
        48 => InvalidTxnState,
        49 => InvalidProducerIdMapping,
        50 => InvalidTransactionTimeout,
        51 => ConcurrentTransactions,
        53 => TransactionalIdAuthorizationFailed,
        58 => SaslAuthenticationFailed,
        59 => UnknownProducerId,
        60 => ReassignmentInProgress,
        68 => NonEmptyGroup,
        69 => GroupIdNotFound,
        70 => FetchSessionIdNotFound,
        71 => InvalidFetchSessionEpoch,
        74 => FencedLeaderEpoch,
        75 => UnknownLeaderEpoch,
        76 => UnsupportedCompressionType,
        79 => MemberIdRequired,
        81 => GroupMaxSizeReached,
        82 => FencedInstanceId,
        87 => InvalidRecord,
        88 => UnstableOffsetCommit,
        89 => ThrottlingQuotaExceeded,
        90 => ProducerFenced,
        100 => UnknownTopicId,
        103 => InconsistentTopicId,
        _ => return Option::None,
    })
}

/// Builds the error for a non-zero Kafka error code. `context` says which call and resource
/// failed; `message` is the broker's own error message, when the response carries one.
pub fn broker_error(code: i16, context: &str, message: Option<&str>) -> ProtocolError {
    let mapped = error_code_from_i16(code);
    let mut text = String::from(context);
    if let Some(m) = message.filter(|m| !m.is_empty()) {
        text.push_str(": ");
        text.push_str(m);
    }
    if mapped.is_none() {
        text.push_str(" (unrecognized");
    } else {
        text.push_str(" (");
    }
    text.push_str(&format!("Kafka error code {code})"));
    ProtocolError::Broker {
        code: mapped.unwrap_or(ErrorCode::UnknownServerError),
        message: text,
    }
}

/// `Ok(())` for code 0, otherwise [`broker_error`].
pub fn check(code: i16, context: &str, message: Option<&str>) -> Result<(), ProtocolError> {
    if code == 0 {
        Ok(())
    } else {
        Err(broker_error(code, context, message))
    }
}

/// The error for "no version of this API both sides speak".
pub(crate) fn unsupported_version(message: String) -> ProtocolError {
    ProtocolError::Broker {
        code: ErrorCode::UnsupportedVersion,
        message,
    }
}

/// The Kafka error code carried by `err`, if it is a broker error.
pub fn broker_code(err: &ProtocolError) -> Option<ErrorCode> {
    match err {
        ProtocolError::Broker { code, .. } => Some(*code),
        _ => Option::None,
    }
}

/// True when the error is an I/O failure: the connection dropped, timed out or was refused.
pub fn is_io(err: &ProtocolError) -> bool {
    matches!(err, ProtocolError::Io(_))
}

/// True for broker errors that a metadata or coordinator refresh and a retry can cure.
pub fn is_retriable_code(code: ErrorCode) -> bool {
    matches!(
        code,
        ErrorCode::LeaderNotAvailable
            | ErrorCode::NotLeaderOrFollower
            | ErrorCode::UnknownTopicOrPartition
            | ErrorCode::RequestTimedOut
            | ErrorCode::CoordinatorLoadInProgress
            | ErrorCode::CoordinatorNotAvailable
            | ErrorCode::NotCoordinator
            | ErrorCode::NotController
            | ErrorCode::FencedLeaderEpoch
            | ErrorCode::UnknownLeaderEpoch
            | ErrorCode::ThrottlingQuotaExceeded
    )
}

/// An independent copy of `err` (`ProtocolError` is not `Clone` because of `io::Error`), so
/// that one connection failure can be reported to every waiting request. Variants a
/// connection never fails with are copied as [`ProtocolError::Codec`] with the same text.
pub(crate) fn duplicate(err: &ProtocolError) -> ProtocolError {
    match err {
        ProtocolError::FrameTooLarge { size, max } => ProtocolError::FrameTooLarge {
            size: *size,
            max: *max,
        },
        ProtocolError::NegativeFrameSize(n) => ProtocolError::NegativeFrameSize(*n),
        ProtocolError::Truncated { what, needed, had } => ProtocolError::Truncated {
            what,
            needed: *needed,
            had: *had,
        },
        ProtocolError::Malformed { what, why } => ProtocolError::Malformed {
            what,
            why: why.clone(),
        },
        ProtocolError::Io(e) => ProtocolError::Io(io::Error::new(e.kind(), e.to_string())),
        ProtocolError::Broker { code, message } => ProtocolError::Broker {
            code: *code,
            message: message.clone(),
        },
        other => ProtocolError::Codec(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_enum_code_round_trips() {
        for raw in -1i16..=120 {
            if let Some(code) = error_code_from_i16(raw) {
                assert_eq!(code.code(), raw);
            }
        }
        assert_eq!(error_code_from_i16(36), Some(ErrorCode::TopicAlreadyExists));
        assert_eq!(error_code_from_i16(0), Some(ErrorCode::None));
    }

    #[test]
    fn unknown_codes_keep_the_raw_number() {
        let e = broker_error(1234, "produce t-0", Some("boom"));
        let ProtocolError::Broker { code, message } = e else {
            panic!("not a broker error");
        };
        assert_eq!(code, ErrorCode::UnknownServerError);
        assert!(
            message.contains("1234") && message.contains("boom"),
            "{message}"
        );
        assert!(check(0, "x", None).is_ok());
        assert_eq!(
            broker_code(&broker_error(6, "x", None)),
            Some(ErrorCode::NotLeaderOrFollower)
        );
    }
}
