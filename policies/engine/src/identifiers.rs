//! Check digits of the unified social credit code (统一社会信用代码, GB 32100-2015), the embedded
//! organisation code (组织机构代码, GB 11714) and the resident identity number (公民身份号码, GB 11643),
//! and masking of identity numbers for public output.

use chrono::NaiveDate;

/// The verdict on an identifier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CodeCheck {
    /// Every check passes.
    Valid,
    /// The identifier is accepted, with a warning (e.g. its embedded organisation code fails).
    ValidWithWarning(&'static str),
    /// The identifier is refused, with the reason.
    Invalid(&'static str),
}

const USCC_ALPHABET: &[u8; 31] = b"0123456789ABCDEFGHJKLMNPQRTUWXY";
const USCC_WEIGHTS: [u32; 17] = [
    1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28,
];
const ORG_WEIGHTS: [u32; 8] = [3, 7, 9, 10, 5, 8, 4, 2];
const ID_WEIGHTS: [u32; 17] = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];

fn uscc_value(c: u8) -> Option<u32> {
    USCC_ALPHABET.iter().position(|&a| a == c).map(|p| p as u32)
}

/// The check character of the first 17 characters of a USCC, or `None` if one is outside the alphabet.
pub fn uscc_check_char(first17: &[u8]) -> Option<u8> {
    if first17.len() != 17 {
        return None;
    }
    let mut sum = 0u32;
    for (c, w) in first17.iter().zip(USCC_WEIGHTS) {
        sum += uscc_value(*c)? * w;
    }
    // 31 - (sum mod 31); a result of 31 is written '0'.
    let check = (31 - sum % 31) % 31;
    Some(USCC_ALPHABET[check as usize])
}

/// The check character of the first 8 characters of an organisation code (digits and A-Z).
pub fn org_code_check_char(first8: &[u8]) -> Option<u8> {
    if first8.len() != 8 {
        return None;
    }
    let mut sum = 0u32;
    for (c, w) in first8.iter().zip(ORG_WEIGHTS) {
        let v = match c {
            b'0'..=b'9' => u32::from(c - b'0'),
            b'A'..=b'Z' => u32::from(c - b'A') + 10,
            _ => return None,
        };
        sum += v * w;
    }
    Some(match 11 - sum % 11 {
        10 => b'X',
        11 => b'0',
        d => b'0' + d as u8,
    })
}

/// Check a unified social credit code (GB 32100-2015). An embedded organisation code that fails its
/// own check (GB 11714) is a warning only.
pub fn check_uscc(code: &str) -> CodeCheck {
    let bytes = code.as_bytes();
    if bytes.len() != 18 || !code.is_ascii() {
        return CodeCheck::Invalid("统一社会信用代码应为 18 位");
    }
    if bytes.iter().any(|&c| uscc_value(c).is_none()) {
        return CodeCheck::Invalid(
            "统一社会信用代码含有非法字符（不得使用 I、O、S、V、Z 及小写字母）",
        );
    }
    match uscc_check_char(&bytes[..17]) {
        Some(c) if c == bytes[17] => {}
        _ => return CodeCheck::Invalid("统一社会信用代码校验位错误"),
    }
    match org_code_check_char(&bytes[8..16]) {
        Some(c) if c == bytes[16] => CodeCheck::Valid,
        _ => CodeCheck::ValidWithWarning("统一社会信用代码中的组织机构代码校验位错误"),
    }
}

/// The check character of the first 17 digits of a resident identity number (ISO 7064 MOD 11-2).
pub fn resident_id_check_char(first17: &[u8]) -> Option<u8> {
    if first17.len() != 17 {
        return None;
    }
    let mut sum = 0u32;
    for (c, w) in first17.iter().zip(ID_WEIGHTS) {
        if !c.is_ascii_digit() {
            return None;
        }
        sum += u32::from(c - b'0') * w;
    }
    Some(match (12 - sum % 11) % 11 {
        10 => b'X',
        d => b'0' + d as u8,
    })
}

/// Check an 18-digit resident identity number (GB 11643): digits, a real birth date not after
/// `today`, and the check character. Lower-case `x` must have been normalised before.
pub fn check_resident_id(code: &str, today: NaiveDate) -> CodeCheck {
    let bytes = code.as_bytes();
    if bytes.len() != 18 || !code.is_ascii() {
        return CodeCheck::Invalid("身份证号码应为 18 位");
    }
    if !bytes[..17].iter().all(u8::is_ascii_digit)
        || !(bytes[17].is_ascii_digit() || bytes[17] == b'X')
    {
        return CodeCheck::Invalid("身份证号码含有非法字符");
    }
    // All digits (checked above), so the date layout `YYYYMMDD` of the standard's dates.
    let birth = crate::dates::parse_date(&code[6..14]).ok();
    match birth {
        None => return CodeCheck::Invalid("身份证号码中的出生日期不是真实日期"),
        Some(d) if d > today => return CodeCheck::Invalid("身份证号码中的出生日期晚于今天"),
        Some(_) => {}
    }
    match resident_id_check_char(&bytes[..17]) {
        Some(c) if c == bytes[17] => CodeCheck::Valid,
        _ => CodeCheck::Invalid("身份证号码校验位错误"),
    }
}

/// Mask an identity number for public output: the 6-character division and the last 4 characters
/// stay, everything between becomes `*` (`110105********002X`). Short numbers keep only their last
/// character.
pub fn mask_id_number(id: &str) -> String {
    let chars: Vec<char> = id.chars().collect();
    let n = chars.len();
    if n >= 12 {
        let mut out: String = chars[..6].iter().collect();
        out.extend(std::iter::repeat_n('*', n - 10));
        out.extend(&chars[n - 4..]);
        out
    } else if n > 1 {
        let mut out: String = std::iter::repeat_n('*', n - 1).collect();
        out.push(chars[n - 1]);
        out
    } else {
        "*".repeat(n)
    }
}
