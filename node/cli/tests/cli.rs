//! The `xinyong-node` binary as operators use it: ingest with a report, a kill -9 in the middle of
//! an ingest, audit verification, queries, and the demo.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

mod common;

use common::{BIN, node, ok};

fn data_dir(dir: &Path) -> String {
    dir.join("node").display().to_string()
}

/// The integer `sql` selects from the node's collection store.
async fn count(dir: &Path, sql: &str) -> i64 {
    common::count(&dir.join("node/stores/collection.db"), sql).await
}

#[test]
fn ingest_writes_one_report_line_per_row_and_query_masks() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("cf.csv");
    let input_s = input.display().to_string();
    ok(&[
        "generate",
        "--output",
        &input_s,
        "--rows",
        "800",
        "--seed",
        "3",
        "--encoding",
        "gbk",
        "--crlf",
    ]);
    let report = dir.path().join("report.jsonl");
    let dd = data_dir(dir.path());
    let out = ok(&[
        "ingest",
        &input_s,
        "--data-dir",
        &dd,
        "--report",
        &report.display().to_string(),
    ]);
    assert!(out.contains("800 rows"), "{out}");
    let lines = std::fs::read_to_string(&report).unwrap();
    assert_eq!(lines.lines().count(), 800);
    for (i, line) in lines.lines().enumerate() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        assert_eq!(v["row"].as_u64(), Some(i as u64 + 1));
        assert!(
            ["stored", "updated", "duplicate", "rejected"]
                .contains(&v["outcome"].as_str().unwrap())
        );
    }
    let batch = out
        .split("batch ")
        .nth(1)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned();
    let csv = ok(&[
        "report",
        &batch,
        "--data-dir",
        &dd,
        "--format",
        "csv",
        "--only-problems",
    ]);
    assert!(csv.starts_with("\u{feff}行号"));
    let q = ok(&[
        "query",
        "--data-dir",
        &dd,
        "--category",
        "xzcf",
        "--limit",
        "1000",
    ]);
    let v: serde_json::Value = serde_json::from_str(&q).unwrap();
    assert!(v["count"].as_u64().unwrap() > 500);
    let mut seen = 0;
    for r in v["records"].as_array().unwrap() {
        for (k, val) in r["fields"].as_object().unwrap() {
            if k.ends_with("_ZJHM") {
                seen += 1;
                assert!(
                    val.as_str().unwrap().contains("********"),
                    "identity number in clear: {val}"
                );
            }
        }
    }
    assert!(seen > 0);
    let quality = ok(&["quality-report", "--data-dir", &dd, "--format", "csv"]);
    assert!(quality.contains("xzcf"));
    assert!(ok(&["audit", "verify", "--data-dir", &dd]).contains("intact"));
    // Bad arguments and inputs end in clear errors and a failure code.
    let out = node(&["ingest", "/nonexistent.csv", "--data-dir", &dd]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("does not exist"));
    let empty = dir.path().join("empty.csv");
    std::fs::write(&empty, "").unwrap();
    let out = node(&["ingest", &empty.display().to_string(), "--data-dir", &dd]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("输入为空"));
    let out = node(&["query", "--data-dir", &dd, "--from", "yesterday"]);
    assert!(!out.status.success());
}

#[tokio::test(flavor = "multi_thread")]
async fn audit_verify_fails_on_an_edited_data_log() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("cf.csv").display().to_string();
    ok(&["generate", "--output", &input, "--rows", "200"]);
    let dd = data_dir(dir.path());
    ok(&["ingest", &input, "--data-dir", &dd]);
    ok(&["ingest", &input, "--data-dir", &dd]);
    assert!(
        node(&["audit", "verify", "--data-dir", &dd])
            .status
            .success()
    );
    {
        use sqlx::Executor;
        sqlx::any::install_default_drivers();
        let url = format!(
            "sqlite://{}",
            dir.path().join("node/stores/collection.db").display()
        );
        let pool = sqlx::any::AnyPoolOptions::new()
            .max_connections(1)
            .connect(&url)
            .await
            .unwrap();
        pool.execute("UPDATE data_log SET stored = stored + 5 WHERE seq = 1")
            .await
            .unwrap();
        pool.close().await;
    }
    let out = node(&["audit", "verify", "--data-dir", &dd]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("entry 1: content does not match its hash")
    );
}

/// kill -9 during a large ingest leaves the store as before the batch or with the batch complete,
/// never half; a later ingest completes and the data log stays intact.
#[tokio::test(flavor = "multi_thread")]
async fn kill_during_ingest_leaves_no_partial_batch() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("big.csv").display().to_string();
    ok(&[
        "generate", "--output", &input, "--rows", "150000", "--seed", "9",
    ]);
    let dd = data_dir(dir.path());
    // A small first batch, so that "before" is not empty.
    let small = dir.path().join("small.csv").display().to_string();
    ok(&[
        "generate", "--output", &small, "--rows", "300", "--seed", "10",
    ]);
    ok(&["ingest", &small, "--data-dir", &dd]);
    let before = count(dir.path(), "SELECT COUNT(*) FROM records").await;
    assert!(before > 0);
    let wal = dir.path().join("node/stores/collection.db-wal");
    let mut previous = before;
    for attempt in 0..3 {
        let mut child = Command::new(BIN)
            .args(["ingest", &input, "--data-dir", &dd])
            .spawn()
            .unwrap();
        // Wait until the batch is being written (the WAL grows), then kill at a different point each time.
        let start = Instant::now();
        let grown = 4_000_000 * (attempt + 1);
        while std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0) < grown
            && start.elapsed() < Duration::from_secs(60)
        {
            if child.try_wait().unwrap().is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let finished = child.try_wait().unwrap().is_some();
        child.kill().ok();
        child.wait().unwrap();
        let records = count(dir.path(), "SELECT COUNT(*) FROM records").await;
        let batches = count(
            dir.path(),
            "SELECT COUNT(*) FROM data_log WHERE kind = 'ingest'",
        )
        .await;
        let reported = count(
            dir.path(),
            "SELECT COALESCE(SUM(stored), 0) FROM data_log WHERE kind = 'ingest'",
        )
        .await;
        // Whatever the moment of the kill: every record belongs to a logged batch, and the counts agree.
        assert_eq!(
            records, reported,
            "attempt {attempt}: records {records}, logged {reported}"
        );
        if finished {
            assert!(records > previous);
        } else {
            // Killed inside the batch: nothing of it is left.
            assert_eq!(
                records, previous,
                "attempt {attempt}: a killed batch left rows behind"
            );
            assert_eq!(batches, 1, "attempt {attempt}");
        }
        previous = records;
        assert!(
            node(&["audit", "verify", "--data-dir", &dd])
                .status
                .success()
        );
    }
    // A full run afterwards completes, and only one copy of each record exists.
    ok(&["ingest", &input, "--data-dir", &dd]);
    let records = count(dir.path(), "SELECT COUNT(*) FROM records").await;
    let distinct = count(dir.path(), "SELECT COUNT(DISTINCT key_hash) FROM records").await;
    assert_eq!(records, distinct);
    let reported = count(
        dir.path(),
        "SELECT COALESCE(SUM(stored), 0) FROM data_log WHERE kind = 'ingest'",
    )
    .await;
    assert_eq!(records, reported);
    assert!(records > 100_000);
}

#[test]
fn demo_runs_the_whole_loop_and_accounts_for_every_row() {
    let dir = tempfile::tempdir().unwrap();
    let dd = dir.path().join("demo").display().to_string();
    let args = [
        "demo",
        "--data-dir",
        &dd,
        "--exit-when-done",
        "--rows",
        "300",
    ];
    let out = ok(&args);
    for needle in [
        "v1 fields mapped",
        "csv/gb18030",
        "SM3 chain intact",
        "enrolled",
        "return_510700 takes [\"xzcf\"]",
        "G03",
        "3 duplicates",
        "********",
        "\"share\"",
    ] {
        assert!(out.contains(needle), "demo output lacks {needle:?}:\n{out}");
    }
    let summary = out
        .lines()
        .find(|l| l.starts_with("SUMMARY "))
        .expect("a SUMMARY line");
    let value = |key: &str| -> i64 {
        summary
            .split_whitespace()
            .find_map(|kv| kv.strip_prefix(&format!("{key}=")))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{key} in {summary}"))
    };
    assert_eq!(value("lost"), 0, "{summary}");
    assert_eq!(value("ingested"), 5 * 300 + 4, "{summary}");
    assert!(
        value("shared") > 1000 && value("governed") == value("shared"),
        "{summary}"
    );
    assert!(value("returned") > value("shared"), "{summary}");
    assert!(value("scenario") > 0, "{summary}");
    // A second run replaces the first; a directory the demo did not make is refused.
    let again = ok(&args);
    assert!(again.contains("lost=0"), "{again}");
    let other = dir.path().join("other");
    std::fs::create_dir_all(&other).unwrap();
    std::fs::write(other.join("keep.txt"), "mine").unwrap();
    let refused = node(&[
        "demo",
        "--data-dir",
        &other.display().to_string(),
        "--exit-when-done",
    ]);
    assert!(!refused.status.success());
    assert!(other.join("keep.txt").exists());
}

#[test]
fn generate_takes_a_rate_per_defect() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("g.csv").display().to_string();
    let dd = data_dir(dir.path());
    // Only bad dates, at 30%: every rejection is a date_real fault.
    ok(&[
        "generate",
        "--output",
        &out,
        "--rows",
        "1000",
        "--defect-rate",
        "bad-date=0.3",
        "--defect-rate",
        "missing-required=0",
        "--defect-rate",
        "bad-uscc=0",
        "--defect-rate",
        "bad-resident-id=0",
        "--defect-rate",
        "future-date=0",
        "--defect-rate",
        "date-order=0",
        "--defect-rate",
        "missing-fine=0",
        "--defect-rate",
        "natural-with-uscc=0",
    ]);
    ok(&["ingest", &out, "--data-dir", &dd]);
    let q: serde_json::Value = serde_json::from_str(&ok(&[
        "quality-report",
        "--data-dir",
        &dd,
        "--format",
        "json",
    ]))
    .unwrap();
    let line = &q[0];
    let rejected = line["rejected"].as_i64().unwrap();
    assert!((250..=350).contains(&rejected), "{line}");
    let rules = line["rejections_by_rule"].as_object().unwrap();
    assert_eq!(
        rules.keys().collect::<Vec<_>>(),
        vec!["date_real"],
        "{line}"
    );
    for bad in [
        &["--defect-rate", "bad-date"][..],
        &["--defect-rate", "nope=0.1"],
        &[
            "--defect-rate",
            "duplicate=0.7",
            "--defect-rate",
            "changed=0.7",
        ],
    ] {
        let mut args = vec!["generate", "--output", &out];
        args.extend_from_slice(bad);
        assert!(!node(&args).status.success(), "{bad:?}");
    }
}

#[test]
fn help_lists_the_commands() {
    let help = ok(&["--help"]);
    for cmd in [
        "ingest",
        "report",
        "query",
        "quality-report",
        "audit",
        "generate",
        "serve",
        "demo",
        "pki",
        "tls",
        "flows",
        "lineage",
        "retract",
        "work-orders",
    ] {
        assert!(help.contains(cmd), "{cmd}");
    }
}

/// `serve` on a real loopback socket: health, deny by default, and the quality report written on
/// the schedule set in the configuration.
#[test]
fn serve_writes_scheduled_quality_reports_and_denies_by_default() {
    use std::io::{BufRead, BufReader, Read, Write};
    let dir = tempfile::tempdir().unwrap();
    let dd = dir.path().join("node");
    std::fs::create_dir_all(&dd).unwrap();
    std::fs::write(
        dd.join("node.toml"),
        "listen = \"127.0.0.1:0\"\nquality_report_interval_secs = 1\n",
    )
    .unwrap();
    let input = dir.path().join("cf.csv").display().to_string();
    ok(&["generate", "--output", &input, "--rows", "50"]);
    ok(&["ingest", &input, "--data-dir", &dd.display().to_string()]);
    let mut child = Command::new(BIN)
        .args(["serve", "--data-dir", &dd.display().to_string()])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line
        .split("http://")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .expect("listen address")
        .to_owned();
    let request = |path: &str| {
        let mut s = std::net::TcpStream::connect(&addr).unwrap();
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    };
    assert!(request("/health").starts_with("HTTP/1.1 200"));
    assert!(request("/api/v1/records").starts_with("HTTP/1.1 401"));
    let reports = dd.join("reports");
    let start = Instant::now();
    let found = loop {
        let n = std::fs::read_dir(&reports)
            .map(|d| {
                d.filter_map(Result::ok)
                    .filter(|e| e.file_name().to_string_lossy().ends_with(".json"))
                    .count()
            })
            .unwrap_or(0);
        if n > 0 || start.elapsed() > Duration::from_secs(20) {
            break n;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    child.kill().ok();
    child.wait().unwrap();
    assert!(found > 0, "no scheduled quality report written");
    let report = std::fs::read_dir(&reports)
        .unwrap()
        .filter_map(Result::ok)
        .find(|e| e.file_name().to_string_lossy().ends_with(".json"))
        .unwrap();
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(report.path()).unwrap()).unwrap();
    assert_eq!(v[0]["total"], 50);
}

/// `ingest --db-url URL --table T`: a department's table, with a report per row.
#[tokio::test(flavor = "multi_thread")]
async fn ingest_from_a_database_table() {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("xk.csv").display().to_string();
    ok(&[
        "generate", "--output", &csv, "--rows", "120", "--kind", "licence", "--seed", "5",
    ]);
    // Load the generated rows into a department database table.
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("dept.db").display());
    {
        sqlx::any::install_default_drivers();
        let pool = sqlx::any::AnyPoolOptions::new()
            .max_connections(1)
            .connect(&url)
            .await
            .unwrap();
        let text = std::fs::read_to_string(&csv).unwrap();
        let mut lines = text.lines();
        let header: Vec<&str> = lines.next().unwrap().split(',').collect();
        let columns: Vec<String> = header.iter().map(|h| format!("{h} TEXT")).collect();
        sqlx::query(&format!("CREATE TABLE xk_export ({})", columns.join(", ")))
            .execute(&pool)
            .await
            .unwrap();
        let ph = vec!["?"; header.len()].join(",");
        let insert = format!("INSERT INTO xk_export VALUES ({ph})");
        let mut rows = 0;
        for line in lines {
            let cells: Vec<&str> = line.split(',').collect();
            if cells.len() != header.len() {
                continue; // a quoted comma; this simple loader skips such rows
            }
            let mut q = sqlx::query(&insert);
            for c in cells {
                q = q.bind(c.to_owned());
            }
            q.execute(&pool).await.unwrap();
            rows += 1;
        }
        assert!(rows > 100);
        pool.close().await;
    }
    let dd = data_dir(dir.path());
    let report = dir.path().join("table.jsonl");
    let out = ok(&[
        "ingest",
        "--db-url",
        &url,
        "--table",
        "xk_export",
        "--order-by",
        "XK_WSH",
        "--data-dir",
        &dd,
        "--report",
        &report.display().to_string(),
    ]);
    assert!(out.contains("#xk_export") && out.contains("xzxk"), "{out}");
    let lines = std::fs::read_to_string(&report).unwrap().lines().count();
    assert!(lines > 100);
    let out = node(&[
        "ingest",
        "--db-url",
        &url,
        "--table",
        "no_such_table",
        "--data-dir",
        &dd,
    ]);
    assert!(!out.status.success());
    let out = node(&["ingest", "--db-url", &url, "--data-dir", &dd]);
    assert!(!out.status.success(), "--db-url needs --table");
}

/// `pki init` writes the development PKI (keys private to the owner, refusing to replace a CA
/// without --force), and `tls serve` / `tls connect` complete a verified mutual handshake with it:
/// the reply comes back and `connect` exits 0; with a certificate of another CA it exits non-zero.
#[test]
fn pki_init_and_tls_serve_connect_round_trip() {
    use std::io::{BufRead, BufReader, Write};
    let dir = tempfile::tempdir().unwrap();
    let pki = dir.path().join("pki");
    let pki_s = pki.display().to_string();
    let listing = ok(&["pki", "init", "--out", &pki_s]);
    assert!(listing.contains("510700"), "{listing}");
    for file in [
        "ca.pem",
        "ca.key",
        "crl.pem",
        "province.pem",
        "chengdu.key",
        "mianyang.pem",
        "bank.pem",
    ] {
        assert!(pki.join(file).is_file(), "{file}");
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(pki.join("chengdu.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(
            mode & 0o077,
            0,
            "private keys must not be readable by others"
        );
    }
    let again = node(&["pki", "init", "--out", &pki_s]);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("--force"));
    let other = dir.path().join("other");
    ok(&["pki", "init", "--out", &other.display().to_string()]);

    let f = |name: &str| pki.join(name).display().to_string();
    let mut server = Command::new(BIN)
        .args(["tls", "serve", "--listen", "127.0.0.1:0", "--suite", "ccm"])
        .args([
            "--cert",
            &f("province.pem"),
            "--key",
            &f("province.key"),
            "--ca",
            &f("ca.pem"),
            "--crl",
            &f("crl.pem"),
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(server.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    let addr = first
        .trim()
        .strip_prefix("tls: listening on ")
        .expect("bound address")
        .to_owned();
    let connect = |cert: &str, key: &str| {
        let mut child = Command::new(BIN)
            .args([
                "tls",
                "connect",
                &addr,
                "--server-name",
                "province.xinyong.internal",
                "--suite",
                "ccm",
            ])
            .args(["--cert", cert, "--key", key, "--ca", &f("ca.pem")])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(b"510100 asks\n")
            .unwrap();
        child.wait_with_output().unwrap()
    };
    let out = connect(&f("chengdu.pem"), &f("chengdu.key"));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.stdout, b"510100 asks\n");
    assert!(String::from_utf8_lossy(&out.stderr).contains("verified mutual handshake"));
    let stranger = other.join("chengdu.pem").display().to_string();
    let stranger_key = other.join("chengdu.key").display().to_string();
    let out = connect(&stranger, &stranger_key);
    assert!(
        !out.status.success(),
        "a certificate of another CA was accepted"
    );
    server.kill().unwrap();
    let _ = server.wait();
}

#[tokio::test(flavor = "multi_thread")]
async fn psi_between_two_node_processes_is_written_to_both_data_logs() {
    use std::io::{BufRead, BufReader};
    let dir = tempfile::tempdir().unwrap();
    let pki = dir.path().join("pki");
    ok(&["pki", "init", "--out", &pki.display().to_string()]);
    let f = |name: &str| pki.join(name).display().to_string();
    let (chengdu, mianyang) = (dir.path().join("chengdu"), dir.path().join("mianyang"));
    let ids = |range: std::ops::Range<u32>| -> String {
        range.map(|i| format!("91510100MA{i:08}\n")).collect()
    };
    std::fs::write(dir.path().join("a.txt"), ids(0..300)).unwrap();
    std::fs::write(dir.path().join("b.txt"), ids(250..400)).unwrap();
    let mut responder = Command::new(BIN)
        .args(["psi", "--listen", "127.0.0.1:0", "--set"])
        .arg(dir.path().join("a.txt"))
        .args(["--cert", &f("chengdu.pem"), "--key", &f("chengdu.key")])
        .args(["--ca", &f("ca.pem"), "--data-dir", &data_dir(&chengdu)])
        .env_remove("XY_DATABASE_URL")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(responder.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    let addr = first
        .strip_prefix("psi: answering runs on ")
        .and_then(|rest| rest.split_whitespace().next())
        .expect("bound address")
        .to_owned();
    let b = dir.path().join("b.txt").display().to_string();
    let out = ok(&[
        "psi",
        "--peer",
        &addr,
        "--server-name",
        "chengdu.xinyong.internal",
        "--set",
        &b,
        "--mode",
        "both",
        "--cert",
        &f("mianyang.pem"),
        "--key",
        &f("mianyang.key"),
        "--ca",
        &f("ca.pem"),
        "--data-dir",
        &data_dir(&mianyang),
    ]);
    assert_eq!(out.lines().count(), 50, "{out}");
    // Both sides logged the run, with sizes and no element.
    let logged = |side: &Path, kind: &str| {
        let side = side.to_path_buf();
        let kind = kind.to_owned();
        async move {
            count(
                &side,
                &format!("SELECT COUNT(*) FROM data_log WHERE kind = '{kind}' AND detail NOT LIKE '%91510100MA%'"),
            )
            .await
        }
    };
    assert_eq!(logged(&mianyang, "psi.run").await, 1);
    let deadline = Instant::now() + Duration::from_secs(10);
    while logged(&chengdu, "psi.respond").await == 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(logged(&chengdu, "psi.respond").await, 1);
    responder.kill().unwrap();
    let _ = responder.wait();
}
