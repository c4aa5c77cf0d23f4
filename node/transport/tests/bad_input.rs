//! Bad input on the QUIC endpoint: garbage datagrams, unknown frame kinds, oversized and
//! truncated frames, streams that do not open with a request. Each closes the offending
//! connection with a reason naming the cause; the endpoint keeps serving other peers; nothing
//! panics.

mod common;

use common::*;

fn header(version: u8, kind: u8, flags: u16, length: u32) -> Vec<u8> {
    let mut out = vec![version, kind];
    out.extend_from_slice(&flags.to_be_bytes());
    out.extend_from_slice(&7u32.to_be_bytes());
    out.extend_from_slice(&length.to_be_bytes());
    out
}

/// Send `bytes` on a fresh stream (then finish it) and return the reason the server gave for
/// closing the connection.
async fn close_reason_for(bytes: Vec<u8>, finish: bool) -> String {
    let pki = pki();
    let (_server, addr, _) = serve(&pki.credentials("province"));
    let client = client_endpoint(&pki.credentials("chengdu"));
    let connection = client.connect(addr, &province_name()).await.unwrap();
    let (mut send, _recv) = connection.quinn().open_bi().await.unwrap();
    send.write_all(&bytes).await.unwrap();
    if finish {
        send.finish().unwrap();
    }
    let reason = match tokio::time::timeout(
        std::time::Duration::from_secs(10),
        connection.quinn().closed(),
    )
    .await
    {
        Ok(quinn::ConnectionError::ApplicationClosed(close)) => {
            assert_eq!(
                close.error_code,
                quinn::VarInt::from_u32(xy_transport::quic::CLOSE_PROTOCOL)
            );
            String::from_utf8_lossy(&close.reason).into_owned()
        }
        other => panic!("expected an application close, got {other:?}"),
    };
    // The endpoint goes on serving a well-behaved peer.
    let good = client_endpoint(&pki.credentials("mianyang"));
    let reply = good
        .connect(addr, &province_name())
        .await
        .unwrap()
        .request(b"still there?")
        .await
        .unwrap();
    assert_eq!(reply, b"510700/prefecture-node:still there?");
    reason
}

#[tokio::test]
async fn an_unknown_frame_kind_closes_the_connection() {
    let reason = close_reason_for(header(1, 99, 1, 0), true).await;
    assert!(reason.contains("unknown frame kind 99"), "{reason}");
}

#[tokio::test]
async fn an_oversized_frame_closes_the_connection() {
    let reason = close_reason_for(header(1, 2, 1, u32::MAX), false).await;
    assert!(reason.contains("exceeds the limit"), "{reason}");
}

#[tokio::test]
async fn a_truncated_frame_closes_the_connection() {
    let mut bytes = header(1, 2, 1, 100);
    bytes.extend_from_slice(&[0u8; 10]);
    let reason = close_reason_for(bytes, true).await;
    assert!(reason.contains("stream ended inside a frame"), "{reason}");
}

#[tokio::test]
async fn another_protocol_version_closes_the_connection() {
    let reason = close_reason_for(header(9, 2, 1, 0), true).await;
    assert!(reason.contains("unsupported frame version 9"), "{reason}");
}

#[tokio::test]
async fn a_stream_must_open_with_a_request() {
    let reason = close_reason_for(header(1, 5, 1, 0), true).await;
    assert!(reason.contains("must open with a request"), "{reason}");
}

#[tokio::test]
async fn garbage_datagrams_are_ignored_and_peers_still_served() {
    let pki = pki();
    let (_server, addr, _) = serve(&pki.credentials("province"));
    let socket = tokio::net::UdpSocket::bind(loopback()).await.unwrap();
    let mut state = 0x2545_f491_4f6c_dd1du64;
    for i in 0..2_000usize {
        let len = 1 + (i * 37) % 1400;
        let mut datagram = Vec::with_capacity(len);
        while datagram.len() < len {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            datagram.extend_from_slice(&state.to_le_bytes());
        }
        datagram.truncate(len);
        // Some look like long-header Initial packets, to reach deeper into the parser.
        if i % 3 == 0 {
            datagram[0] = 0xc0 | (datagram[0] & 0x0f);
            if datagram.len() > 5 {
                datagram[1..5].copy_from_slice(&1u32.to_be_bytes());
            }
        }
        socket.send_to(&datagram, addr).await.unwrap();
    }
    let client = client_endpoint(&pki.credentials("chengdu"));
    let reply = client
        .connect(addr, &province_name())
        .await
        .unwrap()
        .request(b"ok")
        .await
        .unwrap();
    assert_eq!(reply, b"510100/prefecture-node:ok");
}

#[tokio::test]
async fn plaintext_before_the_handshake_is_refused_by_the_tls_diagnostic_server() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let pki = pki();
    let server = xy_transport::diagnostic::EchoServer::bind(
        loopback(),
        &pki.credentials("province"),
        xy_gmtls::Sm4Mode::Gcm,
    )
    .await
    .unwrap();
    let addr = server.local_addr().unwrap();
    tokio::spawn(server.run());
    // Application data before any handshake: the server answers with an alert or closes.
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    tcp.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), tcp.read_to_end(&mut buf))
        .await
        .unwrap();
    assert!(
        !buf.windows(4).any(|w| w == b"GET "),
        "the server must not echo unauthenticated data"
    );
    // And a proper client is still served.
    let report = xy_transport::diagnostic::connect(
        addr,
        &province_name(),
        &pki.credentials("chengdu"),
        xy_gmtls::Sm4Mode::Gcm,
        b"line one\nline two\n",
    )
    .await
    .unwrap();
    assert_eq!(report.reply, b"line one\nline two\n");
}
