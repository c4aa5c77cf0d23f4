//! The same store tests against embedded SQLite and a real PostgreSQL: outcomes, dedup and
//! versioning, queries, reports, encryption at rest, quality, the audit chain, scenario isolation.

use std::fs::File;
use std::path::Path;

use sqlx::Row;
use xy_ingest::Ingestor;
use xy_policy::PolicySet;
use xy_store::{NodeKeys, NodeStores, RecordFilter, StoreLocation};
use xy_synth::{CsvEncoding, Defect, Generator, Kind, SynthConfig};

use crate::common::{options, postgres_database, read_report, today};

async fn suite(location: StoreLocation, dir: &Path) {
    let stores = NodeStores::open(location.clone())
        .await
        .expect("open stores");
    let keys = NodeKeys::from_master(&[3u8; 32]);
    let ingestor = Ingestor::new(
        PolicySet::builtin().unwrap(),
        stores.collection.clone(),
        keys.clone(),
    );

    // 1. Every row of a generated file gets the outcome its defect calls for.
    let generator = Generator::new(SynthConfig::new(5, Kind::Penalty, today()));
    let headers = generator.headers().to_vec();
    let rows: Vec<_> = generator.take(3000).collect();
    let input = dir.join("cf.csv");
    let defects = xy_synth::write_csv(
        File::create(&input).unwrap(),
        &headers,
        rows.clone().into_iter(),
        CsvEncoding::Utf8,
        false,
    )
    .unwrap();
    let report_path = dir.join("cf.report.jsonl");
    let first = ingestor
        .ingest_file(
            &input,
            None,
            &options(),
            Some(Box::new(File::create(&report_path).unwrap())),
            None,
        )
        .await
        .unwrap();
    let report = read_report(&report_path);
    assert_eq!(report.len(), 3000);
    for (line, d) in report.iter().zip(&defects) {
        assert_eq!(
            line["outcome"].as_str(),
            Some(d.expected_outcome()),
            "{line} {d:?}"
        );
    }
    let stored = defects.iter().filter(|d| **d == Defect::None).count() as i64;
    assert_eq!(stores.collection.record_count().await.unwrap(), stored);
    assert_eq!(first.counts.stored as i64, stored);

    // 2. The stored report is the same report, row for row.
    let from_store = stores
        .collection
        .batch_report(&first.batch_id)
        .await
        .unwrap();
    assert_eq!(from_store.len(), 3000);
    for (line, row) in report.iter().zip(&from_store) {
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&xy_ingest::report::jsonl_line(row)).unwrap(),
            *line
        );
    }

    // 2b. A batch written before chunked remarks (migration 0004) kept them a row per remark in
    // batch_rows and a row per fault in batch_faults; its report still reads the same.
    let pool = stores.collection.pool();
    sqlx::query("DELETE FROM batch_remarks WHERE batch_id = $1")
        .bind(first.batch_id.clone())
        .execute(pool)
        .await
        .unwrap();
    for r in from_store
        .iter()
        .filter(|r| r.outcome != xy_store::Outcome::Stored || !r.warnings.is_empty())
    {
        sqlx::query(
            "INSERT INTO batch_rows (batch_id, row_number, outcome, warnings) VALUES ($1, $2, $3, $4)",
        )
        .bind(first.batch_id.clone())
        .bind(r.row as i64)
        .bind(r.outcome.as_str())
        .bind(serde_json::to_string(&r.warnings).unwrap())
        .execute(pool)
        .await
        .unwrap();
        for f in &r.faults {
            sqlx::query(
                "INSERT INTO batch_faults (batch_id, row_number, field, rule, reason) VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(first.batch_id.clone())
            .bind(r.row as i64)
            .bind(f.field.clone())
            .bind(f.rule.clone())
            .bind(f.reason.clone())
            .execute(pool)
            .await
            .unwrap();
        }
    }
    // (batch_faults keeps no order among one row's faults: PostgreSQL may return them in any.)
    let by_field = |rows: Vec<xy_store::ReportRow>| -> Vec<xy_store::ReportRow> {
        rows.into_iter()
            .map(|mut r| {
                r.faults.sort_by(|a, b| a.field.cmp(&b.field));
                r
            })
            .collect()
    };
    let legacy = stores
        .collection
        .batch_report(&first.batch_id)
        .await
        .unwrap();
    assert_eq!(by_field(legacy), by_field(from_store.clone()));

    // 3. The same file again: nothing new is stored and rejections are unchanged. (Rows that changed
    // a record within the file replay that change, so they come back as updates.)
    let again = ingestor
        .ingest_file(&input, None, &options(), None, None)
        .await
        .unwrap();
    assert_eq!(again.counts.stored, 0);
    let changes = defects.iter().filter(|d| **d == Defect::Changed).count() as u64;
    assert!(again.counts.updated <= 2 * changes, "{:?}", again.counts);
    assert!(again.counts.duplicate >= first.counts.stored - again.counts.updated);
    assert_eq!(again.counts.rejected, first.counts.rejected);
    assert_eq!(stores.collection.record_count().await.unwrap(), stored);

    // 4. A changed row is a new version; the old one is kept in history.
    let original = rows.iter().find(|r| r.defect == Defect::None).unwrap();
    let nr = headers.iter().position(|h| *h == "CF_NR").unwrap();
    let mut changed = original.clone();
    changed.cells[nr] = format!("{}（复核后更正）", changed.cells[nr]);
    let changed_path = dir.join("changed.csv");
    xy_synth::write_csv(
        File::create(&changed_path).unwrap(),
        &headers,
        std::iter::once(changed),
        CsvEncoding::Utf8,
        false,
    )
    .unwrap();
    let update = ingestor
        .ingest_file(&changed_path, None, &options(), None, None)
        .await
        .unwrap();
    assert_eq!(update.counts.updated, 1);
    let wsh = headers.iter().position(|h| *h == "CF_WSH").unwrap();
    let all = stores
        .collection
        .query(&RecordFilter {
            limit: Some(10_000),
            ..Default::default()
        })
        .await
        .unwrap();
    let current = all
        .iter()
        .find(|r| r.document_number == original.cells[wsh])
        .expect("record by document number");
    assert!(current.version >= 2);
    let history = stores.collection.history(current.id).await.unwrap();
    assert_eq!(history.len() as i64, current.version - 1);
    assert!(
        current.payload["CF_NR"]
            .as_str()
            .unwrap()
            .ends_with("（复核后更正）")
    );
    assert!(
        !history.last().unwrap().payload["CF_NR"]
            .as_str()
            .unwrap()
            .ends_with("（复核后更正）")
    );

    // 4b. The share feed carries every current record exactly once, batch by batch in log order
    // and by id within a batch (records a batch inserted, by its span of ids, merged with those it
    // superseded), and reads the same a few records at a time.
    let feed_ids = |feed: Vec<xy_store::FeedRecord>| -> Vec<(i64, i64, i64)> {
        feed.iter()
            .map(|r| (r.cursor.major, r.cursor.minor, r.version))
            .collect()
    };
    let start = xy_exchange::Cursor { major: 0, minor: 0 };
    let feed = feed_ids(stores.collection.share_feed(start, 100_000).await.unwrap());
    assert_eq!(feed.len() as i64, stored);
    assert!(feed.windows(2).all(|w| (w[0].0, w[0].1) < (w[1].0, w[1].1)));
    assert!(
        feed.iter().any(|r| r.2 > 1),
        "superseded records are in the feed"
    );
    let mut paged = Vec::new();
    let mut cursor = start;
    loop {
        let page = feed_ids(stores.collection.share_feed(cursor, 7).await.unwrap());
        let Some(last) = page.last() else { break };
        cursor = xy_exchange::Cursor {
            major: last.0,
            minor: last.1,
        };
        paged.extend(page);
    }
    assert_eq!(paged, feed);
    // Batches written before migration 0005 get their spans from the migration's own query.
    let migration = include_str!("../../node/store/migrations/collection/0005_batch_spans.sql");
    let backfill = &migration[migration.find("INSERT INTO batch_spans").unwrap()..];
    let backfill = &backfill[..backfill.find(';').unwrap()];
    sqlx::query("DELETE FROM batch_spans")
        .execute(pool)
        .await
        .unwrap();
    sqlx::query(backfill).execute(pool).await.unwrap();
    let migrated = feed_ids(stores.collection.share_feed(start, 100_000).await.unwrap());
    assert_eq!(migrated, feed);

    // 5. Queries: by USCC, by identity number (blind index), by filters.
    let uscc_col = headers.iter().position(|h| *h == "CF_XDR_SHXYM").unwrap();
    let with_uscc = rows
        .iter()
        .find(|r| r.defect == Defect::None && !r.cells[uscc_col].is_empty())
        .unwrap();
    let uscc = xy_ingest::subject_lookup(&with_uscc.cells[uscc_col], &keys);
    let by_uscc = stores
        .collection
        .query(&RecordFilter {
            subject_code: uscc.0.clone(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(!by_uscc.is_empty());
    assert!(by_uscc.iter().all(|r| r.subject_code == uscc.0));
    let id_col = headers.iter().position(|h| *h == "CF_XDR_ZJHM").unwrap();
    let person = rows
        .iter()
        .find(|r| r.defect == Defect::None && !r.cells[id_col].is_empty())
        .unwrap();
    let (_, index, shown) = xy_ingest::subject_lookup(&person.cells[id_col].to_lowercase(), &keys);
    assert!(shown.contains("********"));
    let by_id = stores
        .collection
        .query(&RecordFilter {
            subject_index: index,
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(!by_id.is_empty());
    let view = xy_ingest::view::record_view(&by_id[0], &keys, xy_ingest::view::Disclosure::Masked)
        .unwrap();
    let shown_id = view["fields"]["CF_XDR_ZJHM"].as_str().unwrap();
    assert_eq!(
        shown_id,
        xy_policy::identifiers::mask_id_number(&person.cells[id_col].to_uppercase())
    );
    let clear =
        xy_ingest::view::record_view(&by_id[0], &keys, xy_ingest::view::Disclosure::Unmasked)
            .unwrap();
    assert_eq!(
        clear["fields"]["CF_XDR_ZJHM"].as_str().unwrap(),
        person.cells[id_col].to_uppercase()
    );
    let ranged = stores
        .collection
        .query(&RecordFilter {
            category: Some("xzcf".into()),
            decided_from: Some("2025/01/01".into()),
            decided_to: Some("2025/06/30".into()),
            status: Some("active".into()),
            limit: Some(10_000),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(!ranged.is_empty());
    assert!(ranged.iter().all(|r| {
        let d = r.decision_date.as_deref().unwrap();
        ("2025/01/01"..="2025/06/30").contains(&d)
    }));
    let none = stores
        .collection
        .query(&RecordFilter {
            category: Some("xzxk".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(none.is_empty());

    // 6. Identity numbers are not stored in clear anywhere in the records.
    let id_clear = person.cells[id_col].to_uppercase();
    let leaks: i64 =
        sqlx::query("SELECT COUNT(*) AS n FROM records WHERE payload LIKE $1 OR personal LIKE $1")
            .bind(format!("%{id_clear}%"))
            .fetch_one(stores.collection.pool())
            .await
            .unwrap()
            .try_get("n")
            .unwrap();
    assert_eq!(leaks, 0);

    // 7. Quality: totals match the batches, rejections are counted by rule.
    let quality = stores.quality_report().await.unwrap();
    let line = quality.iter().find(|l| l.category == "xzcf").unwrap();
    assert_eq!(line.batches, 3);
    assert_eq!(line.total, 3000 + 3000 + 1);
    assert_eq!(line.rejected as u64, first.counts.rejected * 2);
    let by_rule: i64 = line.rejections_by_rule.values().sum();
    assert!(by_rule >= line.rejected);
    assert!(line.rejections_by_rule.contains_key("uscc"));
    assert!(line.mean_lag_days.unwrap() > 0.0);

    // 8. The audit chain: intact, then an edited entry is caught, then a deleted one.
    stores
        .collection
        .log_access(
            "2026-11-26T11:00:00+08:00",
            "query",
            "tester",
            serde_json::json!({"n": 1}),
        )
        .await
        .unwrap();
    let audit = stores.collection.verify_audit().await.unwrap();
    assert!(audit.is_intact(), "{:?}", audit.problems);
    assert_eq!(audit.entries, 4);
    sqlx::query("UPDATE data_log SET rejected = rejected - 1 WHERE seq = 2")
        .execute(stores.collection.pool())
        .await
        .unwrap();
    let audit = stores.collection.verify_audit().await.unwrap();
    assert!(
        audit
            .problems
            .iter()
            .any(|p| p.contains("entry 2") && p.contains("edited")),
        "{:?}",
        audit.problems
    );
    sqlx::query("UPDATE data_log SET rejected = rejected + 1 WHERE seq = 2")
        .execute(stores.collection.pool())
        .await
        .unwrap();
    assert!(stores.collection.verify_audit().await.unwrap().is_intact());
    sqlx::query("DELETE FROM data_log WHERE seq = 3")
        .execute(stores.collection.pool())
        .await
        .unwrap();
    let audit = stores.collection.verify_audit().await.unwrap();
    assert!(!audit.is_intact());
    assert!(
        audit.problems.iter().any(|p| p.contains("missing")),
        "{:?}",
        audit.problems
    );
    sqlx::query("DELETE FROM data_log WHERE seq = 4")
        .execute(stores.collection.pool())
        .await
        .unwrap();
    sqlx::query("DELETE FROM data_log WHERE seq = 3")
        .execute(stores.collection.pool())
        .await
        .unwrap();
    // Removing the tail entry of a batch is caught through the records it wrote.
    let audit = stores.collection.verify_audit().await.unwrap();
    assert!(
        audit
            .problems
            .iter()
            .any(|p| p.contains("no data-log entry")),
        "{:?}",
        audit.problems
    );

    // 9. Scenario stores are created on demand and hold their own tables only.
    let scenario = stores.scenario("bank_loans").await.unwrap();
    assert_eq!(scenario.record_count().await.unwrap(), 0);
    assert!(stores.scenario("Bad-Name").await.is_err());
    assert!(stores.scenario("x; DROP TABLE records").await.is_err());
    assert_eq!(stores.return_flow.record_count().await.unwrap(), 0);
    stores.close().await;

    // 10. Reopening runs no migration twice and keeps the data.
    let reopened = NodeStores::open(location).await.unwrap();
    assert_eq!(reopened.collection.record_count().await.unwrap(), stored);
    reopened.close().await;
}

#[tokio::test]
async fn store_suite_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    suite(StoreLocation::Sqlite(dir.path().join("stores")), dir.path()).await;
}

#[tokio::test]
async fn store_suite_on_postgres() {
    let dir = tempfile::tempdir().unwrap();
    let url = postgres_database("suite").await;
    suite(StoreLocation::Postgres(url), dir.path()).await;
}

#[tokio::test]
async fn postgres_scenario_cannot_read_the_collection_store() {
    let url = postgres_database("isolation").await;
    let stores = NodeStores::open(StoreLocation::Postgres(url))
        .await
        .unwrap();
    sqlx::query("INSERT INTO data_log (seq, at, kind, actor, total, stored, updated, duplicate, rejected, detail, prev_hash, entry_hash) \
                 VALUES (1, 'now', 'query', 'x', 0, 0, 0, 0, 0, '{}', 'p', 'h')")
        .execute(stores.collection.pool())
        .await
        .unwrap();
    let scenario = stores.scenario("credit_loans").await.unwrap();
    let Err(err) = sqlx::query("SELECT COUNT(*) FROM xy_collection.data_log")
        .fetch_one(scenario.pool())
        .await
    else {
        panic!("a scenario must not read the collection store");
    };
    assert!(err.to_string().contains("permission denied"), "{err}");
    // Unqualified names resolve to the scenario's own schema.
    let own: i64 = sqlx::query("SELECT COUNT(*) AS n FROM records")
        .fetch_one(scenario.pool())
        .await
        .unwrap()
        .try_get("n")
        .unwrap();
    assert_eq!(own, 0);
    stores.close().await;
}

#[tokio::test]
async fn sqlite_stores_are_separate_files() {
    let dir = tempfile::tempdir().unwrap();
    let stores = NodeStores::open(StoreLocation::Sqlite(dir.path().to_path_buf()))
        .await
        .unwrap();
    let scenario = stores.scenario("credit_loans").await.unwrap();
    assert!(dir.path().join("collection.db").exists());
    assert!(dir.path().join("return_flow.db").exists());
    assert!(
        dir.path()
            .join("scenarios/scenario_credit_loans.db")
            .exists()
    );
    // The scenario database has no data log: the collection store's tables are not reachable by name.
    assert!(
        sqlx::query("SELECT COUNT(*) FROM data_log")
            .fetch_one(scenario.pool())
            .await
            .is_err()
    );
    stores.close().await;
}

#[tokio::test]
async fn a_postgres_department_table_is_ingested() {
    let url = postgres_database("dept").await;
    let (headers, rows): (Vec<&str>, Vec<_>) = {
        let g = Generator::new(SynthConfig::new(41, Kind::Penalty, today()));
        (g.headers().to_vec(), g.take(300).collect())
    };
    crate::common::load_table(&url, "cf_export", &headers, &rows).await;
    let dir = tempfile::tempdir().unwrap();
    let (_stores, ingestor) = crate::common::sqlite_node(dir.path()).await;
    let report_path = dir.path().join("r.jsonl");
    let result = ingestor
        .ingest_table(
            &url,
            "cf_export",
            Some("seq"),
            &options(),
            Some(Box::new(File::create(&report_path).unwrap())),
        )
        .await
        .unwrap();
    assert_eq!(result.counts.total, 300);
    assert!(result.source.ends_with("#cf_export"));
    // Sources are logged without their password.
    assert_eq!(
        xy_ingest::redact_url("postgres://dept:s3cret@10.0.0.1/credit"),
        "postgres://dept:***@10.0.0.1/credit"
    );
    let report = read_report(&report_path);
    assert_eq!(report.len(), rows.len());
    for (line, r) in report.iter().zip(&rows) {
        assert_eq!(
            line["outcome"].as_str(),
            Some(r.defect.expected_outcome()),
            "{line} {:?}",
            r.defect
        );
    }
}

fn record(key: &str) -> xy_store::NewRecord {
    xy_store::NewRecord::new(xy_store::RecordFields {
        category: "xzcf",
        key_hash: key,
        status: "active",
        source_unit: "91350100M000100Y43",
        document_number: "D1",
        content_hash: "c",
        payload: "{}",
        ..Default::default()
    })
}

/// A write that fails inside a batch (here a second record under the same business key, which the
/// pipeline never sends) fails the batch with the real cause and leaves nothing behind.
async fn failed_write_rolls_back(location: StoreLocation) {
    let stores = NodeStores::open(location).await.unwrap();
    let mut writer = stores.collection.begin_batch().await.unwrap();
    writer
        .insert("B1", "now", vec![record("k1"), record("k2")])
        .await
        .unwrap();
    let queued = writer.insert("B1", "now", vec![record("k1")]).await;
    let summary = xy_store::BatchSummary {
        batch_id: "B1".into(),
        operator: "t".into(),
        source_unit: String::new(),
        category: "xzcf".into(),
        source: "t".into(),
        counts: Default::default(),
        detail: serde_json::Value::Null,
    };
    // SQLite queues the insert and reports at commit; PostgreSQL reports at once.
    let err = match queued {
        Err(e) => {
            writer.rollback().await.ok();
            e
        }
        Ok(_) => writer
            .commit("now", &summary)
            .await
            .expect_err("the duplicate key must fail the batch"),
    };
    assert!(err.to_string().to_lowercase().contains("unique"), "{err}");
    assert_eq!(stores.collection.record_count().await.unwrap(), 0);
    assert!(
        xy_store::datalog::entries(stores.collection.pool(), None)
            .await
            .unwrap()
            .is_empty()
    );
    // The store is usable afterwards.
    let mut writer = stores.collection.begin_batch().await.unwrap();
    writer
        .insert("B2", "now", vec![record("k3")])
        .await
        .unwrap();
    writer
        .commit(
            "now",
            &xy_store::BatchSummary {
                batch_id: "B2".into(),
                ..summary
            },
        )
        .await
        .unwrap();
    assert_eq!(stores.collection.record_count().await.unwrap(), 1);
    stores.close().await;
}

#[tokio::test]
async fn a_failed_write_rolls_the_batch_back_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    failed_write_rolls_back(StoreLocation::Sqlite(dir.path().to_path_buf())).await;
}

#[tokio::test]
async fn a_failed_write_rolls_the_batch_back_on_postgres() {
    failed_write_rolls_back(StoreLocation::Postgres(postgres_database("rollback").await)).await;
}
