//! Registry start-up with and without its sled index of `_schemas`
//! (`GATEHOUSE_BENCH_SCHEMAS`, default 5,000 schemas): the replay from the topic is the
//! baseline in the same run; then the index alone and a rebuild after deleting it. Run with
//! `cargo bench --bench registry_startup`; not part of any test run. That the index is used,
//! rebuilt and never trusted when stale is checked in `tests/registry_e2e.rs`.

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::Instant;

use gatehouse_registry::StoreOptions;
use gatehouse_registry::api::{SchemaRequest, SchemaStore};
use gatehouse_registry::kafka::StartKind;
use gatehouse_registry::server::{RegistryServerConfig, start, start_with_store};

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

fn main() {
    let n: usize = std::env::var("GATEHOUSE_BENCH_SCHEMAS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5000);
    let rt = rt();
    let broker = common::Broker::start_with(common::BrokerOptions {
        log_flush: Some("os"),
        ..Default::default()
    });
    let dir = tempfile::tempdir().expect("registry start-up bench step");
    let index = dir.path().join("registry-index");
    let config = || {
        RegistryServerConfig::plain(
            "127.0.0.1:0".parse().expect("registry start-up bench step"),
            broker.bootstrap(),
            None,
        )
    };
    let reg = rt
        .block_on(start_with_store(config(), StoreOptions::with_index(&index)))
        .expect("registry start-up bench step");
    let t = Instant::now();
    rt.block_on(async {
        for i in 0..n {
            let schema = format!(
                r#"{{"type":"record","name":"R{i}","namespace":"bench","fields":[{{"name":"id","type":"long"}},{{"name":"f{i}","type":["null","string"],"default":null}}]}}"#
            );
            reg.store()
                .register(
                    &format!("bench-{i}-value"),
                    SchemaRequest {
                        schema: Some(schema),
                        ..SchemaRequest::default()
                    },
                    false,
                )
                .await
                .expect("registry start-up bench step");
        }
    });
    eprintln!("registered {n} schemas in {:?}", t.elapsed());
    rt.block_on(reg.shutdown())
        .expect("registry start-up bench step");
    let mut report = Vec::new();
    for round in 0..3 {
        let t = Instant::now();
        let r = rt
            .block_on(start(config()))
            .expect("registry start-up bench step");
        let without = t.elapsed();
        assert_eq!(
            rt.block_on(r.store().max_id())
                .expect("registry start-up bench step"),
            i32::try_from(n).expect("registry start-up bench step")
        );
        rt.block_on(r.shutdown())
            .expect("registry start-up bench step");
        let t = Instant::now();
        let r = rt
            .block_on(start_with_store(config(), StoreOptions::with_index(&index)))
            .expect("registry start-up bench step");
        let with = t.elapsed();
        assert!(
            matches!(r.store().start_kind(), StartKind::FromIndex { .. }),
            "{:?}",
            r.store().start_kind()
        );
        assert_eq!(
            rt.block_on(r.store().max_id())
                .expect("registry start-up bench step"),
            i32::try_from(n).expect("registry start-up bench step")
        );
        rt.block_on(r.shutdown())
            .expect("registry start-up bench step");
        report.push(format!(
            "round {round}: without index {without:?}, with index {with:?}"
        ));
    }
    // The index part alone: open + load + verify (no parsing, no broker).
    let t = Instant::now();
    let idx = gatehouse_registry::kafka::index::Index::open(&index)
        .expect("registry start-up bench step");
    let st = idx
        .load()
        .expect("registry start-up bench step")
        .expect("registry start-up bench step");
    report.push(format!(
        "index open+load+verify alone: {:?} ({} records)",
        t.elapsed(),
        st.records.len()
    ));
    drop(idx);
    // Rebuild cost (index deleted).
    std::fs::remove_dir_all(&index).expect("registry start-up bench step");
    let t = Instant::now();
    let r = rt
        .block_on(start_with_store(config(), StoreOptions::with_index(&index)))
        .expect("registry start-up bench step");
    report.push(format!("rebuild (index deleted): {:?}", t.elapsed()));
    rt.block_on(r.shutdown())
        .expect("registry start-up bench step");
    for l in report {
        eprintln!("{n} schemas: {l}");
    }
}
