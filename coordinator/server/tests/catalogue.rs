//! The data catalogue: the register → review → publish → retire workflow with versions, search,
//! lineage, and subscriptions — granted at once when unconditional, decided by the owner within
//! the policy's working days when conditional (escalated when the limit passes), refused when
//! not shared — with the working-day calendar of the policy data.

mod common;

use chrono::NaiveDate;
use common::{NOW, user};
use xy_coordinator_server::catalogue::{CataloguePolicy, FieldSpec, ResourceMetadata};
use xy_coordinator_server::{CoordinatorError, UserRole};

fn date(text: &str) -> NaiveDate {
    NaiveDate::parse_from_str(text, "%Y-%m-%d").unwrap()
}

#[test]
fn working_days_skip_weekends_and_holidays_and_count_adjusted_weekends() {
    let p = CataloguePolicy::shipped();
    assert_eq!(
        p.add_working_days(date("2026-11-20"), 1),
        date("2026-11-23")
    );
    // National Day: 1–7 October off, Saturday 10 October worked.
    assert_eq!(
        p.add_working_days(date("2026-09-30"), 5),
        date("2026-10-13")
    );
    assert!(p.is_working_day(date("2026-10-10")));
    assert!(!p.is_working_day(date("2026-10-05")));
    assert_eq!(p.class_name("0302"), Some("行政处罚"));
    assert!(CataloguePolicy::from_toml("sharing_attributes = []").is_err());
}

fn metadata(code: &str, class: &str, sharing: &str) -> ResourceMetadata {
    ResourceMetadata {
        code: code.into(),
        name: format!("{code} 行政处罚信息"),
        provider_unit: "成都市市场监督管理局".into(),
        classification: class.into(),
        format: "table".into(),
        fields: vec![FieldSpec {
            name: "CF_WSH".into(),
            data_element: "DE00001".into(),
            description: "行政处罚决定书文号".into(),
        }],
        update_frequency: "每日".into(),
        sharing: sharing.into(),
        sharing_conditions: if sharing == "无条件共享" {
            String::new()
        } else {
            "仅用于信用监管".into()
        },
        sensitivity: "内部".into(),
        description: "双公示行政处罚".into(),
        tags: vec!["双公示".into()],
        derived_from: Vec::new(),
    }
}

#[tokio::test]
async fn the_workflow_versions_lineage_and_subscriptions_with_time_limits() {
    let dir = tempfile::tempdir().unwrap();
    let c = common::open(dir.path()).await;
    let root = common::admin(&c).await;
    let chengdu = user(&c, &root, "cd-admin", UserRole::PrefectureAdmin, "510100").await;
    let operator = user(&c, &root, "cd-op", UserRole::DepartmentOperator, "510100").await;
    let mianyang = user(&c, &root, "my-admin", UserRole::PrefectureAdmin, "510700").await;
    let banker = user(&c, &root, "banker", UserRole::InstitutionUser, "510100").await;

    // Register (an operator), review and publish (its prefecture's administrator).
    let xzcf = metadata("CD-XZCF", "0302", "有条件共享");
    assert_eq!(c.register_resource(&operator, &xzcf, NOW).await.unwrap(), 1);
    let refused = c.register_resource(&banker, &xzcf, NOW).await.unwrap_err();
    assert!(matches!(refused, CoordinatorError::Forbidden(_)));
    let refused = c
        .publish_resource(&operator, "CD-XZCF", 1, NOW)
        .await
        .unwrap_err();
    assert!(matches!(refused, CoordinatorError::Forbidden(_)));
    let refused = c
        .review_resource(&mianyang, "CD-XZCF", 1, true, "", NOW)
        .await
        .unwrap_err();
    assert!(
        matches!(refused, CoordinatorError::Forbidden(_)),
        "another prefecture's"
    );
    assert!(
        matches!(
            c.publish_resource(&chengdu, "CD-XZCF", 1, NOW).await,
            Err(CoordinatorError::Conflict(_))
        ),
        "not reviewed yet"
    );
    c.review_resource(&chengdu, "CD-XZCF", 1, true, "齐全", NOW)
        .await
        .unwrap();
    c.publish_resource(&chengdu, "CD-XZCF", 1, NOW)
        .await
        .unwrap();
    // A second version supersedes the first on publication.
    let mut v2 = xzcf.clone();
    v2.description = "双公示行政处罚(含罚款金额)".into();
    assert_eq!(c.register_resource(&operator, &v2, NOW).await.unwrap(), 2);
    c.review_resource(&chengdu, "CD-XZCF", 2, true, "", NOW)
        .await
        .unwrap();
    c.publish_resource(&chengdu, "CD-XZCF", 2, NOW)
        .await
        .unwrap();
    // Lineage: a derived resource, unconditionally shared.
    let mut summary = metadata("CD-XZCF-SUMMARY", "0302", "无条件共享");
    summary.derived_from = vec!["CD-XZCF".into()];
    c.register_resource(&operator, &summary, NOW).await.unwrap();
    c.review_resource(&chengdu, "CD-XZCF-SUMMARY", 1, true, "", NOW)
        .await
        .unwrap();
    c.publish_resource(&chengdu, "CD-XZCF-SUMMARY", 1, NOW)
        .await
        .unwrap();
    let closed = metadata("CD-SECRET", "01", "不予共享");
    c.register_resource(&operator, &closed, NOW).await.unwrap();
    c.review_resource(&chengdu, "CD-SECRET", 1, true, "", NOW)
        .await
        .unwrap();
    c.publish_resource(&chengdu, "CD-SECRET", 1, NOW)
        .await
        .unwrap();

    let view = c.resource("CD-XZCF").await.unwrap();
    let statuses: Vec<&str> = view.versions.iter().map(|v| v.status.as_str()).collect();
    assert_eq!(statuses, ["published", "superseded"]);
    assert_eq!(view.derived_by, ["CD-XZCF-SUMMARY"]);
    assert_eq!(
        c.resource("CD-XZCF-SUMMARY").await.unwrap().derived_from,
        ["CD-XZCF"]
    );

    // Search: keyword, class (with sub-classes), sharing attribute.
    let codes = |found: Vec<xy_coordinator_server::catalogue::ResourceVersion>| {
        found
            .into_iter()
            .map(|v| v.metadata.code)
            .collect::<Vec<_>>()
    };
    assert_eq!(
        codes(
            c.search_resources(Some("罚款金额"), None, None)
                .await
                .unwrap()
        ),
        ["CD-XZCF"]
    );
    assert_eq!(
        codes(c.search_resources(None, Some("03"), None).await.unwrap()),
        ["CD-XZCF", "CD-XZCF-SUMMARY"]
    );
    assert_eq!(
        codes(
            c.search_resources(None, None, Some("无条件共享"))
                .await
                .unwrap()
        ),
        ["CD-XZCF-SUMMARY"]
    );

    // Subscriptions from Mianyang for its return flow.
    let granted = c
        .subscribe(&mianyang, "CD-XZCF-SUMMARY", "回流至绵阳", NOW)
        .await
        .unwrap();
    assert_eq!(
        (granted.status.as_str(), granted.decide_by),
        ("granted", None)
    );
    let pending = c
        .subscribe(&mianyang, "CD-XZCF", "信用监管", NOW)
        .await
        .unwrap();
    assert_eq!(pending.status, "pending");
    // Asked on Saturday 21 November: five working days end on Friday 27 November, 24:00 Beijing.
    let deadline = NaiveDate::from_ymd_opt(2026, 11, 28)
        .unwrap()
        .and_hms_opt(0, 0, 0)
        .unwrap()
        .and_utc()
        .timestamp()
        - 8 * 3600;
    assert_eq!(pending.decide_by, Some(deadline));
    let refused = c
        .subscribe(&mianyang, "CD-SECRET", "想看", NOW)
        .await
        .unwrap_err();
    assert!(matches!(refused, CoordinatorError::Forbidden(_)));
    // Only the owner decides; nothing is overdue before the limit, the pending one is after it.
    let refused = c
        .decide_subscription(&mianyang, pending.id, true, "", NOW)
        .await
        .unwrap_err();
    assert!(matches!(refused, CoordinatorError::Forbidden(_)));
    assert_eq!(c.escalate_overdue(deadline as u64).await.unwrap(), 0);
    assert_eq!(c.escalate_overdue(deadline as u64 + 1).await.unwrap(), 1);
    assert_eq!(c.subscription(pending.id).await.unwrap().status, "overdue");
    let err = c
        .decide_subscription(&chengdu, pending.id, false, " ", deadline as u64 + 2)
        .await
        .unwrap_err();
    assert!(
        matches!(err, CoordinatorError::BadRequest(_)),
        "a refusal states why"
    );
    let decided = c
        .decide_subscription(&chengdu, pending.id, true, "", deadline as u64 + 3)
        .await
        .unwrap();
    assert_eq!(decided.status, "granted");
    assert_eq!(c.list_subscriptions(&chengdu, NOW).await.unwrap().len(), 2);
    assert_eq!(c.list_subscriptions(&root, NOW).await.unwrap().len(), 2);

    // Retirement, and bad metadata refused by field.
    c.retire_resource(&chengdu, "CD-XZCF-SUMMARY", NOW)
        .await
        .unwrap();
    assert!(
        c.search_resources(None, None, Some("无条件共享"))
            .await
            .unwrap()
            .is_empty()
    );
    let mut bad = metadata("CD-BAD", "99", "无条件共享");
    assert!(
        c.register_resource(&operator, &bad, NOW)
            .await
            .unwrap_err()
            .to_string()
            .contains("classification")
    );
    bad.classification = "01".into();
    bad.sharing = "随便".into();
    assert!(
        c.register_resource(&operator, &bad, NOW)
            .await
            .unwrap_err()
            .to_string()
            .contains("sharing")
    );
    bad.sharing = "有条件共享".into();
    assert!(
        c.register_resource(&operator, &bad, NOW)
            .await
            .unwrap_err()
            .to_string()
            .contains("conditions")
    );
    bad.sharing = "无条件共享".into();
    bad.fields.clear();
    assert!(
        c.register_resource(&operator, &bad, NOW)
            .await
            .unwrap_err()
            .to_string()
            .contains("fields")
    );
    bad.fields = xzcf.fields.clone();
    bad.derived_from = vec!["NOWHERE".into()];
    assert!(
        c.register_resource(&operator, &bad, NOW)
            .await
            .unwrap_err()
            .to_string()
            .contains("derived_from")
    );
    assert!(c.verify_audit().await.unwrap().is_intact());
}
