//! Text clean-up shared by the cleaning steps.

/// Trim ASCII and Unicode white space, including the full-width space U+3000 and a byte-order mark.
pub fn trim_all(s: &str) -> &str {
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
