//! Every validation rule of the built-in policies, with an accepting and a rejecting case, the
//! check-digit vectors of `tests/data/identifiers.json`, cleaning and v1 → v2 mapping.

use chrono::NaiveDate;
use xy_policy::identifiers::{CodeCheck, check_resident_id, check_uscc, mask_id_number};
use xy_policy::{Category, PolicyError, PolicySet};

fn today() -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 11, 26).unwrap()
}

fn policies() -> PolicySet {
    PolicySet::builtin().expect("built-in policies compile")
}

/// A valid 行政处罚 row for a legal person, as (field, value) pairs.
fn penalty_row() -> Vec<(&'static str, &'static str)> {
    vec![
        ("CF_XDR_MC", "成都示例科技有限公司"),
        ("CF_XDR_LB", "法人及非法人组织"),
        ("CF_XDR_SHXYM", "91310230MA1K314J7C"),
        ("CF_FRDB", "张三"),
        ("CF_FR_ZJLX", "身份证"),
        ("CF_FR_ZJHM", "11010519491231002X"),
        ("CF_WSH", "川市监罚〔2024〕12号"),
        ("CF_WFXW", "虚假宣传"),
        ("CF_SY", "当事人在其网站发布虚假广告"),
        ("CF_YJ", "《中华人民共和国广告法》第五十五条"),
        ("CF_CFLB", "警告;罚款"),
        ("CF_NR", "警告并处罚款 2 万元"),
        ("CF_NR_FK", "2"),
        ("CF_JDRQ", "2024/03/05"),
        ("CF_YXQ", "2027/03/05"),
        ("CF_CFJG", "成都市市场监督管理局"),
        ("CF_CFJGDM", "91350100M000100Y43"),
        ("CF_SJLY", "成都市市场监督管理局"),
        ("CF_SJLYDM", "91350100M000100Y43"),
    ]
}

/// A valid 行政许可 row for a natural person.
fn licence_row() -> Vec<(&'static str, &'static str)> {
    vec![
        ("XK_XDR_MC", "李四"),
        ("XK_XDR_LB", "自然人"),
        ("XK_XDR_ZJLX", "身份证"),
        ("XK_XDR_ZJHM", "110105195001010039"),
        ("XK_XKWS", "食品经营许可决定书"),
        ("XK_WSH", "JY15101050012345"),
        ("XK_XKLB", "普通"),
        ("XK_NR", "食品销售"),
        ("XK_JDRQ", "2023/01/10"),
        ("XK_YXQZ", "2023/01/10"),
        ("XK_YXQZI", "2028/01/09"),
        ("XK_XKJG", "成都市锦江区市场监督管理局"),
        ("XK_XKJGDM", "91310230MA1K314K57"),
        ("XK_ZT", "1"),
        ("XK_LYDW", "成都市锦江区市场监督管理局"),
        ("XK_LYDWDM", "91310230MA1K314K57"),
    ]
}

fn build(cat: &Category, pairs: &[(&str, &str)]) -> Vec<String> {
    let mut values = vec![String::new(); cat.fields.len()];
    for (k, v) in pairs {
        values[cat.field_index(k).unwrap_or_else(|| panic!("field {k}"))] = (*v).to_owned();
    }
    values
}

fn with(
    pairs: &[(&'static str, &'static str)],
    field: &'static str,
    value: &'static str,
) -> Vec<(&'static str, &'static str)> {
    let mut out: Vec<_> = pairs.iter().filter(|(k, _)| *k != field).copied().collect();
    out.push((field, value));
    out
}

/// Clean and validate; return the (field, rule) pairs at fault and the warnings.
fn check(cat: &Category, pairs: &[(&str, &str)]) -> (Vec<(String, String)>, Vec<String>) {
    let mut values = build(cat, pairs);
    cat.clean(&mut values);
    let verdict = cat.validate(&values, today());
    for f in &verdict.faults {
        assert!(!f.reason.is_empty());
    }
    (
        verdict
            .faults
            .into_iter()
            .map(|f| (f.field, f.rule))
            .collect(),
        verdict.warnings,
    )
}

fn assert_rejects(cat: &Category, pairs: &[(&str, &str)], field: &str, rule: &str) {
    let (faults, _) = check(cat, pairs);
    assert!(
        faults.iter().any(|(f, r)| f == field && r == rule),
        "expected {field}/{rule}, got {faults:?}"
    );
}

fn assert_accepts(cat: &Category, pairs: &[(&str, &str)]) {
    let (faults, _) = check(cat, pairs);
    assert!(faults.is_empty(), "unexpected faults {faults:?}");
}

#[test]
fn base_rows_are_valid() {
    let p = policies();
    assert_accepts(&p.category("xzcf").unwrap(), &penalty_row());
    assert_accepts(&p.category("行政许可").unwrap(), &licence_row());
}

#[test]
fn required_fields_are_enforced_one_by_one() {
    let p = policies();
    for (cat_code, row) in [("xzcf", penalty_row()), ("xzxk", licence_row())] {
        let cat = p.category(cat_code).unwrap();
        for field in cat.fields.iter().filter(|f| f.required) {
            let (faults, _) = check(
                &cat,
                &with(&row, Box::leak(field.name.clone().into_boxed_str()), ""),
            );
            assert!(
                faults
                    .iter()
                    .any(|(f, r)| *f == field.name && r == "required"),
                "{cat_code}: {} empty should be refused, got {faults:?}",
                field.name
            );
        }
    }
}

#[test]
fn lengths_are_enforced() {
    let cat = policies().category("xzcf").unwrap();
    let long_name: &'static str = Box::leak("名".repeat(201).into_boxed_str());
    assert_rejects(
        &cat,
        &with(&penalty_row(), "CF_XDR_MC", long_name),
        "CF_XDR_MC",
        "max_len",
    );
    let ok_name: &'static str = Box::leak("名".repeat(200).into_boxed_str());
    assert_accepts(&cat, &with(&penalty_row(), "CF_XDR_MC", ok_name));
}

#[test]
fn enumerations_are_enforced() {
    let p = policies();
    let cf = p.category("xzcf").unwrap();
    assert_rejects(
        &cf,
        &with(&penalty_row(), "CF_XDR_LB", "公司"),
        "CF_XDR_LB",
        "enum",
    );
    assert_rejects(
        &cf,
        &with(&penalty_row(), "CF_CFLB", "警告;打板子"),
        "CF_CFLB",
        "enum",
    );
    assert_rejects(
        &cf,
        &with(&penalty_row(), "CF_FR_ZJLX", "驾照"),
        "CF_FR_ZJLX",
        "enum",
    );
    // New (2021) and old penalty types are both accepted.
    assert_accepts(&cf, &with(&penalty_row(), "CF_CFLB", "警告;通报批评;罚款"));
    let old = with(
        &with(&penalty_row(), "CF_CFLB", "罚款;暂扣或者吊销执照"),
        "CF_NR_ZKDX",
        "营业执照 123",
    );
    assert_accepts(&cf, &old);
    let xk = p.category("xzxk").unwrap();
    assert_rejects(
        &xk,
        &with(&licence_row(), "XK_XKLB", "特别"),
        "XK_XKLB",
        "enum",
    );
    assert_accepts(&xk, &with(&licence_row(), "XK_XKLB", "特许"));
    assert_rejects(&xk, &with(&licence_row(), "XK_ZT", "3"), "XK_ZT", "enum");
}

#[test]
fn dates_must_be_well_formed_real_and_not_in_the_future() {
    let cf = policies().category("xzcf").unwrap();
    assert_rejects(
        &cf,
        &with(&penalty_row(), "CF_JDRQ", "2024年3月5日"),
        "CF_JDRQ",
        "date_format",
    );
    assert_rejects(
        &cf,
        &with(&penalty_row(), "CF_JDRQ", "2023/02/29"),
        "CF_JDRQ",
        "date_real",
    );
    assert_rejects(
        &cf,
        &with(&penalty_row(), "CF_JDRQ", "2026/11/27"),
        "CF_JDRQ",
        "not_future",
    );
    assert_accepts(&cf, &with(&penalty_row(), "CF_JDRQ", "2026/11/26"));
    assert_accepts(&cf, &with(&penalty_row(), "CF_JDRQ", "2024-03-05"));
    assert_accepts(&cf, &with(&penalty_row(), "CF_JDRQ", "20240305"));
    assert_accepts(
        &cf,
        &with(&penalty_row(), "CF_JDRQ", "２０２４／０３／０５"),
    );
    // Long-term validity is a real date.
    assert_accepts(&cf, &with(&penalty_row(), "CF_YXQ", "2099/12/31"));
}

#[test]
fn date_order_rules() {
    let p = policies();
    let cf = p.category("xzcf").unwrap();
    assert_rejects(
        &cf,
        &with(&penalty_row(), "CF_YXQ", "2024/03/04"),
        "CF_YXQ",
        "CF-VALIDITY-AFTER-DECISION",
    );
    assert_accepts(&cf, &with(&penalty_row(), "CF_YXQ", "2024/03/05"));
    assert_rejects(
        &cf,
        &with(&penalty_row(), "CF_GSJZQ", "2024/01/01"),
        "CF_GSJZQ",
        "CF-PUBLICITY-AFTER-DECISION",
    );
    let xk = p.category("xzxk").unwrap();
    assert_rejects(
        &xk,
        &with(&licence_row(), "XK_YXQZI", "2022/12/31"),
        "XK_YXQZI",
        "XK-VALIDITY-ORDER",
    );
    assert_rejects(
        &xk,
        &with(&licence_row(), "XK_YXQZI", "2022/12/31"),
        "XK_YXQZ",
        "XK-VALIDITY-ORDER",
    );
}

#[test]
fn check_digits_of_codes_in_records() {
    let cf = policies().category("xzcf").unwrap();
    assert_rejects(
        &cf,
        &with(&penalty_row(), "CF_XDR_SHXYM", "91350100M000100Y44"),
        "CF_XDR_SHXYM",
        "uscc",
    );
    assert_rejects(
        &cf,
        &with(&penalty_row(), "CF_CFJGDM", "91350100M000100Y4O"),
        "CF_CFJGDM",
        "uscc",
    );
    assert_rejects(
        &cf,
        &with(&penalty_row(), "CF_SJLYDM", "91350100M000100Y4"),
        "CF_SJLYDM",
        "uscc",
    );
    assert_rejects(
        &cf,
        &with(&penalty_row(), "CF_FR_ZJHM", "110105194912310021"),
        "CF_FR_ZJHM",
        "resident_id",
    );
    // Organisation-code failures inside a USCC are warnings, not faults.
    let (faults, warnings) = check(
        &cf,
        &with(&penalty_row(), "CF_XDR_SHXYM", "9151010000000000G0"),
    );
    assert!(faults.is_empty(), "{faults:?}");
    assert!(
        warnings.iter().any(|w| w.contains("组织机构代码")),
        "{warnings:?}"
    );
    // A passport number is not checked as a resident identity number.
    let passport = with(
        &with(&penalty_row(), "CF_FR_ZJLX", "护照号"),
        "CF_FR_ZJHM",
        "E12345678",
    );
    assert_accepts(&cf, &passport);
}

#[test]
fn subject_category_rules() {
    let cf = policies().category("xzcf").unwrap();
    let natural: Vec<_> = penalty_row()
        .into_iter()
        .filter(|(k, _)| !matches!(*k, "CF_XDR_SHXYM" | "CF_FRDB" | "CF_FR_ZJLX" | "CF_FR_ZJHM"))
        .chain([
            ("CF_XDR_LB", "自然人"),
            ("CF_XDR_ZJLX", "身份证"),
            ("CF_XDR_ZJHM", "440524188001010014"),
        ])
        .filter(|(k, v)| *k != "CF_XDR_LB" || *v == "自然人")
        .collect();
    assert_accepts(&cf, &natural);
    assert_rejects(
        &cf,
        &with(&natural, "CF_XDR_SHXYM", "91310230MA1K314J7C"),
        "CF_XDR_SHXYM",
        "CF-NATURAL-NO-USCC",
    );
    assert_rejects(
        &cf,
        &with(&natural, "CF_XDR_ZJHM", ""),
        "CF_XDR_ZJHM",
        "CF-NATURAL-ID-REQUIRED",
    );
    assert_rejects(
        &cf,
        &with(&natural, "CF_XDR_ZJLX", ""),
        "CF_XDR_ZJLX",
        "CF-NATURAL-IDTYPE-REQUIRED",
    );
    assert_rejects(
        &cf,
        &with(&penalty_row(), "CF_XDR_SHXYM", ""),
        "CF_XDR_SHXYM",
        "CF-USCC-REQUIRED",
    );
    assert_rejects(
        &cf,
        &with(&penalty_row(), "CF_FRDB", ""),
        "CF_FRDB",
        "CF-FRDB-REQUIRED",
    );
    // 个体工商户 needs a USCC but no legal representative.
    let sole = with(
        &with(&penalty_row(), "CF_XDR_LB", "个体工商户"),
        "CF_FRDB",
        "",
    );
    assert_accepts(&cf, &sole);
}

#[test]
fn penalty_content_rules() {
    let cf = policies().category("xzcf").unwrap();
    assert_rejects(
        &cf,
        &with(&penalty_row(), "CF_NR_FK", ""),
        "CF_NR_FK",
        "CF-FINE-REQUIRED",
    );
    assert_accepts(
        &cf,
        &with(&with(&penalty_row(), "CF_CFLB", "警告"), "CF_NR_FK", ""),
    );
    let confiscation = with(&penalty_row(), "CF_CFLB", "没收违法所得");
    assert_rejects(&cf, &confiscation, "CF_NR_WFFF", "CF-CONFISCATION-REQUIRED");
    assert_accepts(&cf, &with(&confiscation, "CF_NR_WFFF", "0.5"));
    let revoke = with(&penalty_row(), "CF_CFLB", "吊销许可证件");
    assert_rejects(&cf, &revoke, "CF_NR_ZKDX", "CF-LICENCE-REQUIRED");
    assert_accepts(&cf, &with(&revoke, "CF_NR_ZKDX", "食品经营许可证 JY123"));
    assert_rejects(
        &cf,
        &with(&penalty_row(), "CF_NR_FK", "两万"),
        "CF_NR_FK",
        "money",
    );
    assert_rejects(
        &cf,
        &with(&penalty_row(), "CF_NR_FK", "-2"),
        "CF_NR_FK",
        "money",
    );
    let (faults, warnings) = check(&cf, &with(&penalty_row(), "CF_NR_FK", "20000"));
    assert!(faults.is_empty());
    assert!(
        warnings.iter().any(|w| w.contains("CF-FINE-UNIT")),
        "{warnings:?}"
    );
    let (_, warnings) = check(&cf, &with(&penalty_row(), "CF_NR_FK", "9999"));
    assert!(warnings.is_empty());
}

#[test]
fn undecodable_characters_are_refused() {
    let cf = policies().category("xzcf").unwrap();
    assert_rejects(
        &cf,
        &with(&penalty_row(), "CF_XDR_MC", "成都\u{FFFD}\u{FFFD}公司"),
        "CF_XDR_MC",
        "encoding",
    );
}

#[test]
fn cleaning_normalises_codes_dates_ids_and_penalty_types() {
    let cf = policies().category("xzcf").unwrap();
    let raw = with(
        &with(
            &with(
                &with(
                    &penalty_row(),
                    "CF_XDR_SHXYM",
                    "  ９１３１０２３０ＭＡ１Ｋ３１４Ｊ７Ｃ ",
                ),
                "CF_FR_ZJHM",
                "11010519491231002x",
            ),
            "CF_JDRQ",
            "20240305",
        ),
        "CF_CFLB",
        "警告；罚款；罚款",
    );
    let mut values = build(&cf, &raw);
    cf.clean(&mut values);
    let get = |n: &str| values[cf.field_index(n).unwrap()].clone();
    assert_eq!(get("CF_XDR_SHXYM"), "91310230MA1K314J7C");
    assert_eq!(get("CF_FR_ZJHM"), "11010519491231002X");
    assert_eq!(get("CF_JDRQ"), "2024/03/05");
    assert_eq!(get("CF_CFLB"), "警告;罚款");
    // Publicity end derived: decision date + 36 months.
    assert_eq!(get("CF_GSJZQ"), "2027/03/05");
    assert!(cf.validate(&values, today()).is_valid());
    let mut old = build(
        &cf,
        &with(&penalty_row(), "CF_CFLB", "没收违法所得、没收非法财物"),
    );
    cf.clean(&mut old);
    assert_eq!(
        old[cf.field_index("CF_CFLB").unwrap()],
        "没收违法所得;没收非法财物"
    );
}

#[test]
fn identifier_vectors() {
    let data: serde_json::Value =
        serde_json::from_str(include_str!("data/identifiers.json")).unwrap();
    let uscc = data["uscc"].as_array().unwrap();
    assert!(uscc.len() >= 7);
    for case in uscc {
        let code = case["code"].as_str().unwrap();
        let got = check_uscc(code);
        match (case["valid"].as_bool().unwrap(), case.get("warning")) {
            (true, None) => assert_eq!(got, CodeCheck::Valid, "{code}"),
            (true, Some(_)) => assert!(
                matches!(got, CodeCheck::ValidWithWarning(_)),
                "{code}: {got:?}"
            ),
            (false, _) => assert!(matches!(got, CodeCheck::Invalid(_)), "{code}: {got:?}"),
        }
    }
    let ids = data["resident_id"].as_array().unwrap();
    assert!(ids.len() >= 5);
    for case in ids {
        let code = case["code"].as_str().unwrap();
        let got = check_resident_id(code, today());
        assert_eq!(
            got == CodeCheck::Valid,
            case["valid"].as_bool().unwrap(),
            "{code}: {got:?}"
        );
    }
    // Birth dates must be real and not in the future; both numbers carry a correct check digit.
    assert_eq!(
        check_resident_id("110105202702010018", today()),
        CodeCheck::Invalid("身份证号码中的出生日期晚于今天")
    );
    assert_eq!(
        check_resident_id("110105199902300015", today()),
        CodeCheck::Invalid("身份证号码中的出生日期不是真实日期")
    );
}

#[test]
fn masking_keeps_division_and_tail() {
    assert_eq!(mask_id_number("11010519491231002X"), "110105********002X");
    assert_eq!(mask_id_number("E1234567"), "*******7");
    assert_eq!(mask_id_number(""), "");
}

fn headers(names: &[&str]) -> Vec<String> {
    names.iter().map(|s| (*s).to_owned()).collect()
}

#[test]
fn header_detection_v1_and_v2() {
    let p = policies();
    assert_eq!(
        p.detect(&headers(&["CF_WSH", "CF_XDR_MC", "CF_JDRQ"]))
            .unwrap()
            .code,
        "xzcf"
    );
    assert_eq!(
        p.detect(&headers(&["\u{feff}xk_wsh", "XK_XDR_MC", "XK_JDRQ"]))
            .unwrap()
            .code,
        "xzxk"
    );
    assert_eq!(
        p.detect(&headers(&["XK_XMMC", "XK_SPLB", "XK_XDR", "XK_XDR_SFZ"]))
            .unwrap()
            .code,
        "xzxk"
    );
    assert_eq!(
        p.detect(&headers(&["CF_CFMC", "CF_CFLB1", "CF_XZJG"]))
            .unwrap()
            .code,
        "xzcf"
    );
    assert!(matches!(
        p.detect(&headers(&["A", "B", "C"])),
        Err(PolicyError::UndetectedCategory)
    ));
}

#[test]
fn header_errors() {
    let cf = policies().category("xzcf").unwrap();
    assert!(matches!(
        cf.map_header(&headers(&["CF_WSH", "CF_WSH"])),
        Err(PolicyError::DuplicateHeader(_))
    ));
    assert!(matches!(
        cf.map_header(&headers(&["CF_WSH", ""])),
        Err(PolicyError::EmptyHeader { column: 2 })
    ));
    assert!(matches!(
        cf.map_header(&headers(&["CF_FR", "CF_FRDB"])),
        Err(PolicyError::ConflictingHeaders { .. })
    ));
    let m = cf.map_header(&headers(&["CF_WSH", "EXTRA"])).unwrap();
    assert_eq!(m.unknown_columns, vec!["EXTRA".to_owned()]);
}

#[test]
fn legacy_v1_rows_map_to_v2() {
    let p = policies();
    let cf = p.category("xzcf").unwrap();
    let m = cf
        .map_header(&headers(&[
            "CF_CFMC",
            "CF_CFLB1",
            "CF_CFLB2",
            "CF_XDR_SFZ",
            "CF_FR",
            "CF_JG",
            "CF_XZJG",
            "CF_ZT",
        ]))
        .unwrap();
    assert!(m.legacy);
    let values = cf.map_row(
        &m,
        [
            "虚假宣传",
            "警告",
            "罚款",
            "11010519491231002X",
            "张三",
            "罚款两万",
            "某局",
            "正常",
        ],
    );
    let get = |n: &str| values[cf.field_index(n).unwrap()].as_str();
    assert_eq!(get("CF_WFXW"), "虚假宣传");
    assert_eq!(get("CF_CFLB"), "警告;罚款");
    assert_eq!(get("CF_XDR_ZJHM"), "11010519491231002X");
    assert_eq!(get("CF_XDR_ZJLX"), "身份证");
    assert_eq!(get("CF_FRDB"), "张三");
    assert_eq!(get("CF_NR"), "罚款两万");
    assert_eq!(get("CF_CFJG"), "某局");
    assert_eq!(get("BZ"), "v1状态:正常");
    let xk = p.category("xzxk").unwrap();
    let m = xk
        .map_header(&headers(&[
            "XK_XMMC", "XK_SPLB", "XK_XDR", "XK_JZQ", "XK_XZJG", "DFBM",
        ]))
        .unwrap();
    let values = xk.map_row(
        &m,
        [
            "食品经营许可",
            "普通",
            "某公司",
            "2028/01/01",
            "某局",
            "510100",
        ],
    );
    let get = |n: &str| values[xk.field_index(n).unwrap()].as_str();
    assert_eq!(get("XK_XKWS"), "食品经营许可");
    assert_eq!(get("XK_XKLB"), "普通");
    assert_eq!(get("XK_XDR_MC"), "某公司");
    assert_eq!(get("XK_YXQZI"), "2028/01/01");
    assert_eq!(get("XK_XKJG"), "某局");
    assert_eq!(get("BZ"), "地方编码:510100");
}

#[test]
fn a_category_added_as_data_works_without_code() {
    let cn = policies().category("信用承诺").unwrap();
    let row = [
        ("CN_XDR_MC", "成都示例科技有限公司"),
        ("CN_XDR_LB", "法人及非法人组织"),
        ("CN_XDR_SHXYM", "91310230MA1K314J7C"),
        ("CN_CNBH", "CN-2024-0001"),
        ("CN_CNLX", "审批替代型"),
        ("CN_CNNR", "按时提交材料"),
        ("CN_CNRQ", "2024/01/02"),
        ("CN_SJLY", "成都市发展和改革委员会"),
        ("CN_SJLYDM", "91350100M000100Y43"),
    ];
    assert_accepts(&cn, &row);
    assert_rejects(&cn, &with(&row, "CN_CNLX", "口头承诺"), "CN_CNLX", "enum");
}

#[test]
fn policy_directory_loads_and_bad_policies_are_refused() {
    let dir = std::env::temp_dir().join(format!("xy-policy-test-{}", std::process::id()));
    let cats = dir.join("categories");
    std::fs::create_dir_all(&cats).unwrap();
    std::fs::write(dir.join("common.toml"), include_str!("../../common.toml")).unwrap();
    std::fs::write(
        cats.join("xzcf.toml"),
        include_str!("../../categories/xzcf.toml"),
    )
    .unwrap();
    let set = PolicySet::load_dir(&dir).unwrap();
    assert_eq!(set.categories().len(), 1);
    let broken = include_str!("../../categories/xzcf.toml")
        .replace("field = \"CF_NR_FK\"", "field = \"CF_NOPE\"");
    std::fs::write(cats.join("xzcf.toml"), broken).unwrap();
    assert!(matches!(
        PolicySet::load_dir(&dir),
        Err(PolicyError::UnknownField { .. })
    ));
    std::fs::remove_dir_all(&dir).unwrap();
}
