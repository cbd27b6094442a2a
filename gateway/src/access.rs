//! Data-access auditing (PCI DSS 10.2.1.1: every individual access to cardholder data).
//!
//! Topics with `gatehouse.audit.data.access=all` have every *granted* Produce and Fetch
//! recorded: one `io.gatehouse.authorization` event per topic and request, naming the
//! principal, the operation (`Write`/`Read`), the partitions touched and the number of records
//! (never their content). Denials are audited for every topic anyway. Produce requests are
//! counted before they are forwarded; Fetch responses after the upstream answered (and after
//! decryption), counting only partitions that returned records, so an empty long poll is not
//! an access. The response waits for the events to be durable, like every audited decision.

use bytes::Bytes;
use gatehouse_protocol::header::{decode_body, split_response};
use gatehouse_protocol::kafka_protocol::protocol::HeaderVersion;
use gatehouse_protocol::messages::{FetchResponse, ProduceRequest};
use gatehouse_protocol::records::RawBatches;

use crate::governance::Governance;

/// One audited access: a topic, its partitions and how many records moved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Accessed {
    pub topic: String,
    pub partitions: Vec<i32>,
    pub records: i64,
}

/// Records in a record set (complete batches only: a fetch may end with a partial one).
fn count_records(records: &Bytes) -> i64 {
    RawBatches::new(records.clone())
        .map_while(Result::ok)
        .map(|b| i64::from(b.header().records_count))
        .sum()
}

/// The audited topics a (granted, possibly trimmed) Produce request writes to.
pub(crate) fn produce_accessed(request: &ProduceRequest, governance: &Governance) -> Vec<Accessed> {
    let mut out = Vec::new();
    for t in &request.topic_data {
        let name = t.name.as_str();
        if !governance.audits_data_access(name) {
            continue;
        }
        let mut a = Accessed {
            topic: name.to_string(),
            partitions: Vec::new(),
            records: 0,
        };
        for p in &t.partition_data {
            a.partitions.push(p.index);
            if let Some(r) = &p.records {
                a.records += count_records(r);
            }
        }
        if !a.partitions.is_empty() {
            out.push(a);
        }
    }
    out
}

/// The audited topics a Fetch response (size-prefixed frame) returned records of.
pub(crate) fn fetch_accessed(
    framed: &Bytes,
    version: i16,
    governance: &Governance,
) -> Result<Vec<Accessed>, String> {
    let (_, body) = split_response(framed.slice(4..), FetchResponse::header_version(version))
        .map_err(|e| e.to_string())?;
    let resp: FetchResponse = decode_body(body, version).map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    for t in &resp.responses {
        let name = t.topic.as_str();
        if !governance.audits_data_access(name) {
            continue;
        }
        let mut a = Accessed {
            topic: name.to_string(),
            partitions: Vec::new(),
            records: 0,
        };
        for p in &t.partitions {
            let Some(records) = p.records.as_ref().filter(|r| !r.is_empty()) else {
                continue;
            };
            if p.error_code != 0 {
                continue;
            }
            let n = count_records(records);
            if n > 0 {
                a.partitions.push(p.partition_index);
                a.records += n;
            }
        }
        if !a.partitions.is_empty() {
            out.push(a);
        }
    }
    Ok(out)
}

/// `0,1,2` for an event attribute.
pub(crate) fn partition_list(partitions: &[i32]) -> String {
    partitions
        .iter()
        .map(i32::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;
    use gatehouse_protocol::records::BatchBuilder;

    fn batch(n: usize) -> Bytes {
        let mut b = BatchBuilder::new();
        for i in 0..n {
            b.push(None, Some(format!("v{i}").as_bytes()), &[], 0)
                .expect("push");
        }
        b.build().expect("build")
    }

    #[test]
    fn counts_complete_batches_only() {
        let mut two = batch(3).to_vec();
        two.extend_from_slice(&batch(2));
        let full = Bytes::from(two.clone());
        assert_eq!(count_records(&full), 5);
        // A truncated last batch (as a fetch may return) is not counted.
        let cut = Bytes::from(two[..two.len() - 5].to_vec());
        assert_eq!(count_records(&cut), 3);
        assert_eq!(count_records(&Bytes::new()), 0);
    }

    #[test]
    fn partition_lists() {
        assert_eq!(partition_list(&[0, 2, 5]), "0,2,5");
        assert_eq!(partition_list(&[]), "");
    }
}
