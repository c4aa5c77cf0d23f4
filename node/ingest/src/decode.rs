//! Text encodings of department files: UTF-8 (with or without BOM), UTF-16 with BOM, and GBK
//! (decoded as GB18030, its superset). Decoding streams: memory does not grow with the file.

use std::io::{self, Read};

use encoding_rs::{CoderResult, Decoder, Encoding, GB18030, UTF_8};

/// How many bytes are sniffed to choose between UTF-8 and GBK.
const SNIFF: usize = 64 * 1024;

/// The encoding chosen for a file, and the reader that yields it as UTF-8.
pub(crate) struct Decoded<R> {
    pub(crate) encoding: &'static Encoding,
    pub(crate) reader: Utf8Reader<R>,
}

/// Sniff the encoding of `inner` and return a reader of UTF-8 bytes. A BOM decides; otherwise the
/// first 64 KiB must be valid UTF-8 (a sequence cut at the sniff boundary is allowed) or the file is
/// taken as GBK. Bytes that do not decode become U+FFFD, and rows holding one are rejected.
pub(crate) fn decode<R: Read>(mut inner: R) -> io::Result<Decoded<R>> {
    let mut head = Vec::with_capacity(SNIFF);
    (&mut inner).take(SNIFF as u64).read_to_end(&mut head)?;
    let (encoding, bom_len) = match Encoding::for_bom(&head) {
        Some((enc, len)) => (enc, len),
        None => (
            if looks_like_utf8(&head) {
                UTF_8
            } else {
                GB18030
            },
            0,
        ),
    };
    head.drain(..bom_len);
    let decoder = if encoding == UTF_8 {
        None
    } else {
        Some(encoding.new_decoder_without_bom_handling())
    };
    Ok(Decoded {
        encoding,
        reader: Utf8Reader {
            inner,
            pending: head,
            pending_pos: 0,
            decoder,
            out: Vec::new(),
            out_pos: 0,
            eof: false,
        },
    })
}

/// Whether sniffed bytes are UTF-8, judged line by line: every line with non-ASCII text is valid
/// UTF-8, or such lines outnumber the invalid ones at least three to one (a UTF-8 file with a stray
/// GBK row stays UTF-8, and that row is rejected; GBK text almost never forms valid UTF-8).
fn looks_like_utf8(head: &[u8]) -> bool {
    let mut valid_lines = 0usize;
    let mut invalid_lines = 0usize;
    let mut lines = head.split(|&b| b == b'\n').peekable();
    while let Some(line) = lines.next() {
        if line.is_ascii() {
            continue;
        }
        match std::str::from_utf8(line) {
            Ok(_) => valid_lines += 1,
            // The last line may be cut by the sniff window in the middle of a character.
            Err(e) if lines.peek().is_none() && e.error_len().is_none() => {}
            Err(_) => invalid_lines += 1,
        }
    }
    invalid_lines == 0 || valid_lines >= 3 * invalid_lines
}

/// A reader that yields UTF-8: UTF-8 input passes through unchanged (invalid bytes are caught per
/// field later), other encodings are decoded with replacement.
pub(crate) struct Utf8Reader<R> {
    inner: R,
    pending: Vec<u8>,
    pending_pos: usize,
    decoder: Option<Decoder>,
    out: Vec<u8>,
    out_pos: usize,
    eof: bool,
}

impl<R: Read> Read for Utf8Reader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let Some(decoder) = self.decoder.as_mut() else {
            if self.pending_pos < self.pending.len() {
                let n = buf.len().min(self.pending.len() - self.pending_pos);
                buf[..n].copy_from_slice(&self.pending[self.pending_pos..self.pending_pos + n]);
                self.pending_pos += n;
                return Ok(n);
            }
            return self.inner.read(buf);
        };
        loop {
            if self.out_pos < self.out.len() {
                let n = buf.len().min(self.out.len() - self.out_pos);
                buf[..n].copy_from_slice(&self.out[self.out_pos..self.out_pos + n]);
                self.out_pos += n;
                return Ok(n);
            }
            if self.eof {
                return Ok(0);
            }
            if self.pending_pos >= self.pending.len() {
                self.pending.resize(64 * 1024, 0);
                let n = self.inner.read(&mut self.pending)?;
                self.pending.truncate(n);
                self.pending_pos = 0;
                if n == 0 {
                    self.eof = true;
                }
            }
            let input = &self.pending[self.pending_pos..];
            self.out.clear();
            self.out_pos = 0;
            let cap = decoder
                .max_utf8_buffer_length(input.len())
                .unwrap_or(input.len() * 3 + 16);
            self.out.resize(cap.max(16), 0);
            let (result, read, written, _) = decoder.decode_to_utf8(input, &mut self.out, self.eof);
            self.pending_pos += read;
            self.out.truncate(written);
            debug_assert!(matches!(
                result,
                CoderResult::InputEmpty | CoderResult::OutputFull
            ));
        }
    }
}
