//! The node's peer endpoint: quinn over the RFC 8998 provider, mutual authentication always,
//! ALPN `xinyong/1`, framed request/response streams and bulk streams, keep-alive, and links that
//! reconnect with backoff.
//!
//! Streams carry [`xy_wire`] frames. A request stream is one `Request` frame (END) answered by one
//! `Response` or `Error` frame. A bulk stream is a `Request` frame naming the transfer, then
//! `BulkData` frames (the last with END), answered by an `Ack` frame holding the byte count and
//! the SM3 digest of what arrived, which the sender checks against its own.
//!
//! Any framing error (unknown kind, oversized or truncated frame, bad version) closes the whole
//! connection with an application error whose reason names the cause; the endpoint keeps serving
//! other peers. Quinn's address-validation token key and stateless-reset key are SM4/SM3-based.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hmac::{KeyInit as _, Mac as _};
use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use quinn::{RecvStream, SendStream, VarInt};
use tracing::{debug, info, warn};
use xy_gmtls::Sm4Mode;
use xy_gmtls::pki::PeerIdentity;
use xy_shangmi::{GCM_TAG_LEN, Sm3Hasher, Sm4Gcm};
use xy_wire::{FLAG_CHANNEL, FLAG_END, Frame, FrameDecoder, FrameKind};

use crate::TransportError;
use crate::credentials::{Credentials, identity_of};

/// Close code: the peer broke the frame protocol.
pub const CLOSE_PROTOCOL: u32 = 1;
/// Close code: the peer is not authorised (no identity, wrong role).
pub const CLOSE_UNAUTHORIZED: u32 = 2;
/// Close code: orderly shutdown.
pub const CLOSE_DONE: u32 = 0;

/// Largest frame payload accepted on a stream.
pub const MAX_FRAME: u32 = 4 << 20;
/// Size of the `BulkData` frames a sender writes.
pub const BULK_CHUNK: usize = 1 << 20;

/// Tunables of an endpoint.
#[derive(Clone, Debug)]
pub struct EndpointOptions {
    /// SM4 suites offered, in order of preference.
    pub suites: Vec<Sm4Mode>,
    /// Keep-alive probe interval.
    pub keep_alive: Duration,
    /// Idle time after which a silent connection is dropped.
    pub idle_timeout: Duration,
}

impl Default for EndpointOptions {
    fn default() -> Self {
        Self {
            suites: vec![Sm4Mode::Gcm, Sm4Mode::Ccm],
            keep_alive: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(30),
        }
    }
}

fn transport_config(
    options: &EndpointOptions,
) -> Result<Arc<quinn::TransportConfig>, TransportError> {
    let mut transport = quinn::TransportConfig::default();
    transport.keep_alive_interval(Some(options.keep_alive));
    let idle = quinn::IdleTimeout::try_from(options.idle_timeout)
        .map_err(|_| TransportError::Config("idle timeout out of range".into()))?;
    transport.max_idle_timeout(Some(idle));
    // Room for bulk streams on fast links (the defaults suit the open internet).
    transport.stream_receive_window(VarInt::from_u32(16 << 20));
    transport.receive_window(VarInt::from_u32(64 << 20));
    transport.send_window(64 << 20);
    Ok(Arc::new(transport))
}

/// The AES-128-GCM suite quinn needs for Initial packets, whose keys RFC 9001 §5.2 fixes: the
/// suites negotiated for everything after stay SM-only.
fn initial_suite() -> Result<rustls::quic::Suite, TransportError> {
    rustls::crypto::ring::cipher_suite::TLS13_AES_128_GCM_SHA256
        .tls13()
        .and_then(|suite| suite.quic_suite())
        .ok_or_else(|| TransportError::Config("ring offers no AES-128-GCM QUIC suite".into()))
}

fn random_bytes<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    rand::fill(&mut bytes[..]);
    bytes
}

/// Address-validation tokens sealed with SM4-GCM under a per-token key HMAC-SM3(master, random).
struct Sm4TokenKey([u8; 32]);

impl quinn::crypto::HandshakeTokenKey for Sm4TokenKey {
    fn aead_from_hkdf(&self, random_bytes: &[u8]) -> Box<dyn quinn::crypto::AeadKey> {
        let okm =
            xy_shangmi::HmacSm3::new(&self.0).mac_parts(&[b"xinyong/quic/token/v1", random_bytes]);
        Box::new(Sm4TokenAead(
            Sm4Gcm::new(&okm[..16]).expect("16-byte slice of an SM3 output"),
        ))
    }
}

struct Sm4TokenAead(Sm4Gcm);

/// Each token key seals exactly one token, so a fixed nonce never repeats under a key.
const TOKEN_NONCE: [u8; 12] = [0; 12];

impl quinn::crypto::AeadKey for Sm4TokenAead {
    fn seal(
        &self,
        data: &mut Vec<u8>,
        additional_data: &[u8],
    ) -> Result<(), quinn::crypto::CryptoError> {
        let tag = self.0.encrypt_detached(&TOKEN_NONCE, additional_data, data);
        data.extend_from_slice(&tag);
        Ok(())
    }

    fn open<'a>(
        &self,
        data: &'a mut [u8],
        additional_data: &[u8],
    ) -> Result<&'a mut [u8], quinn::crypto::CryptoError> {
        let plain_len = data
            .len()
            .checked_sub(GCM_TAG_LEN)
            .ok_or(quinn::crypto::CryptoError)?;
        let (body, tag) = data.split_at_mut(plain_len);
        let mut tag_bytes = [0u8; GCM_TAG_LEN];
        tag_bytes.copy_from_slice(tag);
        self.0
            .decrypt_detached(&TOKEN_NONCE, additional_data, body, &tag_bytes)
            .map_err(|_| quinn::crypto::CryptoError)?;
        Ok(body)
    }
}

/// Stateless-reset tokens: HMAC-SM3 over the connection id.
struct Sm3ResetKey(hmac::Hmac<sm3::Sm3>);

impl quinn::crypto::HmacKey for Sm3ResetKey {
    fn sign(&self, data: &[u8], signature_out: &mut [u8]) {
        let mut mac = self.0.clone();
        mac.update(data);
        let tag = mac.finalize().into_bytes();
        let n = signature_out.len().min(tag.len());
        signature_out[..n].copy_from_slice(&tag[..n]);
    }

    fn signature_len(&self) -> usize {
        xy_shangmi::SM3_LEN
    }

    fn verify(&self, data: &[u8], signature: &[u8]) -> Result<(), quinn::crypto::CryptoError> {
        let mut mac = self.0.clone();
        mac.update(data);
        mac.verify_slice(signature)
            .map_err(|_| quinn::crypto::CryptoError)
    }
}

fn endpoint_config() -> quinn::EndpointConfig {
    let key = hmac::Hmac::<sm3::Sm3>::new_from_slice(&random_bytes::<32>())
        .expect("HMAC takes any key length");
    quinn::EndpointConfig::new(Arc::new(Sm3ResetKey(key)))
}

/// A QUIC endpoint of a node: accepts peers (when built with [`PeerEndpoint::server`]) and
/// connects to them.
#[derive(Clone)]
pub struct PeerEndpoint {
    endpoint: quinn::Endpoint,
    client: quinn::ClientConfig,
}

impl PeerEndpoint {
    /// An endpoint listening on `listen` that also connects out.
    pub fn server(
        listen: SocketAddr,
        credentials: &Credentials,
        options: &EndpointOptions,
    ) -> Result<Self, TransportError> {
        Self::server_with_tls(
            listen,
            credentials.server_config(&options.suites)?,
            credentials.client_config(&options.suites)?,
            options,
        )
    }

    /// A serving endpoint over hand-built TLS configurations (the benchmark's AES baseline).
    pub fn server_with_tls(
        listen: SocketAddr,
        server_tls: rustls::ServerConfig,
        client_tls: rustls::ClientConfig,
        options: &EndpointOptions,
    ) -> Result<Self, TransportError> {
        let crypto = QuicServerConfig::with_initial(Arc::new(server_tls), initial_suite()?)
            .map_err(|e| TransportError::Config(format!("QUIC server TLS: {e}")))?;
        let mut server =
            quinn::ServerConfig::new(Arc::new(crypto), Arc::new(Sm4TokenKey(random_bytes())));
        server.transport_config(transport_config(options)?);
        let socket = std::net::UdpSocket::bind(listen).map_err(|source| TransportError::Bind {
            addr: listen,
            source,
        })?;
        let endpoint = quinn::Endpoint::new(
            endpoint_config(),
            Some(server),
            socket,
            Arc::new(quinn::TokioRuntime),
        )
        .map_err(|source| TransportError::Bind {
            addr: listen,
            source,
        })?;
        Ok(Self {
            endpoint,
            client: client_config(client_tls, options)?,
        })
    }

    /// An endpoint that only connects out (institution and department clients), bound to an
    /// ephemeral loopback or wildcard port.
    pub fn client(
        bind: SocketAddr,
        credentials: &Credentials,
        options: &EndpointOptions,
    ) -> Result<Self, TransportError> {
        Self::client_with_key(bind, credentials, options, None)
    }

    /// As [`PeerEndpoint::client`], signing the handshake with another key object (tests).
    pub fn client_with_key(
        bind: SocketAddr,
        credentials: &Credentials,
        options: &EndpointOptions,
        signing_key: Option<Arc<dyn rustls::sign::SigningKey>>,
    ) -> Result<Self, TransportError> {
        let tls = credentials.client_config_with_key(&options.suites, signing_key)?;
        Self::client_with_tls(bind, tls, options)
    }

    /// A connecting endpoint over a hand-built TLS configuration (interop and refusal tests).
    pub fn client_with_tls(
        bind: SocketAddr,
        tls: rustls::ClientConfig,
        options: &EndpointOptions,
    ) -> Result<Self, TransportError> {
        let socket = std::net::UdpSocket::bind(bind)
            .map_err(|source| TransportError::Bind { addr: bind, source })?;
        let endpoint = quinn::Endpoint::new(
            endpoint_config(),
            None,
            socket,
            Arc::new(quinn::TokioRuntime),
        )
        .map_err(|source| TransportError::Bind { addr: bind, source })?;
        Ok(Self {
            endpoint,
            client: client_config(tls, options)?,
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> Result<SocketAddr, TransportError> {
        self.endpoint.local_addr().map_err(TransportError::Io)
    }

    /// Connect to a peer and complete the mutually authenticated handshake.
    pub async fn connect(
        &self,
        addr: SocketAddr,
        server_name: &str,
    ) -> Result<PeerConnection, TransportError> {
        let connecting = self
            .endpoint
            .connect_with(self.client.clone(), addr, server_name)
            .map_err(|e| TransportError::Connect(e.to_string()))?;
        let connection = connecting.await?;
        PeerConnection::established(connection)
    }

    /// The next incoming, authenticated connection; `None` once the endpoint is closed. Handshake
    /// failures are logged and skipped: one bad peer never stops the endpoint.
    pub async fn accept(&self) -> Option<PeerConnection> {
        loop {
            let incoming = self.endpoint.accept().await?;
            let remote = incoming.remote_address();
            match incoming.await {
                Ok(connection) => match PeerConnection::established(connection) {
                    Ok(peer) => return Some(peer),
                    Err(e) => warn!(%remote, error = %e, "peer refused after handshake"),
                },
                Err(e) => warn!(%remote, error = %e, "handshake refused"),
            }
        }
    }

    /// Accept peers and answer their streams with `handler` until the endpoint is closed. Each
    /// connection and stream runs in its own task.
    pub async fn serve<H: Handler>(&self, handler: Arc<H>) {
        while let Some(peer) = self.accept().await {
            let handler = Arc::clone(&handler);
            tokio::spawn(async move { peer.serve(handler).await });
        }
    }

    /// Close every connection and stop accepting.
    pub fn close(&self) {
        self.endpoint
            .close(VarInt::from_u32(CLOSE_DONE), b"endpoint closed");
    }

    /// Wait until every connection has been closed cleanly.
    pub async fn wait_idle(&self) {
        self.endpoint.wait_idle().await;
    }
}

fn client_config(
    tls: rustls::ClientConfig,
    options: &EndpointOptions,
) -> Result<quinn::ClientConfig, TransportError> {
    let crypto = QuicClientConfig::with_initial(Arc::new(tls), initial_suite()?)
        .map_err(|e| TransportError::Config(format!("QUIC client TLS: {e}")))?;
    let mut config = quinn::ClientConfig::new(Arc::new(crypto));
    config.transport_config(transport_config(options)?);
    Ok(config)
}

/// What a node does with the streams of a peer.
pub trait Handler: Send + Sync + 'static {
    /// Answer a request; an `Err` is sent to the peer as an `Error` frame.
    fn request(
        &self,
        peer: &PeerIdentity,
        payload: Vec<u8>,
    ) -> impl Future<Output = Result<Vec<u8>, String>> + Send;

    /// Take in a bulk transfer named `name`, reading its chunks from `body`. Chunks left unread
    /// are drained (and counted) by the transport.
    fn bulk(
        &self,
        peer: &PeerIdentity,
        name: Vec<u8>,
        body: &mut BulkReceiver,
    ) -> impl Future<Output = Result<(), String>> + Send;

    /// Run an interactive channel named `name` (messages both ways). By default a node has none.
    fn channel(
        &self,
        peer: &PeerIdentity,
        name: Vec<u8>,
        channel: Channel,
    ) -> impl Future<Output = Result<(), String>> + Send {
        let _ = (peer, channel);
        async move {
            Err(format!(
                "no channel {:?} on this node",
                String::from_utf8_lossy(&name)
            ))
        }
    }
}

/// An authenticated connection to a peer.
#[derive(Clone)]
pub struct PeerConnection {
    connection: quinn::Connection,
    peer: PeerIdentity,
}

impl PeerConnection {
    fn established(connection: quinn::Connection) -> Result<Self, TransportError> {
        let certificates = connection.peer_identity().and_then(|any| {
            any.downcast::<Vec<rustls::pki_types::CertificateDer<'static>>>()
                .ok()
        });
        match identity_of(certificates.as_deref().map(|c| &c[..])) {
            Ok(peer) => {
                debug!(remote = %connection.remote_address(), jurisdiction = %peer.jurisdiction, role = %peer.role, "peer authenticated");
                Ok(Self { connection, peer })
            }
            Err(e) => {
                connection.close(
                    VarInt::from_u32(CLOSE_UNAUTHORIZED),
                    e.to_string().as_bytes(),
                );
                Err(e)
            }
        }
    }

    /// Who the peer is, from its verified certificate.
    pub fn peer(&self) -> &PeerIdentity {
        &self.peer
    }

    /// The underlying quinn connection (statistics, key updates, raw streams in tests).
    pub fn quinn(&self) -> &quinn::Connection {
        &self.connection
    }

    /// Close the connection with `reason`.
    pub fn close(&self, code: u32, reason: &str) {
        self.connection
            .close(VarInt::from_u32(code), reason.as_bytes());
    }

    /// Send one request and wait for its response.
    pub async fn request(&self, payload: &[u8]) -> Result<Vec<u8>, TransportError> {
        let (mut send, mut recv) = self.connection.open_bi().await?;
        let mut frame = Frame::new(FrameKind::Request, 0, payload.to_vec());
        frame.flags = FLAG_END;
        write_frame(&mut send, &frame).await?;
        send.finish()
            .map_err(|e| TransportError::Stream(e.to_string()))?;
        let mut reader = FrameReader::new(&mut recv);
        match reader.next().await? {
            Some(frame) if frame.kind == FrameKind::Response => Ok(frame.payload),
            Some(frame) if frame.kind == FrameKind::Error => Err(TransportError::Refused(
                String::from_utf8_lossy(&frame.payload).into_owned(),
            )),
            Some(frame) => Err(self.protocol_violation(format!(
                "unexpected {:?} frame in answer to a request",
                frame.kind
            ))),
            None => Err(TransportError::Stream(
                "the peer closed the stream without answering".into(),
            )),
        }
    }

    /// Send `chunks` as one bulk transfer named `name`; returns once the peer has acknowledged
    /// the same byte count and SM3 digest as sent.
    pub async fn send_bulk<I>(&self, name: &[u8], chunks: I) -> Result<BulkReceipt, TransportError>
    where
        I: IntoIterator<Item = Vec<u8>>,
    {
        let (mut send, mut recv) = self.connection.open_bi().await?;
        write_frame(&mut send, &Frame::new(FrameKind::Request, 0, name.to_vec())).await?;
        let mut digest = Sm3Hasher::new();
        let mut bytes = 0u64;
        for chunk in chunks {
            for piece in chunk.chunks(BULK_CHUNK) {
                digest.update(piece);
                bytes += piece.len() as u64;
                write_frame(
                    &mut send,
                    &Frame::new(FrameKind::BulkData, 0, piece.to_vec()),
                )
                .await?;
            }
        }
        let mut end = Frame::new(FrameKind::BulkData, 0, Vec::new());
        end.flags = FLAG_END;
        write_frame(&mut send, &end).await?;
        send.finish()
            .map_err(|e| TransportError::Stream(e.to_string()))?;
        let sent = BulkReceipt {
            bytes,
            sm3: digest.finish(),
        };
        let mut reader = FrameReader::new(&mut recv);
        match reader.next().await? {
            Some(frame) if frame.kind == FrameKind::Ack => {
                let acked = BulkReceipt::decode(&frame.payload).ok_or_else(|| {
                    self.protocol_violation("malformed bulk acknowledgement".into())
                })?;
                if acked != sent {
                    return Err(TransportError::Integrity(format!(
                        "peer acknowledged {} bytes with another digest than the {} bytes sent",
                        acked.bytes, sent.bytes
                    )));
                }
                Ok(sent)
            }
            Some(frame) if frame.kind == FrameKind::Error => Err(TransportError::Refused(
                String::from_utf8_lossy(&frame.payload).into_owned(),
            )),
            Some(frame) => Err(self.protocol_violation(format!(
                "unexpected {:?} frame in answer to a bulk transfer",
                frame.kind
            ))),
            None => Err(TransportError::Stream(
                "the peer closed the bulk stream without acknowledging".into(),
            )),
        }
    }

    /// Open an interactive channel named `name` (the peer's [`Handler::channel`] answers it).
    pub async fn open_channel(&self, name: &[u8]) -> Result<Channel, TransportError> {
        let (mut send, recv) = self.connection.open_bi().await?;
        let mut open = Frame::new(FrameKind::Request, 0, name.to_vec());
        open.flags = FLAG_CHANNEL;
        write_frame(&mut send, &open).await?;
        Ok(Channel {
            sender: ChannelSender { send },
            receiver: ChannelReceiver {
                recv,
                decoder: FrameDecoder::new(MAX_FRAME),
                finished: false,
            },
        })
    }

    fn protocol_violation(&self, reason: String) -> TransportError {
        self.connection
            .close(VarInt::from_u32(CLOSE_PROTOCOL), reason.as_bytes());
        TransportError::Protocol(reason)
    }

    /// Answer this peer's streams with `handler` until the connection ends.
    pub async fn serve<H: Handler>(self, handler: Arc<H>) {
        let remote = self.connection.remote_address();
        info!(%remote, jurisdiction = %self.peer.jurisdiction, role = %self.peer.role, "peer connected");
        loop {
            let (send, recv) = match self.connection.accept_bi().await {
                Ok(streams) => streams,
                Err(e) => {
                    info!(%remote, reason = %e, "peer disconnected");
                    return;
                }
            };
            let this = self.clone();
            let handler = Arc::clone(&handler);
            tokio::spawn(async move {
                if let Err(e) = this.answer_stream(&*handler, send, recv).await {
                    match e {
                        TransportError::Protocol(reason) => {
                            warn!(%remote, %reason, "closing connection: protocol violation");
                            this.close(CLOSE_PROTOCOL, &reason);
                        }
                        other => debug!(%remote, error = %other, "stream ended with an error"),
                    }
                }
            });
        }
    }

    async fn answer_stream<H: Handler>(
        &self,
        handler: &H,
        mut send: SendStream,
        mut recv: RecvStream,
    ) -> Result<(), TransportError> {
        let mut reader = FrameReader::new(&mut recv);
        let Some(first) = reader.next().await? else {
            return Ok(());
        };
        if first.kind != FrameKind::Request {
            return Err(TransportError::Protocol(format!(
                "a stream must open with a request, not {:?}",
                first.kind
            )));
        }
        if first.flags & FLAG_CHANNEL != 0 {
            let FrameReader {
                decoder, finished, ..
            } = reader;
            let channel = Channel {
                sender: ChannelSender { send },
                receiver: ChannelReceiver {
                    recv,
                    decoder,
                    finished,
                },
            };
            return handler
                .channel(&self.peer, first.payload, channel)
                .await
                .map_err(TransportError::Refused);
        }
        if first.flags & FLAG_END != 0 {
            let answer = match handler.request(&self.peer, first.payload).await {
                Ok(payload) => Frame::new(FrameKind::Response, first.request_id, payload),
                Err(reason) => Frame::new(FrameKind::Error, first.request_id, reason.into_bytes()),
            };
            write_frame(&mut send, &answer).await?;
            send.finish()
                .map_err(|e| TransportError::Stream(e.to_string()))?;
            return Ok(());
        }
        let mut body = BulkReceiver {
            reader,
            digest: Sm3Hasher::new(),
            bytes: 0,
            done: false,
        };
        let outcome = handler.bulk(&self.peer, first.payload, &mut body).await;
        while body.next_chunk().await?.is_some() {}
        let answer = match outcome {
            Ok(()) => {
                let receipt = BulkReceipt {
                    bytes: body.bytes,
                    sm3: body.digest.finish(),
                };
                Frame::new(FrameKind::Ack, first.request_id, receipt.encode())
            }
            Err(reason) => Frame::new(FrameKind::Error, first.request_id, reason.into_bytes()),
        };
        write_frame(&mut send, &answer).await?;
        send.finish()
            .map_err(|e| TransportError::Stream(e.to_string()))?;
        Ok(())
    }
}

/// Byte count and SM3 digest of a bulk transfer, as acknowledged by the receiver.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BulkReceipt {
    /// Bytes transferred.
    pub bytes: u64,
    /// SM3 digest of the bytes, in order.
    pub sm3: [u8; 32],
}

impl BulkReceipt {
    fn encode(&self) -> Vec<u8> {
        let mut out = self.bytes.to_be_bytes().to_vec();
        out.extend_from_slice(&self.sm3);
        out
    }

    fn decode(bytes: &[u8]) -> Option<Self> {
        if bytes.len() != 40 {
            return None;
        }
        let mut count = [0u8; 8];
        count.copy_from_slice(&bytes[..8]);
        let mut sm3 = [0u8; 32];
        sm3.copy_from_slice(&bytes[8..]);
        Some(Self {
            bytes: u64::from_be_bytes(count),
            sm3,
        })
    }
}

/// The chunks of an incoming bulk transfer.
pub struct BulkReceiver<'a> {
    reader: FrameReader<'a>,
    digest: Sm3Hasher,
    bytes: u64,
    done: bool,
}

impl BulkReceiver<'_> {
    /// The next chunk, or `None` at the end of the transfer.
    pub async fn next_chunk(&mut self) -> Result<Option<Vec<u8>>, TransportError> {
        if self.done {
            return Ok(None);
        }
        match self.reader.next().await? {
            Some(frame) if frame.kind == FrameKind::BulkData => {
                self.done = frame.flags & FLAG_END != 0;
                self.digest.update(&frame.payload);
                self.bytes += frame.payload.len() as u64;
                if self.done && frame.payload.is_empty() {
                    return Ok(None);
                }
                Ok(Some(frame.payload))
            }
            Some(frame) => Err(TransportError::Protocol(format!(
                "unexpected {:?} frame inside a bulk transfer",
                frame.kind
            ))),
            None => Err(TransportError::Protocol(
                "bulk stream ended before its last chunk".into(),
            )),
        }
    }

    /// Bytes received so far.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }
}

/// Reads frames from a receive stream through the sans-IO decoder.
struct FrameReader<'a> {
    recv: &'a mut RecvStream,
    decoder: FrameDecoder,
    finished: bool,
}

impl<'a> FrameReader<'a> {
    fn new(recv: &'a mut RecvStream) -> Self {
        Self {
            recv,
            decoder: FrameDecoder::new(MAX_FRAME),
            finished: false,
        }
    }

    /// The next frame; `None` at a clean end of stream. Framing errors are protocol violations.
    async fn next(&mut self) -> Result<Option<Frame>, TransportError> {
        next_frame(self.recv, &mut self.decoder, &mut self.finished).await
    }
}

/// The next frame of a stream, through its decoder; `None` at a clean end. Cancel-safe: bytes
/// read stay in the decoder, and quinn's `read_chunk` is itself cancel-safe.
async fn next_frame(
    recv: &mut RecvStream,
    decoder: &mut FrameDecoder,
    finished: &mut bool,
) -> Result<Option<Frame>, TransportError> {
    loop {
        if let Some(frame) = decoder
            .poll_frame()
            .map_err(|e| TransportError::Protocol(e.to_string()))?
        {
            return Ok(Some(frame));
        }
        if *finished {
            decoder
                .finish()
                .map_err(|e| TransportError::Protocol(e.to_string()))?;
            return Ok(None);
        }
        match recv.read_chunk(BULK_CHUNK + 64, true).await {
            Ok(Some(chunk)) => decoder.handle_bytes(&chunk.bytes),
            Ok(None) => *finished = true,
            Err(e) => return Err(read_error(e)),
        }
    }
}

/// A read failure: a lost connection reports why it was lost (e.g. the handshake refusal).
fn read_error(e: quinn::ReadError) -> TransportError {
    match e {
        quinn::ReadError::ConnectionLost(cause) => TransportError::Connection(cause),
        other => TransportError::Stream(other.to_string()),
    }
}

fn write_error(e: quinn::WriteError) -> TransportError {
    match e {
        quinn::WriteError::ConnectionLost(cause) => TransportError::Connection(cause),
        other => TransportError::Stream(other.to_string()),
    }
}

async fn write_frame(send: &mut SendStream, frame: &Frame) -> Result<(), TransportError> {
    let mut bytes = Vec::with_capacity(frame.payload.len() + xy_wire::HEADER_LEN);
    frame
        .encode(&mut bytes, MAX_FRAME)
        .map_err(|e| TransportError::Protocol(e.to_string()))?;
    send.write_all(&bytes).await.map_err(write_error)
}

/// A link to one peer that reconnects with exponential backoff when the connection is lost.
pub struct PeerLink {
    endpoint: PeerEndpoint,
    addr: SocketAddr,
    server_name: String,
    current: tokio::sync::Mutex<Option<PeerConnection>>,
    /// First retry delay; doubles up to `max_backoff`.
    pub initial_backoff: Duration,
    /// Longest delay between attempts.
    pub max_backoff: Duration,
    /// Attempts before giving up on one call.
    pub max_attempts: u32,
}

impl PeerLink {
    /// A link to `addr`, verifying the server as `server_name`.
    pub fn new(endpoint: PeerEndpoint, addr: SocketAddr, server_name: &str) -> Self {
        Self {
            endpoint,
            addr,
            server_name: server_name.to_owned(),
            current: tokio::sync::Mutex::new(None),
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(30),
            max_attempts: 8,
        }
    }

    /// A live connection: the current one, or a new one after backoff. Handshake refusals (a
    /// certificate problem) are not retried: they will not heal by waiting.
    pub async fn connection(&self) -> Result<PeerConnection, TransportError> {
        let mut current = self.current.lock().await;
        if let Some(connection) = current.as_ref() {
            if connection.quinn().close_reason().is_none() {
                return Ok(connection.clone());
            }
            info!(addr = %self.addr, "connection lost; reconnecting");
        }
        let mut delay = self.initial_backoff;
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.endpoint.connect(self.addr, &self.server_name).await {
                Ok(connection) => {
                    *current = Some(connection.clone());
                    return Ok(connection);
                }
                Err(e) if attempt >= self.max_attempts || !e.is_transient() => return Err(e),
                Err(e) => {
                    // Jitter of up to a quarter of the delay keeps many prefectures from
                    // reconnecting in lockstep after a provincial outage.
                    let jitter = delay.mul_f64(rand::random::<f64>() * 0.25);
                    warn!(addr = %self.addr, attempt, error = %e, retry_in = ?(delay + jitter), "connect failed");
                    tokio::time::sleep(delay + jitter).await;
                    delay = (delay * 2).min(self.max_backoff);
                }
            }
        }
    }

    /// Send a request, reconnecting first if the connection was lost.
    pub async fn request(&self, payload: &[u8]) -> Result<Vec<u8>, TransportError> {
        let connection = self.connection().await?;
        match connection.request(payload).await {
            Err(e) if e.is_transient() => self.connection().await?.request(payload).await,
            other => other,
        }
    }
}

/// An interactive channel: framed messages both ways on one stream, until either side ends it.
/// Split it to send and receive concurrently (so neither side's flow control can stall the other).
pub struct Channel {
    /// The sending half.
    pub sender: ChannelSender,
    /// The receiving half.
    pub receiver: ChannelReceiver,
}

/// The sending half of a [`Channel`].
pub struct ChannelSender {
    send: SendStream,
}

impl ChannelSender {
    /// Send one message (at most [`MAX_FRAME`] bytes).
    pub async fn send(&mut self, message: &[u8]) -> Result<(), TransportError> {
        write_frame(
            &mut self.send,
            &Frame::new(FrameKind::BulkData, 0, message.to_vec()),
        )
        .await
    }

    /// End the sending side.
    pub fn finish(&mut self) -> Result<(), TransportError> {
        self.send
            .finish()
            .map_err(|e| TransportError::Stream(e.to_string()))
    }
}

/// The receiving half of a [`Channel`].
pub struct ChannelReceiver {
    recv: RecvStream,
    decoder: FrameDecoder,
    finished: bool,
}

impl ChannelReceiver {
    /// The next message, or `None` when the peer ended its side. Framing errors are protocol
    /// violations. Cancel-safe: a `recv` dropped by `select!` loses nothing.
    pub async fn recv(&mut self) -> Result<Option<Vec<u8>>, TransportError> {
        match next_frame(&mut self.recv, &mut self.decoder, &mut self.finished).await? {
            Some(frame) if frame.kind == FrameKind::BulkData => Ok(Some(frame.payload)),
            Some(frame) => Err(TransportError::Protocol(format!(
                "unexpected {:?} frame in a channel",
                frame.kind
            ))),
            None => Ok(None),
        }
    }
}
