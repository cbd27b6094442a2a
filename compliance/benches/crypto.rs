//! AES-256-GCM seal throughput: the vault's cipher (`aes-gcm`, through
//! `gatehouse_compliance::vault::seal`, random IV per call) against `aws-lc-rs` (already
//! linked through rustls), at 1 KiB and 16 KiB records. Prints MB/s for each and the ratio.
//! Run with `cargo bench -p gatehouse-compliance --bench crypto`; not part of any test run.
//!
//! Three rows per size: `vault::seal` (what the gateway pays: RNG IV + allocation + seal),
//! `aes-gcm raw` (in place, fixed buffer, counter IV) and `aws-lc-rs raw` (the same for
//! aws-lc-rs), so the cipher cost is separated from the API overhead.

use std::hint::black_box;
use std::time::{Duration, Instant};

use aes_gcm::aead::{AeadInOut, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce};
use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce as LcNonce, UnboundKey};
use gatehouse_compliance::vault::{DataKey, seal};

const KEY: [u8; 32] = [0x5a; 32];
const AAD: &[u8] = b"\x01\x00\x00\x00\x20................................\x00\x00\x00\x05value\x00\x00\x00\x08payments";
const RUN: Duration = Duration::from_millis(1500);

fn iv(n: u64) -> [u8; 12] {
    let mut iv = [0u8; 12];
    iv[4..].copy_from_slice(&n.to_be_bytes());
    iv
}

/// MB/s (10^6 bytes) of `f` run repeatedly over `size`-byte messages for about [`RUN`].
fn measure(size: usize, mut f: impl FnMut(u64)) -> f64 {
    for i in 0..1000 {
        f(i);
    }
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < RUN {
        for _ in 0..256 {
            f(n);
            n += 1;
        }
    }
    let secs = start.elapsed().as_secs_f64();
    n as f64 * size as f64 / secs / 1e6
}

fn main() {
    let vault_key = DataKey::from_bytes(KEY);
    let rc = Aes256Gcm::new(&KEY.into());
    let lc = match UnboundKey::new(&AES_256_GCM, &KEY) {
        Ok(k) => LessSafeKey::new(k),
        Err(e) => panic!("aws-lc-rs key: {e}"),
    };
    println!("AES-256-GCM seal throughput (MB/s = 10^6 bytes/s, one thread)");
    println!(
        "{:>7}  {:>14}  {:>14}  {:>14}  {:>22}",
        "size", "vault::seal", "aes-gcm raw", "aws-lc-rs raw", "aws-lc-rs / aes-gcm"
    );
    for size in [1024usize, 16 * 1024] {
        let msg = vec![0xA5u8; size];
        let api = measure(size, |_| {
            let out = seal(&vault_key, AAD, black_box(&msg));
            black_box(out.map(|v| v.len()).unwrap_or(0));
        });
        let mut buf = msg.clone();
        let raw_rc = measure(size, |i| {
            let tag =
                rc.encrypt_inout_detached(&Nonce::from(iv(i)), AAD, buf.as_mut_slice().into());
            black_box(tag.is_ok());
        });
        let mut buf2 = msg.clone();
        let raw_lc = measure(size, |i| {
            let tag = lc.seal_in_place_separate_tag(
                LcNonce::assume_unique_for_key(iv(i)),
                Aad::from(AAD),
                buf2.as_mut_slice(),
            );
            black_box(tag.is_ok());
        });
        println!(
            "{:>5} B  {api:>14.0}  {raw_rc:>14.0}  {raw_lc:>14.0}  {:>21.2}x",
            size,
            raw_lc / raw_rc
        );
    }
}
