//! Statistics reported by two enrolled nodes (signed with their certificate keys) and aggregated
//! by prefecture, day and department; reports from a revoked node, for another jurisdiction or
//! with a broken signature refused; CSV and Excel exports read back; effectiveness feedback
//! submitted and reviewed; and the report page loaded in headless Chromium, whose script draws
//! one bar per figure.

mod common;

use std::sync::Arc;

use common::NOW;
use xy_coordinator_server::api::{ApiState, router};
use xy_coordinator_server::statistics::{CountLine, CountReport, Feedback, Grouping, sign_report};
use xy_coordinator_server::{Claims, Coordinator, CoordinatorError, UserRole};
use xy_gmtls::pki::Role;
use xy_shangmi::sm2::Sm2SecretKey;

fn line(category: &str, unit: &str, ingested: u64, rejected: u64) -> CountLine {
    CountLine {
        category: category.into(),
        source_unit: unit.into(),
        ingested,
        rejected,
        shared: ingested / 2,
        returned: 3,
        queried: 1,
    }
}

struct Node {
    key: Sm2SecretKey,
    certificate_pem: String,
    serial: String,
}

async fn enrol(c: &Coordinator, root: &Claims, seed: u8, jurisdiction: &str, role: Role) -> Node {
    let enrolment = common::enrol(
        c,
        root,
        seed,
        jurisdiction,
        role,
        &format!("n{seed}.xinyong.internal"),
    )
    .await;
    Node {
        key: common::key(seed),
        certificate_pem: enrolment.certificate_pem,
        serial: enrolment.serial,
    }
}

fn report(jurisdiction: &str, day: &str, lines: Vec<CountLine>) -> CountReport {
    CountReport {
        jurisdiction: jurisdiction.into(),
        day: day.into(),
        lines,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_report_the_province_aggregates_exports_and_draws_the_chart() {
    let dir = tempfile::tempdir().unwrap();
    let c = Arc::new(common::open(dir.path()).await);
    let root = common::admin(&c).await;
    let chengdu = enrol(&c, &root, 1, "510100", Role::PrefectureNode).await;
    let mianyang = enrol(&c, &root, 2, "510700", Role::PrefectureNode).await;
    let bank = enrol(&c, &root, 3, "510100", Role::InstitutionClient).await;
    let unit_a = "11510100MB0000001X";
    let unit_b = "11510700MB0000002X";

    let send = |node: &Node, r: CountReport| {
        let signed = sign_report(&r, &node.key, &node.certificate_pem).unwrap();
        let c = Arc::clone(&c);
        async move { c.accept_report(&signed, NOW).await }
    };
    send(
        &chengdu,
        report(
            "510100",
            "2026-11-19",
            vec![line("xzcf", unit_a, 100, 7), line("xzxk", unit_a, 40, 0)],
        ),
    )
    .await
    .unwrap();
    send(
        &chengdu,
        report("510100", "2026-11-20", vec![line("xzcf", unit_a, 80, 2)]),
    )
    .await
    .unwrap();
    send(
        &mianyang,
        report("510700", "2026-11-20", vec![line("xzcf", unit_b, 60, 6)]),
    )
    .await
    .unwrap();
    // A re-report of a day replaces it.
    send(
        &mianyang,
        report("510700", "2026-11-20", vec![line("xzcf", unit_b, 65, 5)]),
    )
    .await
    .unwrap();

    // Refused: another jurisdiction, a client certificate, a broken signature, a revoked node.
    let err = send(&chengdu, report("510700", "2026-11-20", vec![]))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("reports for"), "{err}");
    let err = send(&bank, report("510100", "2026-11-20", vec![]))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("not a node"), "{err}");
    let mut forged = sign_report(
        &report("510100", "2026-11-21", vec![]),
        &chengdu.key,
        &chengdu.certificate_pem,
    )
    .unwrap();
    forged.report = forged.report.replace("2026-11-21", "2026-11-22");
    assert!(c.accept_report(&forged, NOW).await.is_err());
    let err = send(&chengdu, report("510100", "yesterday", vec![]))
        .await
        .unwrap_err();
    assert!(matches!(err, CoordinatorError::BadRequest(_)), "{err}");
    let stranger_dir = tempfile::tempdir().unwrap();
    let stranger = common::open(stranger_dir.path()).await;
    let stranger_root = common::admin(&stranger).await;
    let outsider = enrol(&stranger, &stranger_root, 4, "510100", Role::PrefectureNode).await;
    let err = send(&outsider, report("510100", "2026-11-20", vec![]))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("not signed by this CA"), "{err}");
    c.revoke(&root, &mianyang.serial, "decommissioned", NOW)
        .await
        .unwrap();
    let err = send(&mianyang, report("510700", "2026-11-21", vec![]))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("revoked"), "{err}");

    // Aggregates.
    let by = |g| {
        let c = Arc::clone(&c);
        let root = root.clone();
        async move {
            c.statistics(&root, "2026-11-01", "2026-11-30", g, NOW)
                .await
                .unwrap()
        }
    };
    let prefectures = by(Grouping::Prefecture).await;
    let summary: Vec<(String, i64, i64)> = prefectures
        .iter()
        .map(|a| (a.key.clone(), a.ingested, a.rejected))
        .collect();
    assert_eq!(
        summary,
        [("510100".to_owned(), 220, 9), ("510700".to_owned(), 65, 5)]
    );
    let days: Vec<(String, i64)> = by(Grouping::Day)
        .await
        .into_iter()
        .map(|a| (a.key, a.ingested))
        .collect();
    assert_eq!(
        days,
        [
            ("2026-11-19".to_owned(), 140),
            ("2026-11-20".to_owned(), 145)
        ]
    );
    assert_eq!(by(Grouping::Department).await.len(), 2);
    assert_eq!(by(Grouping::Category).await.len(), 2);
    // A prefecture administrator sees its own; a banker nothing.
    let cd = common::user(&c, &root, "cd-admin", UserRole::PrefectureAdmin, "510100").await;
    let banker = common::user(&c, &root, "banker", UserRole::InstitutionUser, "510100").await;
    let own = c
        .statistics(&cd, "2026-11-01", "2026-11-30", Grouping::Prefecture, NOW)
        .await
        .unwrap();
    assert_eq!(own.len(), 1);
    assert!(matches!(
        c.statistics(
            &banker,
            "2026-11-01",
            "2026-11-30",
            Grouping::Prefecture,
            NOW
        )
        .await,
        Err(CoordinatorError::Forbidden(_))
    ));

    // Exports: CSV and an Excel workbook read back.
    let csv = xy_coordinator_server::statistics::to_csv("市州", &prefectures);
    assert!(csv.contains("510100,220,9,110,9,3"), "{csv}");
    let xlsx = xy_coordinator_server::statistics::to_xlsx("市州", &prefectures).unwrap();
    let path = dir.path().join("statistics.xlsx");
    std::fs::write(&path, &xlsx).unwrap();
    use calamine::Reader;
    let mut workbook: calamine::Xlsx<_> = calamine::open_workbook(&path).unwrap();
    let sheet = workbook.worksheet_range("统计").unwrap();
    assert_eq!(sheet.get_value((1, 0)).unwrap().to_string(), "510100");
    assert_eq!(sheet.get_value((1, 1)).unwrap().to_string(), "220");

    // Feedback: submitted by a prefecture, reviewed by the province.
    let feedback = Feedback {
        scenario: "信易贷".into(),
        period: "2026-Q4".into(),
        measures: "向银行开放信用报告查询".into(),
        outcomes: [
            ("放款笔数".to_owned(), 128.0),
            ("放款金额(万元)".to_owned(), 5360.5),
        ]
        .into_iter()
        .collect(),
    };
    let id = c.submit_feedback(&cd, &feedback, NOW).await.unwrap();
    assert!(matches!(
        c.submit_feedback(&banker, &feedback, NOW).await,
        Err(CoordinatorError::Forbidden(_))
    ));
    assert!(matches!(
        c.review_feedback(&cd, id, true, "", NOW).await,
        Err(CoordinatorError::Forbidden(_))
    ));
    assert!(
        c.review_feedback(&root, id, false, " ", NOW).await.is_err(),
        "a return says why"
    );
    c.review_feedback(&root, id, true, "", NOW).await.unwrap();
    assert!(matches!(
        c.review_feedback(&root, id, true, "", NOW).await,
        Err(CoordinatorError::Conflict(_))
    ));
    assert_eq!(c.feedback(&cd).await.unwrap()[0].status, "accepted");

    // The report page in headless Chromium: the script draws one bar per figure.
    let app = router(ApiState {
        coordinator: Arc::clone(&c),
        clock: Arc::new(|| NOW),
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    let ticket = c.view_ticket(&root, NOW).await.unwrap();
    let url = format!(
        "http://{addr}/api/statistics/report.html?ticket={ticket}&from=2026-11-01&to=2026-11-30"
    );
    let profile = tempfile::tempdir().unwrap();
    let out = tokio::process::Command::new(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(["--virtual-time-budget=5000", "--dump-dom", &url])
        .output()
        .await
        .expect("chromium (installed by scripts/test.sh)");
    let dom = String::from_utf8_lossy(&out.stdout);
    assert!(
        dom.contains("data-drawn=\"true\""),
        "the page's script ran: {dom}"
    );
    let bars = dom.matches("class=\"bar ").count();
    assert_eq!(bars, 2 * prefectures.len(), "one bar per figure: {dom}");
    assert!(dom.contains("data-value=\"220\""), "{dom}");
    assert!(
        dom.contains("data-points=\"2\""),
        "the daily line has two points"
    );
    // Without a valid ticket: no page.
    let out = tokio::process::Command::new(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(["--dump-dom", &url.replace(&ticket, "forged")])
        .output()
        .await
        .unwrap();
    assert!(!String::from_utf8_lossy(&out.stdout).contains("data-drawn"));
    assert!(c.verify_audit().await.unwrap().is_intact());
}

fn chromium() -> &'static str {
    if std::path::Path::new("/usr/bin/chromium").exists() {
        "/usr/bin/chromium"
    } else {
        "chromium"
    }
}
