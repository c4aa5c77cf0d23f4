//! `xinyong-node tls serve|connect`: TLS 1.3 over TCP with the same RFC 8998 provider and
//! credentials as the QUIC endpoint, for operators checking a peer (and for interop with
//! OpenSSL 4 `s_server`/`s_client`). The server answers each line with the same line.

use std::net::SocketAddr;
use std::sync::Arc;

use rustls::pki_types::ServerName;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tracing::{info, warn};
use xy_gmtls::Sm4Mode;

use crate::{Credentials, TransportError};

/// Longest line the echo server accepts.
const MAX_LINE: usize = 64 * 1024;

/// A bound echo server.
pub struct EchoServer {
    listener: TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
}

impl EchoServer {
    /// Bind `listen` with `credentials`, offering exactly `suite`. The diagnostic server speaks
    /// plain TLS (no ALPN required), so that any RFC 8998 client can test against it.
    pub async fn bind(
        listen: SocketAddr,
        credentials: &Credentials,
        suite: Sm4Mode,
    ) -> Result<Self, TransportError> {
        let mut config = credentials.server_config(&[suite])?;
        config.alpn_protocols.clear();
        let listener = TcpListener::bind(listen)
            .await
            .map_err(|source| TransportError::Bind {
                addr: listen,
                source,
            })?;
        Ok(Self {
            listener,
            acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(config)),
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> Result<SocketAddr, TransportError> {
        Ok(self.listener.local_addr()?)
    }

    /// Serve clients until the process ends; each failure is logged and the server goes on.
    pub async fn run(self) -> Result<(), TransportError> {
        loop {
            let (tcp, remote) = self.listener.accept().await?;
            let acceptor = self.acceptor.clone();
            tokio::spawn(async move {
                match acceptor.accept(tcp).await {
                    Ok(tls) => {
                        let (_, connection) = tls.get_ref();
                        let peer = crate::credentials::identity_of(connection.peer_certificates());
                        let suite = connection
                            .negotiated_cipher_suite()
                            .map(|s| format!("{:?}", s.suite()))
                            .unwrap_or_default();
                        match &peer {
                            Ok(id) => {
                                info!(%remote, %suite, jurisdiction = %id.jurisdiction, role = %id.role, "tls: mutual handshake verified")
                            }
                            Err(_) => {
                                info!(%remote, %suite, "tls: mutual handshake verified (certificate without node identity)")
                            }
                        }
                        if let Err(e) = echo_lines(tls).await {
                            warn!(%remote, error = %e, "tls: connection ended with an error");
                        }
                    }
                    Err(e) => warn!(%remote, error = %e, "tls: handshake refused"),
                }
            });
        }
    }
}

async fn echo_lines<S: AsyncRead + AsyncWrite + Unpin>(stream: S) -> std::io::Result<()> {
    let (read, mut write) = tokio::io::split(stream);
    let mut reader = BufReader::new(read);
    let mut line = Vec::new();
    loop {
        line.clear();
        let n = (&mut reader)
            .take(MAX_LINE as u64 + 1)
            .read_until(b'\n', &mut line)
            .await?;
        if n == 0 {
            break;
        }
        if line.len() > MAX_LINE {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "line longer than 64 KiB",
            ));
        }
        write.write_all(&line).await?;
        write.flush().await?;
    }
    write.shutdown().await
}

/// What a diagnostic connection established.
#[derive(Debug)]
pub struct ConnectReport {
    /// The negotiated suite, e.g. `Unknown(0x00c6)` for TLS_SM4_GCM_SM3.
    pub suite: String,
    /// The reply received: one line per line sent.
    pub reply: Vec<u8>,
}

/// Connect to `addr`, verify the server as `server_name`, present `credentials`, send `input`
/// and read one reply line per line sent. Succeeds only after a verified mutual handshake and a
/// complete reply: a server that refused our certificate fails the read with its alert.
pub async fn connect(
    addr: SocketAddr,
    server_name: &str,
    credentials: &Credentials,
    suite: Sm4Mode,
    input: &[u8],
) -> Result<ConnectReport, TransportError> {
    let mut config = credentials.client_config(&[suite])?;
    config.alpn_protocols.clear();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let name = ServerName::try_from(server_name.to_owned())
        .map_err(|e| TransportError::Connect(format!("server name {server_name:?}: {e}")))?;
    let tcp = TcpStream::connect(addr).await?;
    let mut tls = connector.connect(name, tcp).await?;
    let suite_name = tls
        .get_ref()
        .1
        .negotiated_cipher_suite()
        .map(|s| format!("{:?}", s.suite()))
        .unwrap_or_default();
    let mut input = input.to_vec();
    if !input.is_empty() && !input.ends_with(b"\n") {
        input.push(b'\n');
    }
    let lines = input.iter().filter(|b| **b == b'\n').count();
    tls.write_all(&input).await?;
    tls.flush().await?;
    let mut reader = BufReader::new(tls);
    let mut reply = Vec::new();
    if lines == 0 {
        // Nothing to echo: a zero-length read still surfaces a refusal of our certificate,
        // which TLS 1.3 servers send after the client's Finished.
        let mut probe = [0u8; 1];
        let _ = tokio::time::timeout(
            std::time::Duration::from_millis(500),
            reader.read(&mut probe),
        )
        .await;
    }
    for _ in 0..lines {
        let before = reply.len();
        let n = reader.read_until(b'\n', &mut reply).await?;
        if n == 0 || reply.len() == before {
            return Err(TransportError::Stream(
                "the server closed the connection before replying".into(),
            ));
        }
    }
    let mut tls = reader.into_inner();
    let _ = tls.shutdown().await;
    Ok(ConnectReport {
        suite: suite_name,
        reply,
    })
}
