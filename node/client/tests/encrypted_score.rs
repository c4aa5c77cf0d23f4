//! `xinyong query --encrypted-score` against a local federation of real processes: two prefecture
//! nodes and a province node (`xinyong-node serve` with a `[peer]` section), data ingested with
//! `xinyong-node ingest`, a development PKI from `xinyong-node pki init`. The client prints a grade
//! and, with `--explain`, the contributing jurisdictions; a second query uploads no keys.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

const CLIENT: &str = env!("CARGO_BIN_EXE_xinyong");

/// `xinyong-node`, built beside the client by `cargo test --workspace`.
fn node_binary() -> PathBuf {
    Path::new(CLIENT).with_file_name("xinyong-node")
}

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn run(args: &[&str]) -> String {
    let out = Command::new(node_binary())
        .args(args)
        .output()
        .expect("xinyong-node runs");
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Start `serve` for a node whose node.toml is written, and return it with its QUIC address.
fn serve(data_dir: &Path) -> (Killed, String) {
    let mut child = Command::new(node_binary())
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data_dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("serve starts");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let addr = loop {
        let line = lines
            .next()
            .expect("serve prints its addresses")
            .expect("line");
        if let Some(rest) = line.strip_prefix("peer endpoint (QUIC, RFC 8998, ALPN xinyong/1) on ")
        {
            break rest.trim().to_owned();
        }
    };
    std::thread::spawn(move || for _ in lines {});
    (Killed(child), addr)
}

fn peer_section(pki: &Path, member: &str) -> String {
    let p = |f: &str| pki.join(f).display().to_string();
    format!(
        "[peer]\nlisten = \"127.0.0.1:0\"\ncert = \"{}\"\nkey = \"{}\"\nca = \"{}\"\ncrl = \"{}\"\n",
        p(&format!("{member}.pem")),
        p(&format!("{member}.key")),
        p("ca.pem"),
        p("crl.pem")
    )
}

#[test]
fn a_bank_queries_an_encrypted_grade_from_the_province() {
    let dir = tempfile::tempdir().unwrap();
    let pki = dir.path().join("pki");
    run(&["pki", "init", "--out", pki.to_str().unwrap()]);

    // Two prefectures with 行政处罚 data; the subject is the first company of the first file.
    let mut prefectures = Vec::new();
    let mut subject = String::new();
    for (member, seed) in [("chengdu", "21"), ("mianyang", "22")] {
        let data = dir.path().join(member);
        std::fs::create_dir_all(&data).unwrap();
        let csv = data.join("xzcf.csv");
        run(&[
            "generate",
            "--output",
            csv.to_str().unwrap(),
            "--rows",
            "300",
            "--seed",
            seed,
        ]);
        run(&[
            "ingest",
            csv.to_str().unwrap(),
            "--data-dir",
            data.to_str().unwrap(),
        ]);
        if subject.is_empty() {
            let mut reader = csv::Reader::from_path(&csv).unwrap();
            let at = reader
                .headers()
                .unwrap()
                .iter()
                .position(|h| h == "CF_XDR_SHXYM")
                .unwrap();
            subject = reader
                .records()
                .map(|r| r.unwrap().get(at).unwrap_or("").to_owned())
                .find(|c| c.len() == 18)
                .expect("a company row");
        }
        std::fs::write(data.join("node.toml"), peer_section(&pki, member)).unwrap();
        prefectures.push(serve(&data));
    }
    let province = dir.path().join("province");
    std::fs::create_dir_all(&province).unwrap();
    let mut config = peer_section(&pki, "province");
    for ((_, addr), member) in prefectures.iter().zip(["chengdu", "mianyang"]) {
        config.push_str(&format!(
            "[[peer.prefectures]]\naddr = \"{addr}\"\nserver_name = \"{member}.xinyong.internal\"\n"
        ));
    }
    std::fs::write(province.join("node.toml"), config).unwrap();
    let (_province, province_addr) = serve(&province);

    let keys = dir.path().join("bank-keys");
    // The client as `member` (a certificate of the development PKI).
    let run_client = |member: &str, extra: &[&str]| {
        Command::new(CLIENT)
            .args([
                "query",
                "--encrypted-score",
                &subject,
                "--node",
                &province_addr,
            ])
            .args([
                "--cert",
                pki.join(format!("{member}.pem")).to_str().unwrap(),
            ])
            .args(["--key", pki.join(format!("{member}.key")).to_str().unwrap()])
            .args([
                "--ca",
                pki.join("ca.pem").to_str().unwrap(),
                "--keys",
                keys.to_str().unwrap(),
            ])
            .args(extra)
            .output()
            .expect("xinyong runs")
    };
    let query = |extra: &[&str]| {
        let out = run_client("bank", extra);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        (
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (stdout, stderr) = query(&["--explain", "--score"]);
    assert!(
        stdout.contains(&format!("subject {subject}: grade ")),
        "{stdout}"
    );
    let grade = stdout
        .split("grade ")
        .nth(1)
        .unwrap()
        .chars()
        .next()
        .unwrap();
    assert!("ABCD".contains(grade), "{stdout}");
    assert!(stdout.contains("score "), "{stdout}");
    assert!(
        stdout.contains("contributing jurisdictions (2): 510100, 510700"),
        "{stdout}"
    );
    assert!(
        stderr.contains("uploaded"),
        "the first query uploads the keys: {stderr}"
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(keys.join("client_key.tfhe"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0, "the client key must be private");
    }
    let (again, stderr) = query(&[]);
    assert!(
        again.contains(&format!("grade {grade}")),
        "same grade again: {again}"
    );
    assert!(
        !stderr.contains("uploaded"),
        "the province cached the keys: {stderr}"
    );
    // A prefecture certificate is refused by the province.
    let out = run_client("chengdu", &[]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("financial-institution"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // A private credit query at Chengdu's node, in both modes: the subject's records come back
    // (identity numbers masked), an unknown company gets none.
    let absent = {
        let base = "91510100MA0000000";
        let check = xy_policy::identifiers::uscc_check_char(base.as_bytes()).unwrap();
        format!("{base}{}", char::from(check))
    };
    let ids = dir.path().join("ids.txt");
    std::fs::write(&ids, format!("# customers\n{subject}\n\n{absent}\n")).unwrap();
    let chengdu_addr = &prefectures[0].1;
    let private = |mode: &str, ids: &Path| {
        Command::new(CLIENT)
            .args(["query", "--private", "--ids", ids.to_str().unwrap()])
            .args(["--mode", mode, "--node", chengdu_addr])
            .args(["--server-name", "chengdu.xinyong.internal"])
            .args(["--cert", pki.join("bank.pem").to_str().unwrap()])
            .args(["--key", pki.join("bank.key").to_str().unwrap()])
            .args(["--ca", pki.join("ca.pem").to_str().unwrap()])
            .args(["--keys", keys.to_str().unwrap()])
            .output()
            .expect("xinyong runs")
    };
    for mode in ["bucket", "filter", "filter"] {
        let out = private(mode, &ids);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{mode}: {stderr}");
        let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert_eq!(lines[0]["id"], subject.as_str());
        assert_eq!(lines[0]["found"], true);
        if mode == "bucket" {
            let records = lines[0]["records"].as_array().unwrap();
            assert!(!records.is_empty());
            for r in records {
                if let Some(number) = r.get("CF_FR_ZJHM").and_then(|v| v.as_str()) {
                    assert!(number.contains('*'), "masked: {number}");
                }
            }
        } else {
            assert!(lines[0].get("records").is_none(), "filter mode: membership");
        }
        assert_eq!(lines[1]["found"], false);
        assert!(stderr.contains("2 ids, 1 found"), "{stderr}");
    }
    assert!(keys.join("filter-chengdu.xinyong.internal.xpqs").is_file());
    // A bad id is refused by line before anything is sent.
    std::fs::write(&ids, format!("{subject}\n91510100MA000000\n")).unwrap();
    let out = private("bucket", &ids);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("line 2"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
