//! The scoring policy: the shipped file loads, bad policies are refused by name, indicators are
//! computed from records as defined, and the plaintext reference clamps and bands.

use chrono::NaiveDate;
use serde_json::json;
use xy_fhe::{RecordFacts, ScoringPolicy};

fn today() -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 11, 26).unwrap()
}

#[test]
fn the_shipped_policy_loads_and_fits_sixteen_bits() {
    let p = ScoringPolicy::enterprise();
    assert_eq!(p.indicators.len(), 7);
    assert!(p.raw_max(p.score.max_nodes as usize) <= i64::from(u16::MAX));
    assert_eq!(p.plain(&[]).score, p.score.base);
}

#[test]
fn bad_policies_are_refused_by_name() {
    let good = include_str!("../../../policies/scoring/enterprise.toml");
    let cases = [
        (good.replace("max_nodes = 32", "max_nodes = 400"), "16-bit"),
        (
            good.replace(
                "{ grade = \"B\", from = 680 }",
                "{ grade = \"B\", from = 790 }",
            ),
            "decreasing",
        ),
        (
            good.replace("min = 300", "min = 950"),
            "min must be below max",
        ),
        (
            good.replace("id = \"severe_penalties_3y\"", "id = \"penalties_3y\""),
            "repeated",
        ),
        (
            good.replace("max = 15", "max = 0"),
            "max must be at least 1",
        ),
        (
            good.replace("direction = \"benefit\"", "direction = \"neutral\""),
            "unknown variant",
        ),
        (
            good.replace("lowest_grade = \"D\"", "lowest_grade = \"D\"\nsurprise = 1"),
            "unknown field",
        ),
    ];
    for (text, expected) in cases {
        let err = ScoringPolicy::from_toml(&text).unwrap_err().to_string();
        assert!(err.contains(expected), "expected {expected:?} in {err}");
    }
}

#[test]
fn indicators_count_what_the_policy_defines() {
    let p = ScoringPolicy::enterprise();
    let penalty = |date: &str, kind: &str, fine: &str| json!({"CF_CFLB": kind, "CF_NR_FK": fine, "CF_JDRQ": date});
    let payloads = [
        penalty("2026/01/10", "罚款", "2.5"),
        penalty("2025/06/01", "吊销许可证件", ""),
        penalty("2024/01/01", "罚款", "12"), // within three years, a fine ≥ 10 万元: severe
        penalty("2020/01/01", "罚款", "30"), // too old
        penalty("2027/01/01", "罚款", "1"),  // in the future: not counted
        json!({"XK_YXQZI": "2027/12/31"}),
        json!({"XK_YXQZI": "2026/11/25"}), // expired yesterday
        json!({"CN_LYZT": "已履约"}),
        json!({"CN_LYZT": "未履约"}),
        json!({"CN_LYZT": "未履约"}), // too old
        json!({"CN_LYZT": "履约中"}),
        json!({"MD_MDLX": "黑名单", "MD_YXQ": "2027/01/01"}),
        json!({"MD_MDLX": "黑名单", "MD_YXQ": "2026/01/01"}), // removed from the list
        json!({"MD_MDLX": "红名单", "MD_YXQ": "2026-11-26"}), // on the list through today
        json!({"MD_MDLX": "重点关注名单", "MD_YXQ": "2027/01/01"}),
    ];
    let categories = [
        "xzcf", "xzcf", "xzcf", "xzcf", "xzcf", "xzxk", "xzxk", "xycn", "xycn", "xycn", "xycn",
        "hhmd", "hhmd", "hhmd", "hhmd",
    ];
    let dates = [
        "2026/01/10",
        "2025/06/01",
        "2024/01/01",
        "2020/01/01",
        "2027/01/01",
        "",
        "",
        "2025/03/01",
        "2026/02/01",
        "2022/01/01",
        "2026/03/01",
        "2025/01/01",
        "2024/01/01",
        "2025/05/01",
        "2025/05/01",
    ];
    let records: Vec<RecordFacts<'_>> = payloads
        .iter()
        .zip(categories)
        .zip(dates)
        .map(|((payload, category), date)| RecordFacts {
            category,
            decision_date: (!date.is_empty()).then_some(date),
            payload,
        })
        .collect();
    let values: Vec<u16> = p
        .indicators
        .iter()
        .map(|i| i.value(&records, today()))
        .collect();
    // penalties, severe penalties, licences, commitments kept and broken, black and red lists
    assert_eq!(values, [3, 2, 1, 1, 1, 1, 1]);
}

#[test]
fn the_plaintext_reference_clamps_and_bands() {
    let p = ScoringPolicy::enterprise();
    // 700 + 3·15 + 4·7 + 10·3 = 803 per node at most; three nodes reach 1009 → clamped to 900.
    let best = vec![0, 0, 15, 7, 0, 0, 3];
    assert_eq!(p.plain(&[best.clone(), best.clone(), best]).score, 900);
    // Everything bad twice: 700 − 2·(6·15 + 15·7 + 12·7 + 40·3) = −98 → clamped to 300, grade D.
    let worst = vec![15, 7, 0, 0, 7, 3, 0];
    let r = p.plain(&[worst.clone(), worst]);
    assert_eq!((r.score, r.grade.as_str()), (300, "D"));
    assert_eq!(p.grade_of(760), "A");
    assert_eq!(p.grade_of(759), "B");
    assert_eq!(p.grade_of(600), "C");
    assert_eq!(p.grade_of(599), "D");
    // Values beyond an indicator's range count as its max.
    assert_eq!(p.plain(&[vec![99, 0, 0, 0, 0, 0, 0]]).score, 700 - 90);
}
