//! A minimal DER writer and reader: just what SM2 certificates, CRLs and PKCS#8 keys need.
//!
//! The reader never panics: every length is checked against the bytes that remain.

pub(crate) const SEQUENCE: u8 = 0x30;
pub(crate) const SET: u8 = 0x31;
pub(crate) const INTEGER: u8 = 0x02;
pub(crate) const BIT_STRING: u8 = 0x03;
pub(crate) const OCTET_STRING: u8 = 0x04;
pub(crate) const OID: u8 = 0x06;
pub(crate) const UTF8_STRING: u8 = 0x0c;
pub(crate) const PRINTABLE_STRING: u8 = 0x13;
pub(crate) const UTC_TIME: u8 = 0x17;
pub(crate) const GENERALIZED_TIME: u8 = 0x18;
pub(crate) const BOOLEAN: u8 = 0x01;

/// A tag-length-value with `content` as its value.
pub(crate) fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(content.len() + 6);
    out.push(tag);
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
    out.extend_from_slice(content);
    out
}

/// A SEQUENCE of already-encoded elements.
pub(crate) fn sequence(parts: &[&[u8]]) -> Vec<u8> {
    tlv(SEQUENCE, &parts.concat())
}

/// A context-specific constructed tag `[n]` around already-encoded content (EXPLICIT tagging).
pub(crate) fn explicit(n: u8, content: &[u8]) -> Vec<u8> {
    tlv(0xa0 | n, content)
}

/// A non-negative INTEGER from big-endian magnitude bytes.
pub(crate) fn unsigned_integer(magnitude: &[u8]) -> Vec<u8> {
    let skip = magnitude.iter().take_while(|b| **b == 0).count();
    let trimmed = &magnitude[skip.min(magnitude.len().saturating_sub(1))..];
    let mut content = Vec::with_capacity(trimmed.len() + 1);
    if trimmed.first().is_some_and(|b| b & 0x80 != 0) {
        content.push(0);
    }
    content.extend_from_slice(trimmed);
    if content.is_empty() {
        content.push(0);
    }
    tlv(INTEGER, &content)
}

/// A BIT STRING with no unused bits.
pub(crate) fn bit_string(bytes: &[u8]) -> Vec<u8> {
    let mut content = Vec::with_capacity(bytes.len() + 1);
    content.push(0);
    content.extend_from_slice(bytes);
    tlv(BIT_STRING, &content)
}

/// The content octets of an OBJECT IDENTIFIER given as dotted arcs (arcs up to 128 bits).
pub(crate) fn oid_content(arcs: &[u128]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut push_arc = |mut arc: u128| {
        let mut groups = vec![(arc & 0x7f) as u8];
        arc >>= 7;
        while arc > 0 {
            groups.push(0x80 | (arc & 0x7f) as u8);
            arc >>= 7;
        }
        groups.reverse();
        out.extend_from_slice(&groups);
    };
    push_arc(arcs[0] * 40 + arcs[1]);
    for arc in &arcs[2..] {
        push_arc(*arc);
    }
    out
}

/// An OBJECT IDENTIFIER TLV.
pub(crate) fn oid(arcs: &[u128]) -> Vec<u8> {
    tlv(OID, &oid_content(arcs))
}

/// A DER element read from a buffer.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Element<'a> {
    pub(crate) tag: u8,
    pub(crate) content: &'a [u8],
    /// The whole element: tag, length and content.
    pub(crate) raw: &'a [u8],
}

/// Reads consecutive DER elements from a buffer.
pub(crate) struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Self {
        Self { rest: bytes }
    }

    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        self.rest.is_empty()
    }

    /// The next element, or `None` when the bytes are exhausted or malformed.
    pub(crate) fn next(&mut self) -> Option<Element<'a>> {
        let bytes = self.rest;
        let (&tag, after_tag) = bytes.split_first()?;
        if tag & 0x1f == 0x1f {
            return None; // multi-byte tags are not used by anything we read
        }
        let (&first, after_len) = after_tag.split_first()?;
        let (len, after_len) = if first < 0x80 {
            (usize::from(first), after_len)
        } else {
            let count = usize::from(first & 0x7f);
            if count == 0 || count > 4 || after_len.len() < count {
                return None;
            }
            let len = after_len[..count]
                .iter()
                .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
            (len, &after_len[count..])
        };
        if after_len.len() < len {
            return None;
        }
        let header = bytes.len() - after_len.len();
        let element = Element {
            tag,
            content: &after_len[..len],
            raw: &bytes[..header + len],
        };
        self.rest = &after_len[len..];
        Some(element)
    }

    /// The next element if it has `tag`.
    pub(crate) fn expect(&mut self, tag: u8) -> Option<Element<'a>> {
        let element = self.next()?;
        (element.tag == tag).then_some(element)
    }

    /// The next element if it has `tag`, leaving the reader untouched otherwise.
    pub(crate) fn optional(&mut self, tag: u8) -> Option<Element<'a>> {
        let mut probe = Reader { rest: self.rest };
        let element = probe.next()?;
        if element.tag == tag {
            self.rest = probe.rest;
            Some(element)
        } else {
            None
        }
    }
}

/// Days since 1970-01-01 to a civil date (proleptic Gregorian), after Howard Hinnant.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// An X.509 Time for seconds since the Unix epoch: UTCTime up to 2049, GeneralizedTime after.
pub(crate) fn time(unix_seconds: u64) -> Vec<u8> {
    let secs = unix_seconds as i64;
    let (year, month, day) = civil_from_days(secs.div_euclid(86_400));
    let rem = secs.rem_euclid(86_400);
    let (h, m, s) = (rem / 3600, (rem % 3600) / 60, rem % 60);
    if (1950..2050).contains(&year) {
        let text = format!("{:02}{month:02}{day:02}{h:02}{m:02}{s:02}Z", year % 100);
        tlv(UTC_TIME, text.as_bytes())
    } else {
        let text = format!("{year:04}{month:02}{day:02}{h:02}{m:02}{s:02}Z");
        tlv(GENERALIZED_TIME, text.as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths_and_integers_encode_canonically() {
        assert_eq!(tlv(OCTET_STRING, &[7; 3]), [4, 3, 7, 7, 7]);
        assert_eq!(&tlv(OCTET_STRING, &[0; 200])[..3], [4, 0x81, 200]);
        assert_eq!(&tlv(OCTET_STRING, &[0; 300])[..4], [4, 0x82, 1, 44]);
        assert_eq!(unsigned_integer(&[0, 0, 0x80]), [2, 2, 0, 0x80]);
        assert_eq!(unsigned_integer(&[0, 0]), [2, 1, 0]);
        assert_eq!(
            oid(&[1, 2, 156, 10197, 1, 301]),
            [6, 8, 0x2a, 0x81, 0x1c, 0xcf, 0x55, 1, 0x82, 0x2d]
        );
    }

    #[test]
    fn times_follow_rfc5280() {
        assert_eq!(time(0), tlv(UTC_TIME, b"700101000000Z"));
        assert_eq!(time(1_798_761_599), tlv(UTC_TIME, b"261231235959Z"));
        assert_eq!(
            time(2_524_608_000),
            tlv(GENERALIZED_TIME, b"20500101000000Z")
        );
    }

    #[test]
    fn reader_refuses_lengths_beyond_the_buffer() {
        assert!(Reader::new(&[0x30, 0x05, 1, 2]).next().is_none());
        assert!(
            Reader::new(&[0x30, 0x84, 0xff, 0xff, 0xff, 0xff])
                .next()
                .is_none()
        );
        assert!(Reader::new(&[0x30]).next().is_none());
        let mut reader = Reader::new(&[0x02, 0x01, 0x05, 0x04, 0x00]);
        assert_eq!(reader.expect(INTEGER).unwrap().content, [5]);
        assert!(reader.optional(INTEGER).is_none());
        assert_eq!(reader.expect(OCTET_STRING).unwrap().content, [] as [u8; 0]);
        assert!(reader.is_empty());
    }
}
