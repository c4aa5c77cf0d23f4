//! The file sharing mode (M4) end to end with the command line, no network: 成都 exports its
//! collection store as sealed batch files for the province, the province imports and governs
//! them and exports 绵阳's return theme, 绵阳 imports it. A retraction at 成都 follows the same
//! path; lineage answers on every node; a file for another node, a tampered file and a replayed
//! file are refused or applied once.

use std::path::{Path, PathBuf};
use std::process::Command;

use xy_transport::devpki::{self, PkiLayout};

const BIN: &str = env!("CARGO_BIN_EXE_xinyong-node");

fn node(args: &[&str]) -> std::process::Output {
    Command::new(BIN).args(args).output().unwrap()
}

fn ok(args: &[&str]) -> String {
    let out = node(args);
    assert!(
        out.status.success(),
        "{args:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn write_config(dir: &Path, layout: &PkiLayout, member: &str, extra: &str) -> String {
    let files = layout.member(member);
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(
        dir.join("node.toml"),
        format!(
            "[peer]\nlisten = \"127.0.0.1:0\"\ncert = {:?}\nkey = {:?}\nca = {:?}\ncrl = {:?}\n{extra}\n[flows]\n",
            files.cert,
            files.key,
            layout.ca_cert(),
            layout.crl(),
        ),
    )
    .unwrap();
    dir.display().to_string()
}

fn files_in(dir: &Path) -> Vec<String> {
    let mut files: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path().display().to_string())
        .collect();
    files.sort();
    files
}

/// The last `through` cursor an export printed (`… (n records, after .. through)`).
fn last_through(export: &str) -> String {
    export
        .lines()
        .last()
        .and_then(|l| l.rsplit(".. ").next())
        .map(|t| t.trim_end_matches(')').to_owned())
        .expect("an exported file")
}

#[test]
fn batch_files_carry_shares_returns_and_retractions() {
    let root = tempfile::tempdir().unwrap();
    let layout = devpki::init(&root.path().join("pki"), false, devpki::unix_now()).unwrap();
    let dir = |m: &str| -> PathBuf { root.path().join(m) };
    let chengdu = write_config(&dir("chengdu"), &layout, "chengdu", "");
    let mianyang = write_config(&dir("mianyang"), &layout, "mianyang", "");
    let province = write_config(
        &dir("province"),
        &layout,
        "province",
        &format!(
            "[[peer.prefectures]]\naddr = \"127.0.0.1:9\"\nserver_name = \"{}\"\njurisdiction = \"510700\"\n",
            devpki::server_name("mianyang")
        ),
    );
    let cert = |m: &str| layout.member(m).cert.display().to_string();

    let input = root.path().join("xzcf.csv").display().to_string();
    ok(&["generate", "--output", &input, "--rows", "300"]);
    ok(&["ingest", &input, "--data-dir", &chengdu]);

    // 成都 → province, as files.
    let up = root.path().join("up");
    let export = ok(&[
        "flows",
        "export",
        "--data-dir",
        &chengdu,
        "--flow",
        "share",
        "--recipient-cert",
        &cert("province"),
        "--out",
        &up.display().to_string(),
    ]);
    let shared_through = last_through(&export);
    let files = files_in(&up);
    assert!(!files.is_empty());
    // Sealed for the province: 绵阳 cannot open them.
    let refused = node(
        &[
            &["flows", "import", "--data-dir", &mianyang][..],
            &[files[0].as_str()],
        ]
        .concat(),
    );
    assert!(!refused.status.success());
    let mut args = vec!["flows", "import", "--data-dir", &province];
    args.extend(files.iter().map(String::as_str));
    let imported = ok(&args);
    assert!(imported.contains("applied"), "{imported}");
    // The same files again: applied before, nothing changes.
    let again = ok(&args);
    assert!(again.contains("(applied before)"), "{again}");
    // A tampered file is refused.
    let mut bytes = std::fs::read(&files[0]).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 1;
    let tampered = root.path().join("tampered.xyb");
    std::fs::write(&tampered, bytes).unwrap();
    assert!(
        !node(&[
            "flows",
            "import",
            "--data-dir",
            &province,
            &tampered.display().to_string()
        ])
        .status
        .success()
    );

    let governed = ok(&["flows", "govern", "--data-dir", &province]);
    assert!(governed.contains("passed"), "{governed}");

    // Province → 绵阳, as files.
    let down = root.path().join("down");
    let export = ok(&[
        "flows",
        "export",
        "--data-dir",
        &province,
        "--flow",
        "return",
        "--recipient-cert",
        &cert("mianyang"),
        "--out",
        &down.display().to_string(),
    ]);
    let returned_through = last_through(&export);
    let mut args = vec!["flows", "import", "--data-dir", &mianyang];
    let files = files_in(&down);
    args.extend(files.iter().map(String::as_str));
    ok(&args);
    let status: serde_json::Value =
        serde_json::from_str(&ok(&["flows", "status", "--data-dir", &mianyang])).unwrap();
    let returned = status["return_flow"]["records"].as_i64().unwrap();
    assert!(returned > 200, "{status}");

    // Lineage of record 1 on each node.
    let gid = "510100:0000000001";
    let at_mianyang: serde_json::Value =
        serde_json::from_str(&ok(&["lineage", gid, "--data-dir", &mianyang])).unwrap();
    let copy = &at_mianyang["copies"][0];
    assert_eq!(copy["store"], "return_flow");
    assert!(
        copy["lineage"]["share"]["batch"].is_string(),
        "{at_mianyang}"
    );
    assert!(
        copy["lineage"]["return"]["batch"].is_string(),
        "{at_mianyang}"
    );
    let at_origin: serde_json::Value =
        serde_json::from_str(&ok(&["lineage", gid, "--data-dir", &chengdu])).unwrap();
    assert_eq!(at_origin["copies"][0]["store"], "collection");
    assert_eq!(
        node(&["lineage", "510100:0000099999", "--data-dir", &mianyang])
            .status
            .code(),
        Some(3)
    );

    // Retraction at 成都 reaches 绵阳 through the same files.
    ok(&[
        "retract",
        "--data-dir",
        &chengdu,
        "--id",
        "1",
        "--reason",
        "决定已撤销",
    ]);
    let up2 = root.path().join("up2");
    ok(&[
        "flows",
        "export",
        "--data-dir",
        &chengdu,
        "--flow",
        "share",
        "--recipient-cert",
        &cert("province"),
        "--after",
        &shared_through,
        "--out",
        &up2.display().to_string(),
    ]);
    let mut args = vec!["flows", "import", "--data-dir", &province];
    let files = files_in(&up2);
    assert_eq!(files.len(), 1);
    args.extend(files.iter().map(String::as_str));
    ok(&args);
    ok(&["flows", "govern", "--data-dir", &province]);
    let down2 = root.path().join("down2");
    ok(&[
        "flows",
        "export",
        "--data-dir",
        &province,
        "--flow",
        "return",
        "--recipient-cert",
        &cert("mianyang"),
        "--after",
        &returned_through,
        "--out",
        &down2.display().to_string(),
    ]);
    let mut args = vec!["flows", "import", "--data-dir", &mianyang];
    let files = files_in(&down2);
    args.extend(files.iter().map(String::as_str));
    ok(&args);
    let at_mianyang: serde_json::Value =
        serde_json::from_str(&ok(&["lineage", gid, "--data-dir", &mianyang])).unwrap();
    let copy = &at_mianyang["copies"][0];
    assert_eq!(
        (copy["status"].as_str(), copy["version"].as_i64()),
        (Some("withdrawn"), Some(2))
    );
    assert_eq!(copy["earlier_versions"][0]["status"], "active");
    // Retracting twice is refused with a reason.
    assert!(
        !node(&[
            "retract",
            "--data-dir",
            &chengdu,
            "--id",
            "1",
            "--reason",
            "again"
        ])
        .status
        .success()
    );
    // No work orders for clean data.
    let orders = node(&["work-orders", "--data-dir", &chengdu]);
    assert!(String::from_utf8_lossy(&orders.stderr).contains("0 work order"));
}
