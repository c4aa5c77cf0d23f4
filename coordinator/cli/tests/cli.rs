//! `xinyong-coordinator` as the province's operators run it: bootstrap an administrator (password
//! on standard input), serve the API, log in over HTTP, read the OpenAPI description, verify the
//! audit chain.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Command, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_xinyong-coordinator");

fn http(addr: &str, method: &str, path: &str, body: &str) -> (u16, String) {
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let status = response[9..12].parse().unwrap();
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

#[test]
fn bootstrap_serve_login_and_verify_the_audit_chain() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("coordinator");
    let data = data.to_str().unwrap();
    let admin = |password: &str| {
        let mut child = Command::new(BIN)
            .args(["admin", "create", "--username", "root", "--data-dir", data])
            .env_remove("XY_COORDINATOR_DATABASE_URL")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(format!("{password}\n").as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    };
    let short = admin("short");
    assert!(!short.status.success());
    assert!(String::from_utf8_lossy(&short.stderr).contains("12 characters"));
    let created = admin("correct horse battery");
    assert!(
        created.status.success(),
        "{}",
        String::from_utf8_lossy(&created.stderr)
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        for key in ["ca.key", "sso.key"] {
            let mode = std::fs::metadata(dir.path().join("coordinator").join(key))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o077, 0, "{key} must be private");
        }
    }

    let mut server = Command::new(BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir", data])
        .env_remove("XY_COORDINATOR_DATABASE_URL")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(server.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line
        .split("http://")
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .expect("the bound address")
        .to_owned();
    let (status, body) = http(
        &addr,
        "POST",
        "/api/login",
        r#"{"username":"root","password":"correct horse battery"}"#,
    );
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("access_token"));
    let (status, _) = http(
        &addr,
        "POST",
        "/api/login",
        r#"{"username":"root","password":"wrong password here"}"#,
    );
    assert_eq!(status, 401);
    let (status, body) = http(&addr, "GET", "/api/openapi.json", "");
    assert_eq!(status, 200);
    assert!(body.contains("\"openapi\""));
    // A user registers over HTTP; the operator approves it from the command line.
    let (status, body) = http(
        &addr,
        "POST",
        "/api/users",
        r#"{"username":"clerk","password":"another long secret","role":"department-operator","jurisdiction":"510100"}"#,
    );
    assert_eq!(status, 202, "{body}");
    server.kill().unwrap();
    let _ = server.wait();

    let admin_command = |args: &[&str]| {
        Command::new(BIN)
            .args(args)
            .args(["--data-dir", data])
            .env_remove("XY_COORDINATOR_DATABASE_URL")
            .output()
            .unwrap()
    };
    let out = admin_command(&["user", "approve", "clerk"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = admin_command(&[
        "token",
        "create",
        "--jurisdiction",
        "510100",
        "--role",
        "prefecture-node",
        "--common-name",
        "chengdu.xinyong.internal",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim().len(),
        64,
        "the token"
    );
    let out = admin_command(&[
        "token",
        "create",
        "--jurisdiction",
        "510100",
        "--role",
        "overlord",
        "--common-name",
        "x",
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("prefecture-node"));
    let out = admin_command(&[
        "node",
        "add",
        "--jurisdiction",
        "510100",
        "--role",
        "prefecture-node",
        "--address",
        "10.51.1.10:8641",
        "--server-name",
        "chengdu.xinyong.internal",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = admin_command(&["certificate", "revoke", "0123", "--reason", "test"]);
    assert!(!out.status.success(), "an unknown serial");

    let out = Command::new(BIN)
        .args(["audit", "verify", "--data-dir", data])
        .env_remove("XY_COORDINATOR_DATABASE_URL")
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("audit chain intact: 7 entries"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}
