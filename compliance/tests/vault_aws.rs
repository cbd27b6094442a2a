//! `AwsKms` end to end against a real `moto_server` (the AWS KMS API emulator) started by
//! the test from `<workspace>/.venv/bin/moto_server` (`pip install "moto[server]"`); skipped
//! with a printed reason only if it is missing. Also runs the key store and envelope on top
//! of it against the bundled broker.

use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use gatehouse_broker::{Broker, BrokerConfig};
use gatehouse_compliance::vault::{
    AwsCredentials, AwsKms, AwsKmsConfig, DataKey, Envelope, Field, KeyStore, KeyStoreConfig, Kms,
    KmsError, VaultError,
};
use gatehouse_protocol::client::{Client, ClientConfig};

/// Kills the moto_server this test started (by its own child handle) when dropped.
struct Moto {
    child: Child,
    endpoint: String,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_moto() -> Option<Moto> {
    let bin = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.venv/bin/moto_server");
    if !bin.exists() {
        println!(
            "SKIPPED: {} not found (pip install \"moto[server]\" into .venv)",
            bin.display()
        );
        return None;
    }
    let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let child = Command::new(&bin)
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn moto_server");
    let moto = Moto {
        child,
        endpoint: format!("http://127.0.0.1:{port}"),
    };
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let deadline = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
        assert!(Instant::now() < deadline, "moto_server did not start");
        std::thread::sleep(Duration::from_millis(100));
    }
    Some(moto)
}

fn kms(endpoint: &str) -> AwsKms {
    AwsKms::new(AwsKmsConfig::new(
        endpoint,
        "us-east-1",
        AwsCredentials::new("AKIDEXAMPLE", "not-a-real-secret", None),
    ))
    .expect("aws kms")
}

#[tokio::test]
async fn aws_kms_against_moto_server() {
    let Some(moto) = start_moto() else { return };
    let kms = kms(&moto.endpoint);
    assert!(!format!("{kms:?}").contains("not-a-real-secret"));

    let kek = kms.create_kek().await.expect("CreateKey");
    assert!(kek.as_str().starts_with("arn:aws:kms:us-east-1:"), "{kek}");
    assert_eq!(kms.key_state(&kek).await.expect("state"), "Enabled");
    let dek = DataKey::generate().expect("dek");
    let wrapped = kms.wrap(&kek, &dek).await.expect("Encrypt");
    assert!(!wrapped.windows(32).any(|w| w == dek.expose_secret()));
    let back = kms.unwrap(&kek, &wrapped).await.expect("Decrypt");
    assert_eq!(back.expose_secret(), dek.expose_secret());

    // A blob under one key does not open under another; garbage is an API error.
    let other = kms.create_kek().await.expect("CreateKey");
    assert!(kms.unwrap(&other, &wrapped).await.is_err());
    assert!(matches!(
        kms.unwrap(&kek, b"not a ciphertext blob").await,
        Err(KmsError::Api { .. } | KmsError::Unusable { .. })
    ));
    // Unknown key.
    let missing = gatehouse_compliance::vault::KekRef::new(
        "arn:aws:kms:us-east-1:123456789012:key/00000000-0000-0000-0000-000000000000",
    );
    assert!(kms.wrap(&missing, &dek).await.is_err());

    // Destroy = DisableKey + ScheduleKeyDeletion; a second destroy is a no-op.
    kms.destroy_kek(&kek).await.expect("destroy");
    assert_eq!(kms.key_state(&kek).await.expect("state"), "PendingDeletion");
    kms.destroy_kek(&kek).await.expect("destroy again");
    // Real AWS KMS refuses Encrypt and Decrypt under a disabled or pending-deletion key
    // (KMSInvalidStateException / DisabledException → KmsError::Unusable); moto 5.2.5 does
    // not emulate key states on those calls, so the failing-unwrap proof of shredding is in
    // tests/vault_store.rs (LocalKms) and the key store refuses destroyed KEKs itself (below).

    // A bad endpoint is a configuration error, not a panic.
    assert!(matches!(
        AwsKms::new(AwsKmsConfig::new(
            "ftp://x",
            "us-east-1",
            AwsCredentials::new("a", "b", None)
        )),
        Err(KmsError::Config(_))
    ));
}

#[tokio::test]
async fn key_store_over_aws_kms() {
    let Some(moto) = start_moto() else { return };
    let dir = tempfile::tempdir().expect("tmp");
    let broker = Broker::start(BrokerConfig {
        data_dir: dir.path().to_path_buf(),
        listen: "127.0.0.1:0".parse().expect("addr"),
        ..BrokerConfig::default()
    })
    .await
    .expect("broker");
    let client = Client::connect(ClientConfig::new([broker.local_addr().to_string()]))
        .await
        .expect("client");
    let aws = Arc::new(kms(&moto.endpoint));
    let dyn_kms: Arc<dyn Kms> = aws.clone();
    let store = Arc::new(
        KeyStore::open(client.clone(), dyn_kms, [5; 32], KeyStoreConfig::default())
            .await
            .expect("open"),
    );
    let env = Envelope::new(store.clone());
    let kek = store.create_kek("cards").await.expect("create");
    assert_eq!(kek.kms, "aws-kms");
    let enc = env
        .encrypt("cards", Field::Value, b"4111 1111 1111 1111")
        .await
        .expect("encrypt");
    drop(env);
    drop(store);

    // A second process (fresh cache) unwraps through moto.
    let dyn_kms: Arc<dyn Kms> = aws.clone();
    let store = Arc::new(
        KeyStore::open(client.clone(), dyn_kms, [5; 32], KeyStoreConfig::default())
            .await
            .expect("reopen"),
    );
    let env = Envelope::new(store.clone());
    let back = env
        .decrypt("cards", Field::Value, &enc.dek_id, &enc.ciphertext)
        .await
        .expect("decrypt");
    assert_eq!(back, b"4111 1111 1111 1111");

    store.destroy_kek("cards").await.expect("destroy");
    let kms_ref = kek.versions[0].kms_ref.clone();
    assert_eq!(
        aws.key_state(&kms_ref).await.expect("state"),
        "PendingDeletion"
    );
    let err = env
        .decrypt("cards", Field::Value, &enc.dek_id, &enc.ciphertext)
        .await;
    assert!(matches!(err, Err(VaultError::Destroyed { .. })), "{err:?}");
    assert!(matches!(
        store.unwrap_dek(&enc.dek_id).await,
        Err(VaultError::Destroyed { .. })
    ));
    drop(env);
    drop(store);
    broker.shutdown().await;
}
