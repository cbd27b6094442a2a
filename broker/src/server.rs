//! The Kafka listener: one task per connection, requests handled in arrival order, responses
//! written in request order.
//!
//! Kafka processes one request per connection at a time; so do we, with one exception that
//! keeps pipelined producers fast: a Produce request is *appended* in order, but waiting for the
//! fsync that makes it durable happens in the writer task, so the next request's append can
//! share the same group commit. Responses still leave in request order.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};

use gatehouse_protocol::frame::FrameDecoder;

use crate::handlers::{self, Outcome};
use crate::state::BrokerState;
use std::sync::Arc;

/// A response still being produced (e.g. waiting for an fsync); `None` means no response
/// (acks=0 produce).
pub(crate) type PendingResponse = Pin<Box<dyn Future<Output = Option<Bytes>> + Send>>;

/// Requests a client may have in flight before we stop reading from it.
const MAX_IN_FLIGHT: usize = 64;

/// Accepts connections until `shutdown` turns true.
pub(crate) async fn serve(
    listener: TcpListener,
    state: Arc<BrokerState>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let state = state.clone();
                    let shutdown = shutdown.clone();
                    tokio::spawn(async move {
                        connection(stream, peer, state, shutdown).await;
                    });
                }
                Err(e) => {
                    tracing::warn!(error = %e, "Accept failed; continuing.");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
            },
            _ = shutdown.changed() => break,
        }
    }
}

async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    state: Arc<BrokerState>,
    mut shutdown: watch::Receiver<bool>,
) {
    let _ = stream.set_nodelay(true);
    let (mut rd, mut wr) = stream.into_split();
    let (tx, mut rx) = mpsc::channel::<PendingResponse>(MAX_IN_FLIGHT);
    let writer = tokio::spawn(async move {
        while let Some(pending) = rx.recv().await {
            if let Some(bytes) = pending.await
                && let Err(e) = wr.write_all(&bytes).await
            {
                tracing::debug!(error = %e, "Client went away while we wrote a response.");
                return;
            }
        }
        let _ = wr.shutdown().await;
    });
    let decoder = FrameDecoder::new(state.config.max_request_bytes);
    let mut buf = BytesMut::with_capacity(64 * 1024);
    let mut conn = handlers::ConnectionInfo::new(peer.ip().to_string(), &state);
    'read: loop {
        loop {
            match decoder.decode(&mut buf) {
                Ok(Some(frame)) => match handlers::handle(&state, &mut conn, frame).await {
                    Outcome::Respond(pending) => {
                        if tx.send(pending).await.is_err() {
                            break 'read;
                        }
                    }
                    Outcome::RespondAndClose(pending, reason) => {
                        tracing::warn!(%peer, %reason, "Closing connection after the response.");
                        let _ = tx.send(pending).await;
                        break 'read;
                    }
                    Outcome::Close(reason) => {
                        tracing::warn!(%peer, %reason, "Closing connection.");
                        break 'read;
                    }
                },
                Ok(None) => break,
                Err(e) => {
                    tracing::warn!(%peer, error = %e, "Closing connection: bad frame.");
                    break 'read;
                }
            }
        }
        tokio::select! {
            n = rd.read_buf(&mut buf) => match n {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) => {
                    tracing::debug!(%peer, error = %e, "Read failed.");
                    break;
                }
            },
            _ = shutdown.changed() => break,
        }
    }
    drop(tx);
    let _ = writer.await;
}
