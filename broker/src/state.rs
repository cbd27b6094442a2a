//! Shared broker state handed to every connection.

use std::path::Path;
use std::sync::Mutex;

use crate::config::BrokerConfig;
use crate::error::BrokerError;
use crate::group::GroupCoordinator;
use crate::log::LogManager;
use crate::topics::{Topics, write_atomically};

/// Everything a request handler may touch.
pub(crate) struct BrokerState {
    pub config: BrokerConfig,
    pub topics: Topics,
    pub logs: LogManager,
    pub groups: GroupCoordinator,
    pub producer_ids: ProducerIds,
    pub cluster_id: String,
    pub advertised_host: String,
    pub advertised_port: i32,
}

/// Hands out producer ids that are never reused, even across restarts: ids are reserved in
/// durable blocks, and a restart skips the rest of the block it was using.
pub(crate) struct ProducerIds {
    dir: std::path::PathBuf,
    state: Mutex<(i64, i64)>, // (next id, end of reserved block)
}

const PRODUCER_ID_BLOCK: i64 = 1000;

impl ProducerIds {
    pub fn open(meta_dir: &Path) -> Result<Self, BrokerError> {
        let file = meta_dir.join("producer-id-block");
        let next = match std::fs::read_to_string(&file) {
            Ok(s) => s.trim().parse::<i64>().map_err(|_| {
                BrokerError::Metadata(format!("{} does not hold a number", file.display()))
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
            Err(e) => return Err(BrokerError::io("read producer-id-block", e)),
        };
        Ok(Self {
            dir: meta_dir.to_path_buf(),
            state: Mutex::new((next, next)),
        })
    }

    /// The next unused producer id.
    pub fn allocate(&self) -> Result<i64, BrokerError> {
        let mut s = match self.state.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        if s.0 >= s.1 {
            let end = s.1 + PRODUCER_ID_BLOCK;
            write_atomically(&self.dir, "producer-id-block", end.to_string().as_bytes())?;
            s.1 = end;
        }
        let id = s.0;
        s.0 += 1;
        Ok(id)
    }
}

/// Reads or creates the cluster id stored in `meta/cluster-id`.
pub(crate) fn cluster_id(meta_dir: &Path) -> Result<String, BrokerError> {
    let file = meta_dir.join("cluster-id");
    match std::fs::read_to_string(&file) {
        Ok(s) if !s.trim().is_empty() => Ok(s.trim().to_owned()),
        Ok(_) | Err(_) => {
            let id = uuid::Uuid::new_v4().simple().to_string();
            write_atomically(meta_dir, "cluster-id", id.as_bytes())?;
            Ok(id)
        }
    }
}
