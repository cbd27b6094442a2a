//! The broker with an internal credential, end to end over TCP: the protocol client with the
//! right credential produces and fetches; a wrong password gets SASL_AUTHENTICATION_FAILED and
//! a closed connection; any request before authentication closes the connection; the legacy
//! SaslHandshake v0 flow works; without a credential nothing changes.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use gatehouse_broker::{Broker, BrokerConfig, InternalCredential};
use gatehouse_protocol::ErrorCode;
use gatehouse_protocol::client::{
    Client, ClientConfig, Connection, ConnectionConfig, SaslCredentials, SaslMechanism, broker_code,
};
use gatehouse_protocol::frame::FrameDecoder;
use gatehouse_protocol::header::{decode_body, encode_request, split_response};
use gatehouse_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, MetadataRequest, SaslAuthenticateRequest,
    SaslAuthenticateResponse, SaslHandshakeRequest, SaslHandshakeResponse,
};
use gatehouse_protocol::records::{BatchBuilder, RawBatches};
use kafka_protocol::protocol::{Encodable, HeaderVersion, Request, StrBytes};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const USER: &str = "gatehouse-internal";
const PASSWORD: &str = "8f3b0c1e-internal-secret";

async fn start(credential: Option<InternalCredential>) -> (Broker, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = BrokerConfig {
        data_dir: dir.path().to_path_buf(),
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        group_initial_rebalance_delay_ms: 0,
        internal_credential: credential,
        ..BrokerConfig::default()
    };
    let broker = Broker::start(config).await.expect("broker starts");
    (broker, dir)
}

async fn secured() -> (Broker, tempfile::TempDir) {
    start(Some(InternalCredential::new(USER, PASSWORD))).await
}

fn connection_config(sasl: Option<SaslCredentials>) -> ConnectionConfig {
    ConnectionConfig {
        request_timeout: Duration::from_secs(5),
        connect_timeout: Duration::from_secs(5),
        sasl,
        ..ConnectionConfig::default()
    }
}

async fn within<F: std::future::Future>(f: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(20), f)
        .await
        .expect("test step took too long")
}

/// A bare socket speaking Kafka frames, to see exactly what the broker answers and when it
/// closes.
struct Raw {
    stream: TcpStream,
    buf: BytesMut,
    decoder: FrameDecoder,
}

impl Raw {
    async fn connect(addr: SocketAddr) -> Raw {
        Raw {
            stream: TcpStream::connect(addr).await.expect("tcp connect"),
            buf: BytesMut::new(),
            decoder: FrameDecoder::new(1 << 20),
        }
    }

    async fn write(&mut self, frame: &[u8]) {
        self.stream.write_all(frame).await.expect("write");
    }

    /// The next frame (without size prefix), or `None` once the broker closed the connection.
    async fn frame(&mut self) -> Option<Bytes> {
        loop {
            if let Some(f) = self.decoder.decode(&mut self.buf).expect("frame") {
                return Some(f);
            }
            let n = within(self.stream.read_buf(&mut self.buf))
                .await
                .unwrap_or(0);
            if n == 0 {
                return None;
            }
        }
    }

    async fn request<R: Request + Encodable + HeaderVersion>(
        &mut self,
        req: &R,
        version: i16,
    ) -> Option<R::Response> {
        let key = ApiKey::try_from(R::KEY).expect("key");
        let frame = encode_request(key, version, 7, Some("raw"), req).expect("encode");
        self.write(&frame).await;
        let resp = self.frame().await?;
        let (_, body) =
            split_response(resp, R::Response::header_version(version)).expect("response header");
        Some(decode_body(body, version).expect("response body"))
    }

    /// True when the broker closed the connection (nothing more arrives).
    async fn closed(&mut self) -> bool {
        self.frame().await.is_none()
    }
}

fn plain_handshake() -> SaslHandshakeRequest {
    SaslHandshakeRequest::default().with_mechanism(StrBytes::from_static_str("PLAIN"))
}

fn plain_token(user: &str, password: &str) -> Bytes {
    Bytes::from(format!("\0{user}\0{password}").into_bytes())
}

#[tokio::test]
async fn client_with_the_credential_produces_and_fetches() {
    let (broker, _dir) = secured().await;
    let config = ClientConfig {
        connection: connection_config(None),
        ..ClientConfig::new([broker.local_addr().to_string()])
    }
    .with_sasl(SaslCredentials::plain(USER, PASSWORD));
    within(async {
        let client = Client::connect(config).await.expect("connect");
        client.create_topic("auth-t", 1, &[]).await.expect("create");
        let mut b = BatchBuilder::new();
        b.push(Some(b"k"), Some(b"v"), &[], 1_700_000_000_000)
            .expect("push");
        let base = client
            .produce("auth-t", 0, b.build().expect("build"), -1)
            .await
            .expect("produce");
        assert_eq!(base, 0);
        let fetched = client
            .fetch("auth-t", 0, 0, 1 << 20, 100)
            .await
            .expect("fetch");
        assert_eq!(fetched.high_watermark, 1);
        let records: Vec<_> = RawBatches::new(fetched.records)
            .flat_map(|b| b.expect("batch").records().expect("records"))
            .collect();
        assert_eq!(records.len(), 1);
        assert_eq!(records[0].value.as_deref(), Some(&b"v"[..]));
    })
    .await;
    broker.shutdown().await;
}

#[tokio::test]
async fn wrong_password_fails_with_58_and_closes() {
    let (broker, _dir) = secured().await;
    let addr = broker.local_addr();

    let wrong = SaslCredentials::plain(USER, "not-the-password");
    let err = within(Connection::connect(addr, connection_config(Some(wrong))))
        .await
        .expect_err("wrong password refused");
    assert_eq!(broker_code(&err), Some(ErrorCode::SaslAuthenticationFailed));
    let text = err.to_string();
    assert!(text.contains("invalid credentials"), "{text}");
    assert!(
        !text.contains("not-the-password"),
        "password in error: {text}"
    );

    let wrong_user = SaslCredentials::plain("someone", PASSWORD);
    let err = within(Connection::connect(
        addr,
        connection_config(Some(wrong_user)),
    ))
    .await
    .expect_err("wrong user refused");
    assert_eq!(broker_code(&err), Some(ErrorCode::SaslAuthenticationFailed));

    // On the wire: the error response, then the broker closes.
    let mut raw = Raw::connect(addr).await;
    let hs: SaslHandshakeResponse = raw.request(&plain_handshake(), 1).await.expect("handshake");
    assert_eq!(hs.error_code, 0);
    let auth = SaslAuthenticateRequest::default().with_auth_bytes(plain_token(USER, "nope"));
    let resp: SaslAuthenticateResponse = raw.request(&auth, 2).await.expect("auth response");
    assert_eq!(resp.error_code, 58);
    assert_eq!(
        resp.error_message.as_deref(),
        Some("Authentication failed: invalid credentials")
    );
    assert!(
        raw.closed().await,
        "connection closed after a failed authentication"
    );

    // The right credential over the same listener still works.
    let ok = SaslCredentials::plain(USER, PASSWORD);
    let conn = within(Connection::connect(addr, connection_config(Some(ok))))
        .await
        .expect("right credential");
    within(conn.send(MetadataRequest::default().with_topics(None), None))
        .await
        .expect("metadata after authentication");
    broker.shutdown().await;
}

#[tokio::test]
async fn requests_before_authentication_close_the_connection() {
    let (broker, _dir) = secured().await;
    let addr = broker.local_addr();

    // ApiVersions is answered and advertises the SASL APIs.
    let mut raw = Raw::connect(addr).await;
    let versions: ApiVersionsResponse = raw
        .request(&ApiVersionsRequest::default(), 3)
        .await
        .expect("ApiVersions before authentication");
    for (key, max) in [(ApiKey::SaslHandshake, 1), (ApiKey::SaslAuthenticate, 2)] {
        assert!(
            versions
                .api_keys
                .iter()
                .any(|k| k.api_key == key as i16 && k.min_version == 0 && k.max_version == max),
            "{key:?} advertised"
        );
    }
    // Metadata before authentication: no answer, connection closed.
    let none = raw
        .request(&MetadataRequest::default().with_topics(None), 12)
        .await;
    assert!(none.is_none(), "Metadata answered before authentication");

    // Also after the handshake but before SaslAuthenticate.
    let mut raw = Raw::connect(addr).await;
    raw.request(&plain_handshake(), 1).await.expect("handshake");
    let none = raw
        .request(&MetadataRequest::default().with_topics(None), 12)
        .await;
    assert!(
        none.is_none(),
        "Metadata answered between handshake and authenticate"
    );

    // A client without credentials fails on its first request.
    let conn = within(Connection::connect(addr, connection_config(None)))
        .await
        .expect("ApiVersions works without credentials");
    within(conn.send(MetadataRequest::default(), None))
        .await
        .expect_err("Metadata without authentication");

    // SCRAM is not enabled: UNSUPPORTED_SASL_MECHANISM.
    let scram = SaslCredentials::new(SaslMechanism::ScramSha256, USER, PASSWORD);
    let err = within(Connection::connect(addr, connection_config(Some(scram))))
        .await
        .expect_err("SCRAM refused");
    assert_eq!(broker_code(&err), Some(ErrorCode::UnsupportedSaslMechanism));
    assert!(err.to_string().contains("PLAIN"), "{err}");
    broker.shutdown().await;
}

#[tokio::test]
async fn legacy_handshake_v0_flow() {
    let (broker, _dir) = secured().await;
    let addr = broker.local_addr();

    let mut raw = Raw::connect(addr).await;
    let hs: SaslHandshakeResponse = raw.request(&plain_handshake(), 0).await.expect("handshake");
    assert_eq!(hs.error_code, 0);
    let token = plain_token(USER, PASSWORD);
    let mut frame = BytesMut::new();
    frame.extend_from_slice(&(token.len() as i32).to_be_bytes());
    frame.extend_from_slice(&token);
    raw.write(&frame).await;
    let answer = raw.frame().await.expect("empty server token");
    assert!(answer.is_empty());
    let md = raw
        .request(&MetadataRequest::default().with_topics(None), 12)
        .await;
    assert!(md.is_some(), "Metadata after the v0 flow");

    let mut raw = Raw::connect(addr).await;
    raw.request(&plain_handshake(), 0).await.expect("handshake");
    let token = plain_token(USER, "wrong");
    let mut frame = BytesMut::new();
    frame.extend_from_slice(&(token.len() as i32).to_be_bytes());
    frame.extend_from_slice(&token);
    raw.write(&frame).await;
    assert!(raw.closed().await, "wrong raw token closes the connection");
    broker.shutdown().await;
}

#[tokio::test]
async fn without_a_credential_nothing_changes() {
    let (broker, _dir) = start(None).await;
    let addr = broker.local_addr();
    let conn = within(Connection::connect(addr, connection_config(None)))
        .await
        .expect("connect");
    assert!(
        !conn
            .broker_versions()
            .contains_key(&(ApiKey::SaslHandshake as i16)),
        "SASL not advertised"
    );
    within(conn.send(MetadataRequest::default().with_topics(None), None))
        .await
        .expect("metadata without authentication");
    // A client asking for SASL gets a clear error.
    let err = within(Connection::connect(
        addr,
        connection_config(Some(SaslCredentials::plain(USER, PASSWORD))),
    ))
    .await
    .expect_err("no SASL on an open broker");
    assert_eq!(broker_code(&err), Some(ErrorCode::UnsupportedVersion));
    broker.shutdown().await;
}
