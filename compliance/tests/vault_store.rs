//! Key vault end to end against the bundled broker (in-process): envelope round trips, KEK
//! rotation, DEK rotation, retirement, crypto-shredding proven by failing unwraps, replay,
//! MAC rejection, and two nodes sharing one `_gatehouse_keys`.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use gatehouse_broker::{Broker, BrokerConfig};
use gatehouse_compliance::vault::envelope::{DecryptCache, EncHeader, FLAG_KEY, FLAG_VALUE};
use gatehouse_compliance::vault::store::{MAC_HEADER, record_mac};
use gatehouse_compliance::vault::{
    DataKey, Envelope, Field, KEYS_TOPIC, KekState, KeyEvent, KeyEventKind, KeyStore,
    KeyStoreConfig, Kms, LocalKms, RotationPolicy, VaultError,
};
use gatehouse_protocol::client::{Client, ClientConfig};
use gatehouse_protocol::records::{BatchBuilder, RecordHeader};

const MAC: [u8; 32] = [7; 32];
const MASTER: [u8; 32] = [0x11; 32];

async fn broker(dir: &std::path::Path) -> (Broker, Client) {
    let broker = Broker::start(BrokerConfig {
        data_dir: dir.to_path_buf(),
        listen: "127.0.0.1:0".parse().expect("addr"),
        ..BrokerConfig::default()
    })
    .await
    .expect("broker");
    let client = Client::connect(ClientConfig::new([broker.local_addr().to_string()]))
        .await
        .expect("client");
    (broker, client)
}

struct Node {
    kms: Arc<LocalKms>,
    store: Arc<KeyStore>,
    env: Envelope,
    events: Arc<Mutex<Vec<KeyEvent>>>,
}

async fn node(client: &Client, mac: [u8; 32], rotation: RotationPolicy) -> Node {
    let kms = Arc::new(LocalKms::new(DataKey::from_bytes(MASTER)));
    let events = Arc::new(Mutex::new(Vec::new()));
    let sink = events.clone();
    let config = KeyStoreConfig {
        rotation,
        events: Some(Arc::new(move |e: &KeyEvent| {
            sink.lock().expect("events").push(e.clone())
        })),
        tail_interval: Duration::from_millis(50),
    };
    let dyn_kms: Arc<dyn Kms> = kms.clone();
    let store = Arc::new(
        KeyStore::open(client.clone(), dyn_kms, mac, config)
            .await
            .expect("open key store"),
    );
    Node {
        kms,
        env: Envelope::new(store.clone()),
        store,
        events,
    }
}

fn kinds(n: &Node) -> Vec<KeyEventKind> {
    n.events
        .lock()
        .expect("events")
        .iter()
        .map(|e| e.kind)
        .collect()
}

#[tokio::test]
async fn envelope_round_trips_fields_and_binds_topic_and_field() {
    let dir = tempfile::tempdir().expect("tmp");
    let (broker, client) = broker(dir.path()).await;
    let n = node(&client, MAC, RotationPolicy::default()).await;
    let kek = n.store.create_kek("orders-*").await.expect("create");
    assert!(n.env.encrypts("orders-eu") && !n.env.encrypts("payments"));

    let enc = n
        .env
        .encrypt_fields(
            "orders-eu",
            &[
                (Field::Value, b"{\"card\":\"4111\"}".as_slice()),
                (Field::Key, b"customer-7".as_slice()),
                (Field::Header("pii"), b"alice@example.com".as_slice()),
            ],
        )
        .await
        .expect("encrypt");
    assert_eq!(enc.ciphertexts.len(), 3);
    assert_eq!(enc.ciphertexts[0].len(), 15 + 28);
    let rec = n.store.dek_record(&enc.dek_id).expect("dek stored");
    assert_eq!((rec.kek_id.clone(), rec.kek_version), (kek.id.clone(), 1));

    // The header a gateway would write, and back.
    let header = EncHeader {
        dek_id: enc.dek_id,
        flags: FLAG_VALUE | FLAG_KEY,
    };
    let parsed = EncHeader::decode(&header.encode()).expect("header");
    let dek = parsed.dek_id;
    let value = n
        .env
        .decrypt("orders-eu", Field::Value, &dek, &enc.ciphertexts[0])
        .await
        .expect("value");
    assert_eq!(value, b"{\"card\":\"4111\"}");
    let key = n
        .env
        .decrypt("orders-eu", Field::Key, &dek, &enc.ciphertexts[1])
        .await
        .expect("key");
    assert_eq!(key, b"customer-7");
    let h = n
        .env
        .decrypt("orders-eu", Field::Header("pii"), &dek, &enc.ciphertexts[2])
        .await
        .expect("header value");
    assert_eq!(h, b"alice@example.com");

    // Wrong origin topic, wrong field, tampered bytes: a clear error, no panic.
    for (topic, field, ct) in [
        ("orders-us", Field::Value, enc.ciphertexts[0].clone()),
        ("orders-eu", Field::Key, enc.ciphertexts[0].clone()),
        (
            "orders-eu",
            Field::Header("other"),
            enc.ciphertexts[2].clone(),
        ),
        ("orders-eu", Field::Value, {
            let mut c = enc.ciphertexts[0].clone();
            c[20] ^= 0x40;
            c
        }),
        ("orders-eu", Field::Value, vec![1, 2, 3]),
    ] {
        let err = n.env.decrypt(topic, field, &dek, &ct).await;
        assert!(matches!(err, Err(VaultError::Decrypt { .. })), "{err:?}");
        // The batch form refuses the same, even with the right AAD remembered from before.
        let mut cache = DecryptCache::default();
        n.env
            .decrypt_cached(
                &mut cache,
                "orders-eu",
                Field::Value,
                &dek,
                &enc.ciphertexts[0],
            )
            .await
            .expect("warm the cache");
        let err = n
            .env
            .decrypt_cached(&mut cache, topic, field, &dek, &ct)
            .await;
        assert!(matches!(err, Err(VaultError::Decrypt { .. })), "{err:?}");
    }
    // The batch form gives what `decrypt` gives, field after field, with one cache.
    let mut cache = DecryptCache::default();
    for _ in 0..2 {
        for (i, field, want) in [
            (0, Field::Value, b"{\"card\":\"4111\"}".as_slice()),
            (1, Field::Key, b"customer-7".as_slice()),
            (2, Field::Header("pii"), b"alice@example.com".as_slice()),
        ] {
            let got = n
                .env
                .decrypt_cached(&mut cache, "orders-eu", field, &dek, &enc.ciphertexts[i])
                .await
                .expect("cached decrypt");
            assert_eq!(got, want);
        }
    }
    let err = n
        .env
        .decrypt_cached(&mut cache, "orders-eu", Field::Value, &[0xEE; 16], &[0; 40])
        .await;
    assert!(matches!(err, Err(VaultError::UnknownDek(_))), "{err:?}");
    // Single-field API.
    let one = n
        .env
        .encrypt("orders-eu", Field::Value, b"x")
        .await
        .expect("encrypt");
    assert_eq!(one.dek_id, enc.dek_id, "same DEK until rotation");
    drop(n);
    broker.shutdown().await;
}

#[tokio::test]
async fn unknown_keys_are_clear_errors() {
    let dir = tempfile::tempdir().expect("tmp");
    let (broker, client) = broker(dir.path()).await;
    let n = node(&client, MAC, RotationPolicy::default()).await;
    let err = n.env.encrypt("payments", Field::Value, b"x").await;
    assert!(
        matches!(err, Err(VaultError::NoKek(ref t)) if t == "payments"),
        "{err:?}"
    );
    let err = n
        .env
        .decrypt("payments", Field::Value, &[0xEE; 16], &[0; 40])
        .await;
    assert!(matches!(err, Err(VaultError::UnknownDek(_))), "{err:?}");
    assert!(matches!(
        n.store.create_kek("bad name").await,
        Err(VaultError::InvalidName(_))
    ));
    n.store.create_kek("payments").await.expect("create");
    assert!(matches!(
        n.store.create_kek("payments").await,
        Err(VaultError::KekExists(_))
    ));
    assert!(matches!(
        n.store.rotate_kek("nope").await,
        Err(VaultError::UnknownKek(_))
    ));
    assert!(EncHeader::decode(b"garbage").is_err());
    drop(n);
    broker.shutdown().await;
}

#[tokio::test]
async fn kek_rotation_keeps_old_versions_decrypting_and_state_replays() {
    let dir = tempfile::tempdir().expect("tmp");
    let (broker, client) = broker(dir.path()).await;
    let n = node(&client, MAC, RotationPolicy::default()).await;
    n.store.create_kek("payments").await.expect("create");
    let old = n
        .env
        .encrypt("payments", Field::Value, b"v1 data")
        .await
        .expect("encrypt");
    let rotated = n
        .store
        .rotate_kek_by("payments", Some("User:ops"))
        .await
        .expect("rotate");
    assert_eq!(rotated.versions.len(), 2);
    // Who rotated is kept with the version (and replayed below with the rest).
    assert_eq!(rotated.versions[0].created_by, None);
    assert_eq!(rotated.versions[1].created_by.as_deref(), Some("User:ops"));
    let new = n
        .env
        .encrypt("payments", Field::Value, b"v2 data")
        .await
        .expect("encrypt");
    assert_ne!(old.dek_id, new.dek_id, "rotation replaces the DEK");
    assert_eq!(n.store.dek_record(&new.dek_id).expect("dek").kek_version, 2);
    // Retire: decrypt only.
    n.store.create_kek("audit-*").await.expect("create");
    let audit = n
        .env
        .encrypt("audit-eu", Field::Value, b"a")
        .await
        .expect("encrypt");
    let retired = n.store.retire_kek("audit-*").await.expect("retire");
    assert_eq!(retired.state, KekState::Retired);
    assert!(matches!(
        n.env.encrypt("audit-eu", Field::Value, b"a").await,
        Err(VaultError::NoKek(_))
    ));
    assert_eq!(
        kinds(&n),
        vec![
            KeyEventKind::KekCreated,
            KeyEventKind::DekCreated,
            KeyEventKind::KekRotated,
            KeyEventKind::DekCreated,
            KeyEventKind::KekCreated,
            KeyEventKind::DekCreated,
            KeyEventKind::KekRetired,
        ]
    );
    let keks = n.store.keks();
    drop(n);

    // A new process (new LocalKms, same master key) replays everything.
    let again = node(&client, MAC, RotationPolicy::default()).await;
    assert_eq!(again.store.keks(), keks);
    assert_eq!(again.store.rejected_records(), 0);
    for (ct, pt, topic) in [
        (&old, &b"v1 data"[..], "payments"),
        (&new, &b"v2 data"[..], "payments"),
        (&audit, &b"a"[..], "audit-eu"),
    ] {
        let back = again
            .env
            .decrypt(topic, Field::Value, &ct.dek_id, &ct.ciphertext)
            .await
            .expect("decrypt after replay");
        assert_eq!(back, pt);
    }
    // The new process makes its own DEK (DEKs are never shared between writers).
    let mine = again
        .env
        .encrypt("payments", Field::Value, b"x")
        .await
        .expect("encrypt");
    assert_ne!(mine.dek_id, new.dek_id);
    drop(again);
    broker.shutdown().await;
}

#[tokio::test]
async fn deks_rotate_by_count_and_age() {
    let dir = tempfile::tempdir().expect("tmp");
    let (broker, client) = broker(dir.path()).await;
    let policy = RotationPolicy {
        max_encryptions: 3,
        max_age: Duration::from_millis(400),
        cache_capacity: 2,
    };
    let n = node(&client, MAC, policy).await;
    n.store.create_kek("t").await.expect("create");
    let mut ids = Vec::new();
    let mut cts = Vec::new();
    for i in 0..4u8 {
        let e = n
            .env
            .encrypt("t", Field::Value, &[i])
            .await
            .expect("encrypt");
        ids.push(e.dek_id);
        cts.push(e);
    }
    assert_eq!(ids[0], ids[1]);
    assert_eq!(ids[1], ids[2]);
    assert_ne!(ids[2], ids[3], "the 4th encryption needs a new DEK");
    // Two fields count as two encryptions: 1 used + 2 = 3 fits, then a new DEK.
    let f = n
        .env
        .encrypt_fields("t", &[(Field::Value, b"a"), (Field::Key, b"b")])
        .await
        .expect("fields");
    assert_eq!(f.dek_id, ids[3]);
    let g = n.env.encrypt("t", Field::Value, b"c").await.expect("enc");
    assert_ne!(g.dek_id, ids[3]);
    tokio::time::sleep(Duration::from_millis(450)).await;
    let h = n.env.encrypt("t", Field::Value, b"d").await.expect("enc");
    assert_ne!(h.dek_id, g.dek_id, "age rotation");
    // Every DEK still decrypts (cache capacity 2 forces re-unwraps).
    for (i, e) in cts.iter().enumerate() {
        let back = n
            .env
            .decrypt("t", Field::Value, &e.dek_id, &e.ciphertext)
            .await
            .expect("decrypt");
        assert_eq!(back, [u8::try_from(i).expect("i")]);
    }
    drop(n);
    broker.shutdown().await;
}

#[tokio::test]
async fn destroying_a_kek_shreds_its_data() {
    let dir = tempfile::tempdir().expect("tmp");
    let (broker, client) = broker(dir.path()).await;
    let n = node(&client, MAC, RotationPolicy::default()).await;
    n.store.create_kek("pii").await.expect("create");
    let e1 = n
        .env
        .encrypt("pii", Field::Value, b"alice")
        .await
        .expect("encrypt");
    n.store.rotate_kek("pii").await.expect("rotate");
    let e2 = n
        .env
        .encrypt("pii", Field::Value, b"bob")
        .await
        .expect("encrypt");
    // What an attacker (or an auditor) keeps: the wrapped DEKs and their KEK references.
    let kek = n.store.kek("pii").expect("kek");
    let wrapped: Vec<_> = [e1.dek_id, e2.dek_id]
        .iter()
        .map(|id| {
            let rec = n.store.dek_record(id).expect("dek");
            let v = kek
                .version(rec.kek_version)
                .expect("version")
                .kms_ref
                .clone();
            (v, rec.wrapped)
        })
        .collect();
    for (r, w) in &wrapped {
        n.kms
            .unwrap(r, w)
            .await
            .expect("unwraps before destruction");
    }
    n.env
        .decrypt("pii", Field::Value, &e1.dek_id, &e1.ciphertext)
        .await
        .expect("cached");

    let destroyed = n.store.destroy_kek("pii").await.expect("destroy");
    assert_eq!(destroyed.state, KekState::Destroyed);
    assert!(destroyed.versions.iter().all(|v| v.destroyed));
    assert_eq!(kinds(&n).last(), Some(&KeyEventKind::KekDestroyed));
    let destroyed_event = n
        .events
        .lock()
        .expect("events")
        .last()
        .cloned()
        .expect("ev");
    assert_eq!(destroyed_event.kek_id, kek.id);

    // The proof: unwrapping any DEK under it fails, in the KMS itself and through the store.
    for (r, w) in &wrapped {
        assert!(n.kms.unwrap(r, w).await.is_err(), "KMS still unwraps");
    }
    for e in [&e1, &e2] {
        assert!(matches!(
            n.store.unwrap_dek(&e.dek_id).await,
            Err(VaultError::Destroyed { .. })
        ));
        // The cache was cleared: decryption fails too.
        let err = n
            .env
            .decrypt("pii", Field::Value, &e.dek_id, &e.ciphertext)
            .await;
        assert!(matches!(err, Err(VaultError::Destroyed { .. })), "{err:?}");
    }
    assert!(matches!(
        n.env.encrypt("pii", Field::Value, b"x").await,
        Err(VaultError::NoKek(_))
    ));
    // Nothing of that name is left to destroy.
    assert!(matches!(
        n.store.destroy_kek("pii").await,
        Err(VaultError::UnknownKek(_))
    ));
    drop(n);

    // A fresh process with the same master key replays the log: the material is gone.
    let fresh = node(&client, MAC, RotationPolicy::default()).await;
    for (r, w) in &wrapped {
        assert!(
            fresh.kms.unwrap(r, w).await.is_err(),
            "replay resurrected a KEK"
        );
    }
    let err = fresh
        .env
        .decrypt("pii", Field::Value, &e2.dek_id, &e2.ciphertext)
        .await;
    assert!(matches!(err, Err(VaultError::Destroyed { .. })), "{err:?}");
    assert!(fresh.store.kek("pii").is_none());
    // The name can be reused with a new KEK.
    let new = fresh.store.create_kek("pii").await.expect("recreate");
    assert_ne!(new.id, kek.id);
    drop(fresh);
    broker.shutdown().await;
}

#[tokio::test]
async fn records_with_a_bad_mac_are_skipped() {
    let dir = tempfile::tempdir().expect("tmp");
    let (broker, client) = broker(dir.path()).await;
    let n = node(&client, MAC, RotationPolicy::default()).await;
    n.store.create_kek("orders").await.expect("create");
    // Forge a KEK record (marking it retired) with a wrong MAC, and one with none.
    let mut kek = n.store.kek("orders").expect("kek");
    kek.state = KekState::Retired;
    let key = format!("{{\"type\":\"kek\",\"id\":\"{}\"}}", kek.id).into_bytes();
    let value = serde_json::to_vec(&kek).expect("json");
    let wrong = record_mac(&[9; 32], KEYS_TOPIC, &key, Some(&value));
    let mut b = BatchBuilder::new();
    b.push(
        Some(&key),
        Some(&value),
        &[RecordHeader::new(
            Bytes::from_static(MAC_HEADER.as_bytes()),
            Some(Bytes::copy_from_slice(&wrong)),
        )],
        0,
    )
    .expect("push");
    b.push(Some(&key), Some(&value), &[], 0).expect("push");
    client
        .produce(KEYS_TOPIC, 0, b.build().expect("build"), -1)
        .await
        .expect("produce");
    n.store.sync().await.expect("sync");
    assert_eq!(n.store.rejected_records(), 2);
    assert_eq!(n.store.kek("orders").expect("kek").state, KekState::Active);
    drop(n);
    // A node with another MAC key accepts nothing.
    let other = node(&client, [1; 32], RotationPolicy::default()).await;
    assert!(other.store.keks().is_empty());
    assert!(other.store.rejected_records() >= 4);
    drop(other);
    broker.shutdown().await;
}

#[tokio::test]
async fn two_nodes_share_keys_and_destruction_reaches_both() {
    let dir = tempfile::tempdir().expect("tmp");
    let (broker, client) = broker(dir.path()).await;
    let client_b = Client::connect(client.config().clone())
        .await
        .expect("client b");
    let a = node(&client, MAC, RotationPolicy::default()).await;
    let b = node(&client_b, MAC, RotationPolicy::default()).await;
    a.store.create_kek("orders-*").await.expect("create");
    let enc = a
        .env
        .encrypt("orders-1", Field::Value, b"hello")
        .await
        .expect("encrypt");
    // B learns the DEK on its first miss (read-your-writes), not by waiting for the tail.
    let back = b
        .env
        .decrypt("orders-1", Field::Value, &enc.dek_id, &enc.ciphertext)
        .await
        .expect("b decrypts");
    assert_eq!(back, b"hello");
    // B encrypts under the same KEK with its own DEK once its tail saw the KEK.
    let enc_b = b
        .env
        .encrypt("orders-2", Field::Value, b"from b")
        .await
        .expect("b encrypts");
    assert_ne!(enc_b.dek_id, enc.dek_id);
    a.env
        .decrypt("orders-2", Field::Value, &enc_b.dek_id, &enc_b.ciphertext)
        .await
        .expect("a decrypts b");
    // B shreds; A (holding the DEK in its cache) stops decrypting once its tail applies it.
    b.store.destroy_kek("orders-*").await.expect("destroy");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let r = a
            .env
            .decrypt("orders-1", Field::Value, &enc.dek_id, &enc.ciphertext)
            .await;
        if matches!(r, Err(VaultError::Destroyed { .. })) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "A still decrypts: {r:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(matches!(
        a.env.encrypt("orders-1", Field::Value, b"x").await,
        Err(VaultError::NoKek(_))
    ));
    drop(a);
    drop(b);
    broker.shutdown().await;
}
