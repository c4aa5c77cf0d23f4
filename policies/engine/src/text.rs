//! Text clean-up shared by the cleaning steps.

/// Trim ASCII and Unicode white space, including the full-width space U+3000 and a byte-order mark.
pub fn trim_all(s: &str) -> &str {
    // Most values begin and end with a printable ASCII character or a CJK ideograph (lead byte
    // E4..E9, U+4000..U+9FFF), none of which is white space: those are returned without decoding
    // characters from both ends (trimming ran for every field of every ingested row).
    let b = s.as_bytes();
    let plain_lead = |c: u8| (0x21..0x7f).contains(&c) || (0xe4..=0xe9).contains(&c);
    let plain_start = b.first().is_some_and(|&c| plain_lead(c));
    let plain_end = match b {
        [.., last] if (0x21..0x7f).contains(last) => true,
        [.., lead, _, _] => (0xe4..=0xe9).contains(lead),
        _ => false,
    };
    if plain_start && plain_end {
        return s;
    }
    s.trim_matches(|c: char| c.is_whitespace() || c == '\u{feff}')
}

/// Replace full-width ASCII variants (U+FF01..U+FF5E) and the ideographic space by their half-width
/// forms, in place. Strings that hold none are not touched.
pub fn to_half_width(s: &mut String) {
    if s.is_ascii() {
        return;
    }
    if !s
        .chars()
        .any(|c| ('\u{FF01}'..='\u{FF5E}').contains(&c) || c == '\u{3000}')
    {
        return;
    }
    *s = s
        .chars()
        .map(|c| match c {
            '\u{FF01}'..='\u{FF5E}' => char::from_u32(c as u32 - 0xFEE0).unwrap_or(c),
            '\u{3000}' => ' ',
            _ => c,
        })
        .collect();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trimming_matches_the_character_rule() {
        fn slow(s: &str) -> &str {
            s.trim_matches(|c: char| c.is_whitespace() || c == '\u{feff}')
        }
        let samples = [
            "",
            " ",
            "a",
            " a ",
            "张三",
            "\u{3000}张三\u{3000}",
            "\u{feff}ABC",
            "ABC\u{a0}",
            "x\u{2003}",
            "\u{85}行政处罚",
            "川市监罚〔2025〕1号",
            "〔2025〕",
            "（案件编号 1）。",
            "\t1\n",
            "é",
            "é ",
            "张\u{3000}",
            "\u{205f}9",
            "9\u{2029}",
            "４",
            "\u{ff0c}",
            "乐\u{1680}",
        ];
        for s in samples {
            assert_eq!(trim_all(s), slow(s), "{s:?}");
        }
        // Every string of up to three characters over an alphabet of edge cases.
        let alphabet = [
            ' ', 'a', '张', '\u{3000}', '\u{a0}', '\u{feff}', '〔', '\u{2003}', '\u{85}',
        ];
        let mut strings = vec![String::new()];
        for _ in 0..3 {
            let longer: Vec<String> = strings
                .iter()
                .flat_map(|s| alphabet.iter().map(move |c| format!("{s}{c}")))
                .collect();
            strings.extend(longer);
        }
        for s in &strings {
            assert_eq!(trim_all(s), slow(s), "{s:?}");
        }
    }
}
