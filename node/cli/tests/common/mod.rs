//! What the command-line tests share: running the binary, reading a store while a node may be
//! running, and a node's configuration with its `[peer]` section.
#![allow(dead_code)] // each test file uses a part

use std::path::Path;
use std::process::{Command, Output};

use xy_transport::devpki::PkiLayout;

pub(crate) const BIN: &str = env!("CARGO_BIN_EXE_xinyong-node");

/// Run `xinyong-node` (SQLite stores whatever the environment says).
pub(crate) fn node(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .env_remove("XY_DATABASE_URL")
        .output()
        .expect("run xinyong-node")
}

/// Run `xinyong-node`, which must succeed; its standard output.
pub(crate) fn ok(args: &[&str]) -> String {
    let out = node(args);
    assert!(
        out.status.success(),
        "{args:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The single integer `sql` selects from the SQLite file `db`, read-only; -1 when the file is
/// missing or cannot be read (yet).
pub(crate) async fn count(db: &Path, sql: &str) -> i64 {
    if !db.exists() {
        return -1;
    }
    let url = format!("sqlite://{}?mode=ro", db.display());
    let Ok(pool) = sqlx::sqlite::SqlitePoolOptions::new()
        .max_connections(1)
        .connect(&url)
        .await
    else {
        return -1;
    };
    let n = sqlx::query_scalar::<_, i64>(sql)
        .fetch_one(&pool)
        .await
        .unwrap_or(-1);
    pool.close().await;
    n
}

/// Write `<dir>/node.toml` for `member` of the development PKI: HTTP on an ephemeral loopback
/// port, the QUIC endpoint on `peer_listen`, then `extra` (prefectures, `[flows]`). Returns the
/// data directory as a string.
pub(crate) fn write_node_config(
    dir: &Path,
    layout: &PkiLayout,
    member: &str,
    peer_listen: &str,
    extra: &str,
) -> String {
    let files = layout.member(member);
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(
        dir.join("node.toml"),
        format!(
            "listen = \"127.0.0.1:0\"\n\n[peer]\nlisten = \"{peer_listen}\"\ncert = {:?}\nkey = {:?}\nca = {:?}\ncrl = {:?}\n{extra}",
            files.cert,
            files.key,
            layout.ca_cert(),
            layout.crl(),
        ),
    )
    .unwrap();
    dir.display().to_string()
}
