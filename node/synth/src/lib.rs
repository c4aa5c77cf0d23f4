//! A deterministic generator of realistic 双公示 records (行政处罚 and 行政许可, in the v2.0 field
//! names or the legacy v1 names), with a configurable fraction of each defect type. The same seed
//! gives the same rows, and every row carries the outcome ingest must give it, so tests can check
//! every row and benches and the demo get data with no external source.

use std::io::{self, Write};

use chrono::{Duration, NaiveDate};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use xy_policy::identifiers::{org_code_check_char, resident_id_check_char, uscc_check_char};

/// Which category to generate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// 行政处罚 (CF_).
    Penalty,
    /// 行政许可 (XK_).
    Licence,
}

/// Which version of the field names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// National standard v2.0 names.
    V2,
    /// Legacy v1 names where they differ.
    V1,
}

/// A defect injected into a row, and so the outcome ingest must give it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Defect {
    /// A clean row: stored.
    None,
    /// A required field is empty: rejected.
    MissingRequired,
    /// A USCC with a wrong check character: rejected.
    BadUscc,
    /// A resident identity number with a wrong check character: rejected.
    BadResidentId,
    /// A date that does not exist: rejected.
    BadDate,
    /// A decision date after today: rejected.
    FutureDate,
    /// Validity ends before it starts: rejected.
    DateOrder,
    /// 罚款 among the penalty types but no fine: rejected.
    MissingFine,
    /// A natural person with a USCC: rejected.
    NaturalWithUscc,
    /// An exact copy of the current version of an earlier row: duplicate.
    Duplicate,
    /// An earlier row's key with changed content: updated.
    Changed,
}

impl Defect {
    /// The defect of a name as written on the command line (`missing-required`, `bad-uscc`, …).
    pub fn from_name(name: &str) -> Option<Self> {
        Some(match name {
            "missing-required" => Self::MissingRequired,
            "bad-uscc" => Self::BadUscc,
            "bad-resident-id" => Self::BadResidentId,
            "bad-date" => Self::BadDate,
            "future-date" => Self::FutureDate,
            "date-order" => Self::DateOrder,
            "missing-fine" => Self::MissingFine,
            "natural-with-uscc" => Self::NaturalWithUscc,
            "duplicate" => Self::Duplicate,
            "changed" => Self::Changed,
            _ => return None,
        })
    }

    /// The outcome ingest must report: `stored`, `rejected`, `duplicate` or `updated`.
    pub fn expected_outcome(self) -> &'static str {
        match self {
            Self::None => "stored",
            Self::Duplicate => "duplicate",
            Self::Changed => "updated",
            _ => "rejected",
        }
    }

    /// Every rejecting defect.
    pub const REJECTING: [Defect; 8] = [
        Self::MissingRequired,
        Self::BadUscc,
        Self::BadResidentId,
        Self::BadDate,
        Self::FutureDate,
        Self::DateOrder,
        Self::MissingFine,
        Self::NaturalWithUscc,
    ];
}

/// Generator settings.
#[derive(Debug, Clone)]
pub struct SynthConfig {
    /// Seed: the same seed gives the same rows.
    pub seed: u64,
    /// Category.
    pub kind: Kind,
    /// Field-name version.
    pub version: Version,
    /// "Today" for dates: decisions fall in the three years before it.
    pub today: NaiveDate,
    /// The source unit (name, USCC) of every row.
    pub source_unit: (String, String),
    /// Fraction of rows with each rejecting defect, in the order of [`Defect::REJECTING`]
    /// (default 1% each). Set one with [`SynthConfig::set_rate`].
    pub reject_rates: [f64; 8],
    /// Fraction of rows that repeat an earlier row exactly.
    pub duplicate_rate: f64,
    /// Fraction of rows that change an earlier row.
    pub change_rate: f64,
    /// Fraction of subjects that are natural persons.
    pub natural_person_rate: f64,
    /// Fraction of clean rows written in a messy but cleanable form (full-width digits, lower-case
    /// `x`, other date layouts, padding).
    pub messy_rate: f64,
}

impl SynthConfig {
    /// Set the fraction of rows with one defect (rejecting, duplicate or changed). The fractions of
    /// all defects together must stay at most 1; [`Defect::None`] has no rate of its own.
    pub fn set_rate(&mut self, defect: Defect, rate: f64) {
        match defect {
            Defect::Duplicate => self.duplicate_rate = rate,
            Defect::Changed => self.change_rate = rate,
            Defect::None => {}
            d => {
                if let Some(i) = Defect::REJECTING.iter().position(|r| *r == d) {
                    self.reject_rates[i] = rate;
                }
            }
        }
    }

    /// The sum of all defect fractions (must be at most 1).
    pub fn total_rate(&self) -> f64 {
        self.reject_rates.iter().sum::<f64>() + self.duplicate_rate + self.change_rate
    }

    /// Defaults: 1% of each rejecting defect, 2% duplicates, 2% changes, 20% natural persons.
    pub fn new(seed: u64, kind: Kind, today: NaiveDate) -> Self {
        Self {
            seed,
            kind,
            version: Version::V2,
            today,
            source_unit: (
                "成都市市场监督管理局".into(),
                make_uscc_from(b"11", "510100", 4242),
            ),
            reject_rates: [0.01; 8],
            duplicate_rate: 0.02,
            change_rate: 0.02,
            natural_person_rate: 0.2,
            messy_rate: 0.1,
        }
    }
}

/// One generated row: cells in [`headers`] order, and the defect it carries.
#[derive(Debug, Clone)]
pub struct SynthRow {
    /// Cell values.
    pub cells: Vec<String>,
    /// The injected defect.
    pub defect: Defect,
}

const CF_V2: [&str; 24] = [
    "CF_XDR_MC",
    "CF_XDR_LB",
    "CF_XDR_SHXYM",
    "CF_FRDB",
    "CF_FR_ZJLX",
    "CF_FR_ZJHM",
    "CF_XDR_ZJLX",
    "CF_XDR_ZJHM",
    "CF_WSH",
    "CF_WFXW",
    "CF_SY",
    "CF_YJ",
    "CF_CFLB",
    "CF_NR",
    "CF_NR_FK",
    "CF_NR_WFFF",
    "CF_NR_ZKDX",
    "CF_JDRQ",
    "CF_YXQ",
    "CF_CFJG",
    "CF_CFJGDM",
    "CF_SJLY",
    "CF_SJLYDM",
    "BZ",
];
const XK_V2: [&str; 20] = [
    "XK_XDR_MC",
    "XK_XDR_LB",
    "XK_XDR_SHXYM",
    "XK_FRDB",
    "XK_FR_ZJLX",
    "XK_FR_ZJHM",
    "XK_XDR_ZJLX",
    "XK_XDR_ZJHM",
    "XK_XKWS",
    "XK_WSH",
    "XK_XKLB",
    "XK_NR",
    "XK_JDRQ",
    "XK_YXQZ",
    "XK_YXQZI",
    "XK_XKJG",
    "XK_XKJGDM",
    "XK_ZT",
    "XK_LYDW",
    "XK_LYDWDM",
];

fn v1_name(v2: &str) -> &str {
    match v2 {
        "CF_WFXW" => "CF_CFMC",
        "CF_FRDB" => "CF_FR",
        "CF_NR" => "CF_JG",
        "CF_CFJG" => "CF_XZJG",
        "CF_XDR_ZJHM" => "CF_XDR_SFZ",
        "CF_CFLB" => "CF_CFLB1",
        "XK_XKWS" => "XK_XMMC",
        "XK_XKLB" => "XK_SPLB",
        "XK_XDR_MC" => "XK_XDR",
        "XK_FRDB" => "XK_FR",
        "XK_YXQZI" => "XK_JZQ",
        "XK_XKJG" => "XK_XZJG",
        "XK_XDR_ZJHM" => "XK_XDR_SFZ",
        other => other,
    }
}

/// The header of the generated rows. v1 drops the subject id-type column (implied by `*_SFZ`).
pub fn headers(kind: Kind, version: Version) -> Vec<&'static str> {
    let base: &[&'static str] = match kind {
        Kind::Penalty => &CF_V2,
        Kind::Licence => &XK_V2,
    };
    match version {
        Version::V2 => base.to_vec(),
        Version::V1 => base
            .iter()
            .filter(|n| !n.ends_with("_XDR_ZJLX"))
            .map(|n| v1_name(n))
            .collect(),
    }
}

const CITIES: [(&str, &str, &str); 8] = [
    ("成都", "510100", "蓉"),
    ("绵阳", "510700", "绵"),
    ("德阳", "510600", "德"),
    ("宜宾", "511500", "宜"),
    ("南充", "511300", "南"),
    ("泸州", "510500", "泸"),
    ("乐山", "511100", "乐"),
    ("达州", "511700", "达"),
];
const FIRMS: [&str; 12] = [
    "天府", "锦城", "蜀香", "峨眉", "嘉陵", "岷江", "青城", "巴山", "蓉欣", "川越", "金沙", "卧龙",
];
const TRADES: [&str; 8] = [
    "科技",
    "餐饮管理",
    "建筑工程",
    "商贸",
    "食品",
    "物流",
    "医药",
    "文化传媒",
];
const SURNAMES: [&str; 12] = [
    "王", "李", "张", "刘", "陈", "杨", "黄", "赵", "周", "吴", "徐", "孙",
];
const GIVEN: [&str; 12] = [
    "伟", "芳", "娜", "敏", "静", "磊", "洋", "勇", "艳", "杰", "娟", "涛",
];
const OFFENCES: [(&str, &str, &str); 5] = [
    (
        "虚假宣传",
        "当事人在经营场所发布引人误解的商业宣传",
        "《中华人民共和国反不正当竞争法》第二十条",
    ),
    (
        "销售不合格食品",
        "当事人销售的食品经抽检不符合食品安全标准",
        "《中华人民共和国食品安全法》第一百二十四条",
    ),
    (
        "未按规定公示年度报告",
        "当事人未按照规定期限公示年度报告",
        "《企业信息公示暂行条例》第十八条",
    ),
    (
        "无证经营",
        "当事人未取得许可从事经营活动",
        "《无证无照经营查处办法》第十三条",
    ),
    (
        "安全生产违法",
        "当事人未按规定开展安全生产教育和培训",
        "《中华人民共和国安全生产法》第九十七条",
    ),
];
const LICENCES: [(&str, &str); 4] = [
    ("食品经营许可决定书", "预包装食品销售、散装食品销售"),
    ("建筑工程施工许可决定书", "房屋建筑工程施工"),
    ("药品经营许可决定书", "中成药、化学药制剂零售"),
    ("道路运输经营许可决定书", "普通货运"),
];
const LICENCE_TYPES: [&str; 5] = ["普通", "特许", "认可", "核准", "登记"];

const USCC_ALPHABET: &[u8] = b"0123456789ABCDEFGHJKLMNPQRTUWXY";

/// A valid USCC with the given 2-character prefix, division and serial.
fn make_uscc_from(prefix: &[u8; 2], division: &str, serial: u64) -> String {
    // Organisation code: 8 digits from the serial plus its own check character.
    let org8 = format!("{:08}", serial % 100_000_000);
    let org_check = org_code_check_char(org8.as_bytes()).map_or('0', char::from);
    let mut s = String::with_capacity(18);
    s.push(char::from(prefix[0]));
    s.push(char::from(prefix[1]));
    s.push_str(division);
    s.push_str(&org8);
    s.push(org_check);
    let check = uscc_check_char(s.as_bytes()).map_or('0', char::from);
    s.push(check);
    s
}

fn make_resident_id(division: &str, birth: NaiveDate, seq: u32) -> String {
    let mut s = format!("{division}{}{:03}", birth.format("%Y%m%d"), seq % 1000);
    let check = resident_id_check_char(s.as_bytes()).map_or('0', char::from);
    s.push(check);
    s
}

fn ymd(d: NaiveDate) -> String {
    d.format("%Y/%m/%d").to_string()
}

/// Break the check character of a code (keeping it in the alphabet).
fn break_check(code: &str) -> String {
    let mut chars: Vec<char> = code.chars().collect();
    if let Some(last) = chars.last_mut() {
        let pos = USCC_ALPHABET
            .iter()
            .position(|&c| char::from(c) == *last)
            .unwrap_or(0);
        *last = char::from(USCC_ALPHABET[(pos + 1) % 10]);
    }
    chars.into_iter().collect()
}

/// An endless, deterministic stream of rows.
pub struct Generator {
    cfg: SynthConfig,
    rng: ChaCha8Rng,
    headers: Vec<&'static str>,
    serial: u64,
    /// Current versions of recent clean rows, for duplicates and changes.
    pool: Vec<Vec<String>>,
}

impl Generator {
    /// A generator for `cfg`.
    pub fn new(cfg: SynthConfig) -> Self {
        Self {
            rng: ChaCha8Rng::seed_from_u64(cfg.seed),
            headers: headers(cfg.kind, cfg.version),
            cfg,
            serial: 0,
            pool: Vec::new(),
        }
    }

    /// The header of the rows.
    pub fn headers(&self) -> &[&'static str] {
        &self.headers
    }

    fn col(&self, v2: &str) -> Option<usize> {
        let name = match self.cfg.version {
            Version::V2 => v2,
            Version::V1 => {
                if v2.ends_with("_XDR_ZJLX") {
                    return None;
                }
                v1_name(v2)
            }
        };
        self.headers.iter().position(|h| *h == name)
    }

    fn set(&self, cells: &mut [String], v2: &str, value: String) {
        if let Some(i) = self.col(v2) {
            cells[i] = value;
        }
    }

    fn get<'a>(&self, cells: &'a [String], v2: &str) -> &'a str {
        self.col(v2).map_or("", |i| cells[i].as_str())
    }

    fn pick_defect(&mut self) -> Defect {
        let r: f64 = self.rng.random();
        let mut acc = 0.0;
        for (d, rate) in Defect::REJECTING.into_iter().zip(self.cfg.reject_rates) {
            acc += rate;
            if r < acc {
                return d;
            }
        }
        acc += self.cfg.duplicate_rate;
        if r < acc {
            return Defect::Duplicate;
        }
        acc += self.cfg.change_rate;
        if r < acc {
            return Defect::Changed;
        }
        Defect::None
    }

    fn clean_row(&mut self, natural: bool) -> Vec<String> {
        self.serial += 1;
        let n = self.serial;
        let mut cells = vec![String::new(); self.headers.len()];
        let (city, division, short) = CITIES[self.rng.random_range(0..CITIES.len())];
        let today = self.cfg.today;
        let decided = today - Duration::days(self.rng.random_range(1..1095));
        let p = |s: &str| s.to_owned();
        let prefix = match self.cfg.kind {
            Kind::Penalty => "CF",
            Kind::Licence => "XK",
        };
        let f = |name: &str| format!("{prefix}_{name}");
        if natural {
            let name = format!(
                "{}{}{}",
                SURNAMES[self.rng.random_range(0..SURNAMES.len())],
                GIVEN[self.rng.random_range(0..GIVEN.len())],
                GIVEN[self.rng.random_range(0..GIVEN.len())]
            );
            let birth = NaiveDate::from_ymd_opt(
                1950 + self.rng.random_range(0..50),
                1 + self.rng.random_range(0..12),
                1 + self.rng.random_range(0..28),
            )
            .unwrap_or(today);
            let id = make_resident_id(division, birth, self.rng.random_range(0..1000));
            self.set(&mut cells, &f("XDR_MC"), name);
            self.set(&mut cells, &f("XDR_LB"), p("自然人"));
            self.set(&mut cells, &f("XDR_ZJLX"), p("身份证"));
            self.set(&mut cells, &f("XDR_ZJHM"), id);
        } else {
            let firm = FIRMS[self.rng.random_range(0..FIRMS.len())];
            let trade = TRADES[self.rng.random_range(0..TRADES.len())];
            let sole = self.rng.random_bool(0.15);
            let uscc = make_uscc_from(if sole { b"92" } else { b"91" }, division, 10_000_000 + n);
            if sole {
                self.set(
                    &mut cells,
                    &f("XDR_MC"),
                    format!("{city}市{firm}{trade}经营部"),
                );
                self.set(&mut cells, &f("XDR_LB"), p("个体工商户"));
            } else {
                self.set(
                    &mut cells,
                    &f("XDR_MC"),
                    format!("{city}{firm}{trade}有限公司"),
                );
                self.set(&mut cells, &f("XDR_LB"), p("法人及非法人组织"));
                let rep = format!(
                    "{}{}",
                    SURNAMES[self.rng.random_range(0..SURNAMES.len())],
                    GIVEN[self.rng.random_range(0..GIVEN.len())]
                );
                self.set(&mut cells, &f("FRDB"), rep);
                let birth = NaiveDate::from_ymd_opt(
                    1960 + self.rng.random_range(0..40),
                    1 + self.rng.random_range(0..12),
                    1 + self.rng.random_range(0..28),
                )
                .unwrap_or(today);
                self.set(&mut cells, &f("FR_ZJLX"), p("身份证"));
                let id = make_resident_id(division, birth, self.rng.random_range(0..1000));
                self.set(&mut cells, &f("FR_ZJHM"), id);
            }
            self.set(&mut cells, &f("XDR_SHXYM"), uscc);
        }
        let authority = format!("{city}市市场监督管理局");
        let authority_code = make_uscc_from(
            b"11",
            division,
            5_000_000 + u64::from(division.as_bytes()[3]),
        );
        let (su_name, su_code) = self.cfg.source_unit.clone();
        match self.cfg.kind {
            Kind::Penalty => {
                let (offence, facts, basis) = OFFENCES[self.rng.random_range(0..OFFENCES.len())];
                let fine: u32 = self.rng.random_range(1..500);
                let fine = format!("{}.{:02}", fine / 100, fine % 100);
                let with_fine = self.rng.random_bool(0.8);
                let types = if with_fine { "警告;罚款" } else { "警告" };
                self.set(
                    &mut cells,
                    "CF_WSH",
                    format!("{short}市监罚〔{}〕{n}号", decided.format("%Y")),
                );
                self.set(&mut cells, "CF_WFXW", p(offence));
                self.set(
                    &mut cells,
                    "CF_SY",
                    format!("{facts}，经查证属实（案件编号 {n}）。"),
                );
                self.set(&mut cells, "CF_YJ", p(basis));
                self.set(&mut cells, "CF_CFLB", p(types));
                self.set(
                    &mut cells,
                    "CF_NR",
                    if with_fine {
                        format!("警告，并处罚款{fine}万元")
                    } else {
                        p("警告")
                    },
                );
                if with_fine {
                    self.set(&mut cells, "CF_NR_FK", fine);
                }
                self.set(&mut cells, "CF_JDRQ", ymd(decided));
                self.set(&mut cells, "CF_YXQ", ymd(decided + Duration::days(1095)));
                self.set(&mut cells, "CF_CFJG", authority);
                self.set(&mut cells, "CF_CFJGDM", authority_code);
                self.set(&mut cells, "CF_SJLY", su_name);
                self.set(&mut cells, "CF_SJLYDM", su_code);
            }
            Kind::Licence => {
                let (doc, content) = LICENCES[self.rng.random_range(0..LICENCES.len())];
                self.set(&mut cells, "XK_XKWS", p(doc));
                self.set(&mut cells, "XK_WSH", format!("JY{division}{n:010}"));
                let licence_type = LICENCE_TYPES[self.rng.random_range(0..LICENCE_TYPES.len())];
                self.set(&mut cells, "XK_XKLB", p(licence_type));
                self.set(&mut cells, "XK_NR", p(content));
                self.set(&mut cells, "XK_JDRQ", ymd(decided));
                self.set(&mut cells, "XK_YXQZ", ymd(decided));
                self.set(&mut cells, "XK_YXQZI", ymd(decided + Duration::days(1825)));
                self.set(&mut cells, "XK_XKJG", authority);
                self.set(&mut cells, "XK_XKJGDM", authority_code);
                self.set(&mut cells, "XK_ZT", p("1"));
                self.set(&mut cells, "XK_LYDW", su_name);
                self.set(&mut cells, "XK_LYDWDM", su_code);
            }
        }
        cells
    }

    /// Messy but cleanable spellings of a clean row (the outcome does not change).
    fn make_messy(&mut self, cells: &mut [String]) {
        let prefix = match self.cfg.kind {
            Kind::Penalty => "CF",
            Kind::Licence => "XK",
        };
        let date_field = format!("{prefix}_JDRQ");
        if let Some(i) = self.col(&date_field) {
            let d = cells[i].replace('/', "");
            cells[i] = if self.rng.random_bool(0.5) {
                d
            } else {
                cells[i].replace('/', "-")
            };
        }
        for id_field in [format!("{prefix}_XDR_ZJHM"), format!("{prefix}_FR_ZJHM")] {
            if let Some(i) = self.col(&id_field) {
                cells[i] = cells[i].replace('X', "x");
            }
        }
        if let Some(i) = self.col(&format!("{prefix}_XDR_SHXYM")) {
            cells[i] = cells[i]
                .chars()
                .map(|c| {
                    if c.is_ascii_digit() {
                        char::from_u32(c as u32 + 0xFEE0).unwrap_or(c)
                    } else {
                        c
                    }
                })
                .collect();
        }
        if let Some(i) = self.col(&format!("{prefix}_XDR_MC")) {
            cells[i] = format!("  {} ", cells[i]);
        }
    }

    fn inject(&mut self, cells: &mut [String], defect: Defect, natural: bool) -> Defect {
        let prefix = match self.cfg.kind {
            Kind::Penalty => "CF",
            Kind::Licence => "XK",
        };
        let f = |name: &str| format!("{prefix}_{name}");
        match defect {
            Defect::MissingRequired => {
                let field = match self.cfg.kind {
                    Kind::Penalty => ["CF_WSH", "CF_SY", "CF_YJ", "CF_CFJG", "CF_JDRQ"]
                        [self.rng.random_range(0..5)],
                    Kind::Licence => ["XK_WSH", "XK_NR", "XK_XKJG", "XK_JDRQ", "XK_YXQZ"]
                        [self.rng.random_range(0..5)],
                };
                self.set(cells, field, String::new());
            }
            Defect::BadUscc => {
                // A natural person has no USCC of its own: break the authority's instead.
                let field = if natural {
                    match self.cfg.kind {
                        Kind::Penalty => "CF_CFJGDM".to_owned(),
                        Kind::Licence => "XK_XKJGDM".to_owned(),
                    }
                } else {
                    f("XDR_SHXYM")
                };
                let bad = break_check(self.get(cells, &field));
                self.set(cells, &field, bad);
            }
            Defect::BadResidentId => {
                let field = if natural { f("XDR_ZJHM") } else { f("FR_ZJHM") };
                let current = self.get(cells, &field).to_owned();
                if current.is_empty() {
                    // A 个体工商户 has no representative's id: give it a broken one.
                    let bad = break_id(&make_resident_id(
                        "510100",
                        NaiveDate::from_ymd_opt(1980, 5, 5).unwrap_or(self.cfg.today),
                        7,
                    ));
                    self.set(cells, &f("FR_ZJLX"), "身份证".into());
                    self.set(cells, &field, bad);
                } else {
                    self.set(cells, &field, break_id(&current));
                }
            }
            Defect::BadDate => {
                let field = f("JDRQ");
                let year = &self.get(cells, &field)[..4].to_owned();
                self.set(cells, &field, format!("{year}/02/30"));
            }
            Defect::FutureDate => {
                let d = self.cfg.today + Duration::days(self.rng.random_range(1..400));
                self.set(cells, &f("JDRQ"), ymd(d));
            }
            Defect::DateOrder => match self.cfg.kind {
                Kind::Penalty => {
                    let d = self.get(cells, "CF_JDRQ").to_owned();
                    if let Ok(date) = NaiveDate::parse_from_str(&d, "%Y/%m/%d") {
                        self.set(cells, "CF_YXQ", ymd(date - Duration::days(30)));
                    }
                }
                Kind::Licence => {
                    let d = self.get(cells, "XK_YXQZ").to_owned();
                    if let Ok(date) = NaiveDate::parse_from_str(&d, "%Y/%m/%d") {
                        self.set(cells, "XK_YXQZI", ymd(date - Duration::days(30)));
                    }
                }
            },
            Defect::MissingFine => match self.cfg.kind {
                Kind::Penalty => {
                    self.set(cells, "CF_CFLB", "警告;罚款".into());
                    self.set(cells, "CF_NR_FK", String::new());
                }
                Kind::Licence => {
                    self.set(cells, "XK_XKLB", String::new());
                    return Defect::MissingRequired;
                }
            },
            Defect::NaturalWithUscc => {
                if natural {
                    let code = make_uscc_from(b"91", "510100", 77_000_000 + self.serial);
                    self.set(cells, &f("XDR_SHXYM"), code);
                } else {
                    // Turn the company into a "natural person" that keeps its USCC.
                    self.set(cells, &f("XDR_LB"), "自然人".into());
                    self.set(cells, &f("XDR_ZJLX"), "身份证".into());
                    let id = make_resident_id(
                        "510100",
                        NaiveDate::from_ymd_opt(1985, 3, 3).unwrap_or(self.cfg.today),
                        11,
                    );
                    self.set(cells, &f("XDR_ZJHM"), id);
                }
            }
            Defect::None | Defect::Duplicate | Defect::Changed => {}
        }
        defect
    }
}

fn break_id(id: &str) -> String {
    let mut chars: Vec<char> = id.chars().collect();
    if let Some(last) = chars.last_mut() {
        *last = match *last {
            'X' => '0',
            '9' => 'X',
            c => char::from_u32(c as u32 + 1).unwrap_or('0'),
        };
    }
    chars.into_iter().collect()
}

impl Iterator for Generator {
    type Item = SynthRow;

    fn next(&mut self) -> Option<SynthRow> {
        let defect = self.pick_defect();
        if matches!(defect, Defect::Duplicate | Defect::Changed) && !self.pool.is_empty() {
            let i = self.rng.random_range(0..self.pool.len());
            if defect == Defect::Changed {
                let field = match self.cfg.kind {
                    Kind::Penalty => "CF_NR",
                    Kind::Licence => "XK_NR",
                };
                let changed = format!("{}（更正 {}）", self.get(&self.pool[i], field), self.serial);
                let mut row = self.pool[i].clone();
                self.set(&mut row, field, changed);
                self.pool[i] = row;
            }
            return Some(SynthRow {
                cells: self.pool[i].clone(),
                defect,
            });
        }
        let defect = if matches!(defect, Defect::Duplicate | Defect::Changed) {
            Defect::None
        } else {
            defect
        };
        let natural = self.rng.random_bool(self.cfg.natural_person_rate);
        let mut cells = self.clean_row(natural);
        let defect = self.inject(&mut cells, defect, natural);
        if defect == Defect::None {
            if self.pool.len() < 4096 {
                self.pool.push(cells.clone());
            } else {
                let i = self.rng.random_range(0..self.pool.len());
                self.pool[i] = cells.clone();
            }
            if self.rng.random_bool(self.cfg.messy_rate) {
                // Messy spelling after pooling: a later duplicate repeats the clean form, which
                // cleans to the same content.
                self.make_messy(&mut cells);
            }
        }
        Some(SynthRow { cells, defect })
    }
}

/// Text encodings for generated CSV.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CsvEncoding {
    /// UTF-8 without BOM.
    Utf8,
    /// UTF-8 with BOM (as Excel writes it).
    Utf8Bom,
    /// GBK (as older Chinese Office versions write it).
    Gbk,
}

/// Write `rows` as CSV with `header`, in `encoding`, with CRLF line ends if `crlf`. Returns the
/// defects of the rows in order.
pub fn write_csv(
    out: impl Write,
    header: &[&str],
    rows: impl Iterator<Item = SynthRow>,
    encoding: CsvEncoding,
    crlf: bool,
) -> io::Result<Vec<Defect>> {
    let mut out = io::BufWriter::with_capacity(1 << 20, out);
    if encoding == CsvEncoding::Utf8Bom {
        out.write_all("\u{feff}".as_bytes())?;
    }
    let emit =
        |fields: &mut dyn Iterator<Item = &str>, out: &mut io::BufWriter<_>| -> io::Result<()> {
            let line = csv_line(fields, crlf);
            match encoding {
                CsvEncoding::Gbk => out.write_all(&encoding_rs::GBK.encode(&line).0),
                _ => out.write_all(line.as_bytes()),
            }
        };
    emit(&mut header.iter().copied(), &mut out)?;
    let mut defects = Vec::new();
    for row in rows {
        emit(&mut row.cells.iter().map(String::as_str), &mut out)?;
        defects.push(row.defect);
    }
    out.flush()?;
    Ok(defects)
}

/// One CSV line: fields quoted when they hold a separator, quote or line break.
fn csv_line(fields: &mut dyn Iterator<Item = &str>, crlf: bool) -> String {
    let mut line = String::with_capacity(512);
    for (i, f) in fields.enumerate() {
        if i > 0 {
            line.push(',');
        }
        if f.contains([',', '"', '\n', '\r']) {
            line.push('"');
            line.push_str(&f.replace('"', "\"\""));
            line.push('"');
        } else {
            line.push_str(f);
        }
    }
    line.push_str(if crlf { "\r\n" } else { "\n" });
    line
}

/// Write `rows` as JSON lines (empty cells omitted). Returns the defects in order.
pub fn write_jsonl(
    out: impl Write,
    header: &[&str],
    rows: impl Iterator<Item = SynthRow>,
) -> io::Result<Vec<Defect>> {
    let mut out = io::BufWriter::new(out);
    let mut defects = Vec::new();
    for row in rows {
        let map: serde_json::Map<String, serde_json::Value> = header
            .iter()
            .zip(&row.cells)
            .filter(|(_, v)| !v.is_empty())
            .map(|(k, v)| ((*k).to_owned(), serde_json::Value::String(v.clone())))
            .collect();
        serde_json::to_writer(&mut out, &map)?;
        out.write_all(b"\n")?;
        defects.push(row.defect);
    }
    out.flush()?;
    Ok(defects)
}
