//! `cargo bench --bench transport`: the cost of the ShangMi transport against the AES baseline,
//! measured in one run on this machine.
//!
//! 1. SM4-GCM seal throughput on one core (16 KiB messages), and AES-128-GCM (ring, AES-NI).
//! 2. Loopback QUIC bulk transfer between two endpoints of this process: TLS_SM4_GCM_SM3 (the
//!    node's provider) against quinn's default TLS_AES_128_GCM_SHA256 (ring), with the same SM2
//!    certificates, so the only difference is the cipher suite and key exchange.
//!
//! Ends with `BENCH quic sm_mib_s=<a> aes_mib_s=<b> ratio_sm_vs_aes=<a/b>`.
//! `XY_BENCH_MIB` sets the bulk size (default 256), `XY_BENCH_ROUNDS` the alternating rounds
//! (default 2; the best round of each suite counts).

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use rustls::crypto::CryptoProvider;
use xy_gmtls::pki::PeerIdentity;
use xy_transport::devpki;
use xy_transport::quic::BulkReceiver;
use xy_transport::{Credentials, EndpointOptions, Handler, PeerEndpoint};

const MESSAGE: usize = 16 * 1024;

/// MiB/s of `seal` over MESSAGE-byte buffers, run for about a second.
fn seal_throughput(mut seal: impl FnMut(u64, &mut [u8])) -> f64 {
    let mut buffer = vec![0x5au8; MESSAGE];
    for i in 0..64 {
        seal(i, &mut buffer);
    }
    let started = Instant::now();
    let mut sealed = 0u64;
    while started.elapsed() < Duration::from_secs(1) {
        for _ in 0..64 {
            seal(sealed, &mut buffer);
            sealed += 1;
        }
    }
    black_box(&buffer);
    (sealed as f64 * MESSAGE as f64) / (1 << 20) as f64 / started.elapsed().as_secs_f64()
}

struct Drain;

impl Handler for Drain {
    async fn request(&self, _peer: &PeerIdentity, payload: Vec<u8>) -> Result<Vec<u8>, String> {
        Ok(payload)
    }

    async fn bulk(
        &self,
        _peer: &PeerIdentity,
        _name: Vec<u8>,
        body: &mut BulkReceiver<'_>,
    ) -> Result<(), String> {
        while body
            .next_chunk()
            .await
            .map_err(|e| e.to_string())?
            .is_some()
        {}
        Ok(())
    }
}

/// The AES baseline: quinn's default suite (ring) and key exchange, with the SM2 certificate
/// handling of the node's provider so both runs authenticate the same way.
fn aes_provider() -> Arc<CryptoProvider> {
    let ring = rustls::crypto::ring::default_provider();
    let sm = xy_gmtls::provider();
    Arc::new(CryptoProvider {
        cipher_suites: vec![rustls::crypto::ring::cipher_suite::TLS13_AES_128_GCM_SHA256],
        kx_groups: ring.kx_groups,
        signature_verification_algorithms: sm.signature_verification_algorithms,
        secure_random: ring.secure_random,
        key_provider: sm.key_provider,
    })
}

/// MiB/s of one bulk transfer of `mib` MiB from a prefecture to the province over loopback QUIC.
async fn quic_bulk(
    server: &Credentials,
    client: &Credentials,
    provider: Option<Arc<CryptoProvider>>,
    mib: u64,
) -> anyhow::Result<f64> {
    let options = EndpointOptions::default();
    let loopback = "127.0.0.1:0".parse()?;
    let (server_endpoint, client_endpoint) = match provider {
        None => (
            PeerEndpoint::server(loopback, server, &options)?,
            PeerEndpoint::client(loopback, client, &options)?,
        ),
        Some(p) => (
            PeerEndpoint::server_with_tls(
                loopback,
                server.server_config_with_provider(Arc::clone(&p))?,
                server.client_config_with_provider(Arc::clone(&p), None)?,
                &options,
            )?,
            PeerEndpoint::client_with_tls(
                loopback,
                client.client_config_with_provider(p, None)?,
                &options,
            )?,
        ),
    };
    let addr = server_endpoint.local_addr()?;
    let serving = server_endpoint.clone();
    let task = tokio::spawn(async move { serving.serve(Arc::new(Drain)).await });
    let connection = client_endpoint
        .connect(addr, &devpki::server_name("province"))
        .await?;
    connection.request(b"warm-up").await?;
    let chunk = vec![0xa5u8; 1 << 20];
    let started = Instant::now();
    let receipt = connection
        .send_bulk(b"bench", (0..mib).map(|_| chunk.clone()))
        .await?;
    let elapsed = started.elapsed().as_secs_f64();
    anyhow::ensure!(receipt.bytes == mib << 20, "short transfer");
    connection.close(0, "done");
    server_endpoint.close();
    task.abort();
    Ok(mib as f64 / elapsed)
}

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() -> anyhow::Result<()> {
    let mib = env_u64("XY_BENCH_MIB", 256);
    let rounds = env_u64("XY_BENCH_ROUNDS", 2).max(1);

    let key = [7u8; 16];
    let sm4 = xy_shangmi::Sm4Gcm::new(&key).context("SM4 key")?;
    let sm4_mib_s = seal_throughput(|i, buf| {
        let mut nonce = [0u8; 12];
        nonce[4..].copy_from_slice(&i.to_be_bytes());
        black_box(sm4.encrypt_detached(&nonce, b"", buf));
    });
    let aes = ring::aead::LessSafeKey::new(
        ring::aead::UnboundKey::new(&ring::aead::AES_128_GCM, &key)
            .map_err(|_| anyhow::anyhow!("AES key"))?,
    );
    let aes_seal_mib_s = seal_throughput(|i, buf| {
        let mut nonce = [0u8; 12];
        nonce[4..].copy_from_slice(&i.to_be_bytes());
        let tag = aes
            .seal_in_place_separate_tag(
                ring::aead::Nonce::assume_unique_for_key(nonce),
                ring::aead::Aad::empty(),
                buf,
            )
            .expect("AES-GCM seal");
        let _ = black_box(tag);
    });
    println!(
        "SM4-GCM seal, 16 KiB messages, one core (xy-sm4, {}): {sm4_mib_s:.0} MiB/s",
        xy_sm4::Backend::detect().name()
    );
    println!(
        "AES-128-GCM seal, 16 KiB messages, one core (ring, AES-NI):             {aes_seal_mib_s:.0} MiB/s"
    );
    println!(
        "seal ratio SM4-GCM / AES-128-GCM: {:.3}",
        sm4_mib_s / aes_seal_mib_s
    );

    let dir = tempfile::tempdir()?;
    let layout = devpki::init(dir.path(), false, devpki::unix_now())?;
    let load = |name: &str| {
        let files = layout.member(name);
        Credentials::load(&files.cert, &files.key, &layout.ca_cert(), None)
    };
    let (province, chengdu) = (load("province")?, load("chengdu")?);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let (mut best_sm, mut best_aes) = (0f64, 0f64);
    for round in 1..=rounds {
        let sm = runtime.block_on(quic_bulk(&province, &chengdu, None, mib))?;
        let aes = runtime.block_on(quic_bulk(&province, &chengdu, Some(aes_provider()), mib))?;
        println!(
            "round {round}: QUIC loopback bulk {mib} MiB: TLS_SM4_GCM_SM3 {sm:.0} MiB/s, TLS_AES_128_GCM_SHA256 {aes:.0} MiB/s"
        );
        best_sm = best_sm.max(sm);
        best_aes = best_aes.max(aes);
    }
    println!(
        "BENCH seal sm4_gcm_mib_s={sm4_mib_s:.0} aes_gcm_mib_s={aes_seal_mib_s:.0} ratio_sm_vs_aes={:.3}",
        sm4_mib_s / aes_seal_mib_s
    );
    println!(
        "BENCH quic sm_mib_s={best_sm:.0} aes_mib_s={best_aes:.0} ratio_sm_vs_aes={:.3}",
        best_sm / best_aes
    );
    Ok(())
}
