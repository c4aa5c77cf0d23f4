//! Interop of the `tls serve|connect` diagnostic (the library functions the commands call) with
//! OpenSSL 4's `s_server` and `s_client`: both RFC 8998 suites, both directions, mutual
//! authentication. OpenSSL 4 is built once per machine by scripts/openssl4.sh.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use xy_gmtls::Sm4Mode;

fn suite_name(suite: Sm4Mode) -> &'static str {
    match suite {
        Sm4Mode::Gcm => "TLS_SM4_GCM_SM3",
        Sm4Mode::Ccm => "TLS_SM4_CCM_SM3",
    }
}

/// Kills the child when dropped, so a failed assertion leaves no OpenSSL process behind.
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_tcp_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Read lines from `child`'s stdout on a thread until one satisfies `want` (or 20 s pass).
fn wait_for_line(
    child: &mut Child,
    want: impl Fn(&str) -> bool + Send + 'static,
) -> Result<String, String> {
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut seen = Vec::new();
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if want(&line) {
                let _ = tx.send(Ok(line));
                return;
            }
            seen.push(line);
        }
        let _ = tx.send(Err(seen.join("\n")));
    });
    rx.recv_timeout(Duration::from_secs(20))
        .unwrap_or_else(|_| Err("timed out".into()))
}

async fn our_server_with_openssl_client(
    suite: Sm4Mode,
    client_member: &str,
    pki: &Pki,
    other: Option<&Pki>,
) -> Result<String, String> {
    let server =
        xy_transport::diagnostic::EchoServer::bind(loopback(), &pki.credentials("province"), suite)
            .await
            .unwrap();
    let addr = server.local_addr().unwrap();
    tokio::spawn(server.run());
    let client_pki = other.unwrap_or(pki);
    let files = client_pki.layout.member(client_member);
    let mut child = Reaped(
        Command::new(openssl4())
            .args([
                "s_client",
                "-connect",
                &addr.to_string(),
                "-tls1_3",
                "-ciphersuites",
                suite_name(suite),
            ])
            .args([
                "-groups",
                "curveSM2",
                "-sigalgs",
                "sm2sig_sm3",
                "-verify_return_error",
                "-quiet",
                "-ign_eof",
            ])
            .args([
                "-CAfile",
                path_str(&pki.layout.ca_cert()),
                "-verify_hostname",
                &province_name(),
            ])
            .args(["-cert", path_str(&files.cert), "-key", path_str(&files.key)])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let line = format!("hello over {}", suite_name(suite));
    writeln!(child.0.stdin.as_mut().unwrap(), "{line}").unwrap();
    let expected = line.clone();
    let started = Instant::now();
    let result = tokio::task::spawn_blocking(move || {
        let got = wait_for_line(&mut child.0, move |l| l == expected);
        drop(child);
        got
    })
    .await
    .unwrap();
    assert!(started.elapsed() < Duration::from_secs(30));
    result
}

#[tokio::test]
async fn openssl4_s_client_talks_to_tls_serve_with_both_suites() {
    let pki = pki();
    for suite in [Sm4Mode::Gcm, Sm4Mode::Ccm] {
        let echoed = our_server_with_openssl_client(suite, "chengdu", &pki, None).await;
        assert_eq!(echoed.unwrap(), format!("hello over {}", suite_name(suite)));
    }
    // An OpenSSL client whose certificate comes from another CA gets no answer: the server
    // demands and verifies the client certificate.
    let stranger = self::pki();
    let refused =
        our_server_with_openssl_client(Sm4Mode::Gcm, "chengdu", &pki, Some(&stranger)).await;
    assert!(refused.is_err(), "a client of an unknown CA was answered");
}

fn openssl_server(pki: &Pki, suite: Sm4Mode, port: u16) -> Reaped {
    let files = pki.layout.member("province");
    let child = Command::new(openssl4())
        .args([
            "s_server",
            "-accept",
            &format!("127.0.0.1:{port}"),
            "-tls1_3",
            "-ciphersuites",
            suite_name(suite),
        ])
        .args([
            "-groups",
            "curveSM2",
            "-sigalgs",
            "sm2sig_sm3",
            "-Verify",
            "1",
            "-verify_return_error",
            "-rev",
            "-naccept",
            "1",
        ])
        .args(["-CAfile", path_str(&pki.layout.ca_cert())])
        .args(["-cert", path_str(&files.cert), "-key", path_str(&files.key)])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut child = Reaped(child);
    // s_server prints ACCEPT once it listens.
    wait_for_line(&mut child.0, |l| l.starts_with("ACCEPT")).expect("s_server starts");
    child
}

#[tokio::test]
async fn tls_connect_talks_to_openssl4_s_server_with_both_suites() {
    let pki = pki();
    for suite in [Sm4Mode::Gcm, Sm4Mode::Ccm] {
        let port = free_tcp_port();
        let _server = openssl_server(&pki, suite, port);
        let addr = format!("127.0.0.1:{port}").parse().unwrap();
        let report = xy_transport::diagnostic::connect(
            addr,
            &province_name(),
            &pki.credentials("chengdu"),
            suite,
            b"ShangMi\n",
        )
        .await
        .unwrap();
        // s_server -rev answers each line reversed.
        assert_eq!(report.reply, b"iMgnahS\n");
        assert_eq!(
            report.suite,
            format!(
                "{:?}",
                rustls::CipherSuite::from(if suite == Sm4Mode::Gcm {
                    0x00c6
                } else {
                    0x00c7
                })
            )
        );
    }
    // Our client refuses an OpenSSL server whose certificate it cannot verify.
    let stranger = self::pki();
    let port = free_tcp_port();
    let _server = openssl_server(&stranger, Sm4Mode::Gcm, port);
    let addr = format!("127.0.0.1:{port}").parse().unwrap();
    let err = xy_transport::diagnostic::connect(
        addr,
        &province_name(),
        &pki.credentials("chengdu"),
        Sm4Mode::Gcm,
        b"x\n",
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("certificate"), "{err}");
}
