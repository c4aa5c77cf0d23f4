//! The file sharing mode (M4) end to end with the command line, no network: 成都 exports its
//! collection store as sealed batch files for the province, the province imports and governs
//! them and exports 绵阳's return theme, 绵阳 imports it. A retraction at 成都 follows the same
//! path; lineage answers on every node; a file for another node, a tampered file and a replayed
//! file are refused or applied once.

use std::path::{Path, PathBuf};

use xy_transport::devpki::{self, PkiLayout};

mod common;

use common::{node, ok};

fn write_config(dir: &Path, layout: &PkiLayout, member: &str, extra: &str) -> String {
    common::write_node_config(
        dir,
        layout,
        member,
        "127.0.0.1:0",
        &format!("{extra}\n[flows]\n"),
    )
}

/// `flows export` of `flow` from `data_dir` for the holder of `recipient_cert` into `out`,
/// after `after` when given: the files written and the last `through` cursor printed.
fn export(
    data_dir: &str,
    flow: &str,
    recipient_cert: &str,
    out: &Path,
    after: Option<&str>,
) -> (Vec<String>, String) {
    let out_text = out.display().to_string();
    let mut args = vec![
        "flows",
        "export",
        "--data-dir",
        data_dir,
        "--flow",
        flow,
        "--recipient-cert",
        recipient_cert,
        "--out",
        &out_text,
    ];
    if let Some(after) = after {
        args.extend(["--after", after]);
    }
    let printed = ok(&args);
    (files_in(out), last_through(&printed))
}

/// `flows import` of `files` at `data_dir`.
fn import(data_dir: &str, files: &[String]) -> std::process::Output {
    let mut args = vec!["flows", "import", "--data-dir", data_dir];
    args.extend(files.iter().map(String::as_str));
    node(&args)
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
    let (files, shared_through) = export(
        &chengdu,
        "share",
        &cert("province"),
        &root.path().join("up"),
        None,
    );
    assert!(!files.is_empty());
    // Sealed for the province: 绵阳 cannot open them.
    assert!(!import(&mianyang, &files[..1]).status.success());
    let imported = import(&province, &files);
    assert!(imported.status.success());
    assert!(String::from_utf8_lossy(&imported.stdout).contains("applied"));
    // The same files again: applied before, nothing changes.
    let again = import(&province, &files);
    assert!(String::from_utf8_lossy(&again.stdout).contains("(applied before)"));
    // A tampered file is refused.
    let mut bytes = std::fs::read(&files[0]).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 1;
    let tampered = root.path().join("tampered.xyb");
    std::fs::write(&tampered, bytes).unwrap();
    assert!(
        !import(&province, &[tampered.display().to_string()])
            .status
            .success()
    );

    let governed = ok(&["flows", "govern", "--data-dir", &province]);
    assert!(governed.contains("passed"), "{governed}");

    // Province → 绵阳, as files.
    let (files, returned_through) = export(
        &province,
        "return",
        &cert("mianyang"),
        &root.path().join("down"),
        None,
    );
    assert!(import(&mianyang, &files).status.success());
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
    let version_before = copy["version"].as_i64().unwrap();
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
    let (files, _) = export(
        &chengdu,
        "share",
        &cert("province"),
        &root.path().join("up2"),
        Some(&shared_through),
    );
    assert_eq!(files.len(), 1);
    assert!(import(&province, &files).status.success());
    ok(&["flows", "govern", "--data-dir", &province]);
    let (files, _) = export(
        &province,
        "return",
        &cert("mianyang"),
        &root.path().join("down2"),
        Some(&returned_through),
    );
    assert!(import(&mianyang, &files).status.success());
    let at_mianyang: serde_json::Value =
        serde_json::from_str(&ok(&["lineage", gid, "--data-dir", &mianyang])).unwrap();
    let copy = &at_mianyang["copies"][0];
    assert_eq!(
        (copy["status"].as_str(), copy["version"].as_i64()),
        (Some("withdrawn"), Some(version_before + 1))
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
