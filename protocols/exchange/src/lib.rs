//! The batches of the federated flows (systems D2, D5, D7, M4), sans-IO: what a node sends
//! another when it shares its collection store up (共享), when the province returns governed data
//! down (回流), and when governance sends work orders (治理工单) back to a source.
//!
//! A batch is a run of [`FlowRecord`]s taken from the sender's feed between two [`Cursor`]s. Its
//! body is a checked binary encoding of the records; its [`BatchHeader`] names the flow, sender,
//! receiver, cursor range, row count and the SM3 digest of the body; the sender signs the header
//! with the SM2 key of its node certificate, which travels with the batch, so the same
//! [`SignedBatch`] verifies over the QUIC tunnel and as an offline file ([`seal_file`]: SM2 key
//! agreement to the recipient, SM4-GCM, the sender's signature). The batch id is derived from the
//! header, so a batch rebuilt after a crash has the id of the one it repeats and the receiver
//! applies it once.
//!
//! Nothing here does I/O or reads a clock; randomness comes in as an argument.

use serde::{Deserialize, Serialize};
use xy_gmtls::pki::{ParsedCertificate, verify_signed_by};
use xy_shangmi::envelope::{self, EnvelopeRandomness};
use xy_shangmi::sm2::{CERT_DISTID, SIGNATURE_LEN, Sm2PublicKey, Sm2SecretKey};

/// Errors of batch encoding and verification. Each names what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ExchangeError {
    /// The bytes are not a batch; the text names the part.
    #[error("malformed batch: {0}")]
    Malformed(String),
    /// The batch does not verify: digest, count, certificate or signature.
    #[error("batch verification failed: {0}")]
    Verification(String),
    /// A limit of the format was exceeded.
    #[error("batch too large: {0}")]
    TooLarge(String),
    /// Sealing or opening a batch file failed.
    #[error("batch file: {0}")]
    File(String),
}

/// Most records in one batch.
pub const MAX_ROWS: u64 = 100_000;
/// Largest body of one batch.
pub const MAX_BODY: usize = 256 << 20;
/// Largest single field of a record.
pub const MAX_FIELD: usize = 16 << 20;
/// Largest header (JSON).
const MAX_HEADER: usize = 64 * 1024;
/// Largest certificate.
const MAX_CERT: usize = 16 * 1024;
const MAGIC: &[u8; 4] = b"XYB1";
/// The body encoding of this version.
const ENCODING: &str = "lz4";
const SIGNING_CONTEXT: &[u8] = b"xinyong/exchange/v1/batch";
const FILE_CONTEXT: &[u8] = b"xinyong/exchange/v1/file";

/// A position in a sender's feed; feeds are ordered by (`major`, `minor`). The collection store's
/// feed is (data-log sequence of the batch that wrote the version, record id); the province's
/// feeds use `minor = 0`.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct Cursor {
    /// Major position.
    pub major: i64,
    /// Minor position within `major`.
    pub minor: i64,
}

impl Cursor {
    /// The start of every feed.
    pub const START: Cursor = Cursor { major: 0, minor: 0 };
}

impl std::fmt::Display for Cursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

/// The flows of the federation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Flow {
    /// Prefecture collection store → province raw store (原始库).
    Share,
    /// Province return-flow theme → prefecture return-flow store (回流库).
    Return,
    /// Province governance → the source node: work orders (治理工单) and their closing.
    Orders,
}

impl Flow {
    /// The name used in stores, logs and commands.
    pub fn as_str(self) -> &'static str {
        match self {
            Flow::Share => "share",
            Flow::Return => "return",
            Flow::Orders => "orders",
        }
    }

    /// The flow of a name.
    pub fn parse(name: &str) -> Option<Flow> {
        [Flow::Share, Flow::Return, Flow::Orders]
            .into_iter()
            .find(|f| f.as_str() == name)
    }
}

/// One record as it travels between nodes. Personal fields travel in clear only inside the
/// SM4-protected tunnel or a sealed batch file; each store seals them again with its own keys.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FlowRecord {
    /// Federation-wide id: `<origin jurisdiction>:<record id at the origin>`.
    pub gid: String,
    /// Version at the origin, from 1; a higher version replaces a lower one.
    pub version: i64,
    /// Category code (`xzcf`, `xzxk`, …).
    pub category: String,
    /// `active`, `inactive` or `withdrawn` (a tombstone: the origin retracted the record).
    pub status: String,
    /// Source unit USCC.
    pub source_unit: String,
    /// The subject's USCC, if any.
    pub subject_code: Option<String>,
    /// A natural person's identity number (personal data).
    pub subject_id: Option<String>,
    /// Decision document number.
    pub document_number: String,
    /// Decision date, `YYYY/MM/DD`.
    pub decision_date: Option<String>,
    /// Non-personal fields, a JSON object.
    pub payload: String,
    /// Personal fields, a JSON object (personal data).
    pub personal: Option<String>,
    /// Where the record has been, a JSON object (see the node's lineage).
    pub lineage: String,
}

/// A work order as it travels to its source: the record, the rules it failed, and whether it is
/// open or closed. Carried as a [`FlowRecord`] of category `work_order` whose payload is this.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkOrder {
    /// The order's id at the province.
    pub id: i64,
    /// The record it concerns.
    pub gid: String,
    /// The version that failed.
    pub version: i64,
    /// The record's category.
    pub category: String,
    /// The source unit that must fix it.
    pub source_unit: String,
    /// The decision document number (to find the row at the source).
    pub document_number: String,
    /// Failed rules: `(rule id, reason)`.
    pub faults: Vec<(String, String)>,
    /// `open` or `closed`.
    pub status: String,
}

/// What the sender signs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchHeader {
    /// The flow.
    pub flow: Flow,
    /// Sender's jurisdiction.
    pub sender: String,
    /// Receiver's jurisdiction.
    pub receiver: String,
    /// The feed position before the first record (exclusive).
    pub after: Cursor,
    /// The feed position of the last record (inclusive).
    pub through: Cursor,
    /// Records in the body.
    pub rows: u64,
    /// How the body is encoded: `lz4` (the records' encoding compressed as an LZ4 block after
    /// its length, `u32` big-endian).
    pub encoding: String,
    /// SM3 of the body, hex.
    pub digest: String,
    /// When the sender built the batch (Unix seconds).
    pub created_at: u64,
}

impl BatchHeader {
    /// The batch id: SM3 over flow, sender, receiver, range and digest, first 16 bytes in hex.
    /// The same records between the same cursors always get the same id.
    pub fn batch_id(&self) -> String {
        let mut h = xy_shangmi::Sm3Hasher::new();
        for part in [
            self.flow.as_str().as_bytes(),
            self.sender.as_bytes(),
            self.receiver.as_bytes(),
            &self.after.major.to_be_bytes(),
            &self.after.minor.to_be_bytes(),
            &self.through.major.to_be_bytes(),
            &self.through.minor.to_be_bytes(),
            self.digest.as_bytes(),
        ] {
            h.update(&(part.len() as u32).to_be_bytes());
            h.update(part);
        }
        hex(&h.finish()[..16])
    }
}

/// A batch: header, the sender's certificate and signature, and the body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedBatch {
    /// The signed header.
    pub header: BatchHeader,
    /// The header's exact JSON, as signed.
    pub header_json: Vec<u8>,
    /// SM2-with-SM3 signature (r ‖ s) over the context and the header JSON.
    pub signature: [u8; SIGNATURE_LEN],
    /// The sender's node certificate (DER).
    pub certificate: Vec<u8>,
    /// The encoded records.
    pub body: Vec<u8>,
}

/// The sender's signing identity.
pub struct Signer<'a> {
    /// Its jurisdiction.
    pub jurisdiction: &'a str,
    /// The SM2 key of its node certificate.
    pub key: &'a Sm2SecretKey,
    /// Its node certificate (DER).
    pub certificate: &'a [u8],
}

/// Build and sign a batch of `records` between `after` and `through`.
pub fn sign_batch(
    signer: &Signer<'_>,
    flow: Flow,
    receiver: &str,
    after: Cursor,
    through: Cursor,
    records: &[FlowRecord],
    created_at: u64,
) -> Result<SignedBatch, ExchangeError> {
    if records.len() as u64 > MAX_ROWS {
        return Err(ExchangeError::TooLarge(format!(
            "{} records (at most {MAX_ROWS})",
            records.len()
        )));
    }
    let plain = encode_records(records)?;
    let mut body = Vec::with_capacity(plain.len() / 2);
    body.extend_from_slice(&(plain.len() as u32).to_be_bytes());
    body.extend_from_slice(&lz4_flex::block::compress(&plain));
    let header = BatchHeader {
        flow,
        sender: signer.jurisdiction.to_owned(),
        receiver: receiver.to_owned(),
        after,
        through,
        rows: records.len() as u64,
        encoding: ENCODING.to_owned(),
        digest: hex(&xy_shangmi::sm3(&body)),
        created_at,
    };
    let header_json =
        serde_json::to_vec(&header).map_err(|e| ExchangeError::Malformed(e.to_string()))?;
    let signature = signer
        .key
        .sign(CERT_DISTID, &[SIGNING_CONTEXT, &header_json].concat())
        .map_err(|e| ExchangeError::Verification(format!("signing: {e}")))?;
    Ok(SignedBatch {
        header,
        header_json,
        signature,
        certificate: signer.certificate.to_vec(),
        body,
    })
}

impl SignedBatch {
    /// The batch id (see [`BatchHeader::batch_id`]).
    pub fn batch_id(&self) -> String {
        self.header.batch_id()
    }

    /// The batch's prefix: everything before the body (`MAGIC`, lengths, header, signature,
    /// certificate), so that a sender can stream the body after it.
    pub fn encode_prefix(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(
            4 + 12 + self.header_json.len() + SIGNATURE_LEN + self.certificate.len(),
        );
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&(self.header_json.len() as u32).to_be_bytes());
        out.extend_from_slice(&self.header_json);
        out.extend_from_slice(&self.signature);
        out.extend_from_slice(&(self.certificate.len() as u32).to_be_bytes());
        out.extend_from_slice(&self.certificate);
        out.extend_from_slice(&(self.body.len() as u64).to_be_bytes());
        out
    }

    /// The whole batch as bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = self.encode_prefix();
        out.extend_from_slice(&self.body);
        out
    }

    /// Parse a batch; nothing is verified yet (see [`SignedBatch::verify`]).
    pub fn decode(bytes: &[u8]) -> Result<SignedBatch, ExchangeError> {
        let mut r = Reader(bytes);
        if r.take(4, "magic")? != MAGIC {
            return Err(ExchangeError::Malformed(
                "not a xinyong batch (magic)".into(),
            ));
        }
        let header_len = r.u32("header length")? as usize;
        if header_len > MAX_HEADER {
            return Err(ExchangeError::TooLarge(format!(
                "header of {header_len} bytes"
            )));
        }
        let header_json = r.take(header_len, "header")?.to_vec();
        let header: BatchHeader = serde_json::from_slice(&header_json)
            .map_err(|e| ExchangeError::Malformed(format!("header: {e}")))?;
        let mut signature = [0u8; SIGNATURE_LEN];
        signature.copy_from_slice(r.take(SIGNATURE_LEN, "signature")?);
        let cert_len = r.u32("certificate length")? as usize;
        if cert_len > MAX_CERT {
            return Err(ExchangeError::TooLarge(format!(
                "certificate of {cert_len} bytes"
            )));
        }
        let certificate = r.take(cert_len, "certificate")?.to_vec();
        let body_len = r.u64("body length")?;
        if body_len > MAX_BODY as u64 {
            return Err(ExchangeError::TooLarge(format!("body of {body_len} bytes")));
        }
        let body = r.take(body_len as usize, "body")?.to_vec();
        if !r.0.is_empty() {
            return Err(ExchangeError::Malformed(format!(
                "{} bytes after the body",
                r.0.len()
            )));
        }
        Ok(SignedBatch {
            header,
            header_json,
            signature,
            certificate,
            body,
        })
    }

    /// Verify the batch against the trust anchors (DER CA certificates): the certificate was issued
    /// by one of them and names the header's sender; the signature verifies under its key; the
    /// body's digest and row count match the header. Returns the records.
    pub fn verify(&self, anchors: &[&[u8]]) -> Result<Vec<FlowRecord>, ExchangeError> {
        let fail = |m: String| ExchangeError::Verification(m);
        let cert = ParsedCertificate::parse(&self.certificate)
            .map_err(|e| fail(format!("sender certificate: {e}")))?;
        if !anchors
            .iter()
            .any(|a| verify_signed_by(&self.certificate, a).is_ok())
        {
            return Err(fail(
                "the sender certificate is not issued by a trusted CA".into(),
            ));
        }
        match &cert.identity {
            Some(id) if id.jurisdiction == self.header.sender => {}
            Some(id) => {
                return Err(fail(format!(
                    "the certificate is {}'s, the batch claims to come from {}",
                    id.jurisdiction, self.header.sender
                )));
            }
            None => return Err(fail("the sender certificate names no jurisdiction".into())),
        }
        cert.public_key
            .verify(
                CERT_DISTID,
                &[SIGNING_CONTEXT, &self.header_json].concat(),
                &self.signature,
            )
            .map_err(|_| fail("the sender's signature does not verify".into()))?;
        let digest = hex(&xy_shangmi::sm3(&self.body));
        if digest != self.header.digest {
            return Err(fail(format!(
                "body digest {digest} differs from the signed {}",
                self.header.digest
            )));
        }
        if self.header.encoding != ENCODING {
            return Err(ExchangeError::Malformed(format!(
                "body encoding {:?} (this node reads {ENCODING})",
                self.header.encoding
            )));
        }
        let records = decode_records(&decompress_body(&self.body)?)?;
        if records.len() as u64 != self.header.rows {
            return Err(fail(format!(
                "{} records in the body, {} signed",
                records.len(),
                self.header.rows
            )));
        }
        if self.header.through < self.header.after {
            return Err(fail(format!(
                "cursor range {}..{} runs backwards",
                self.header.after, self.header.through
            )));
        }
        Ok(records)
    }
}

/// Undo the body's compression, refusing a declared size above [`MAX_BODY`] before allocating.
fn decompress_body(body: &[u8]) -> Result<Vec<u8>, ExchangeError> {
    let Some((length, block)) = body.split_first_chunk::<4>() else {
        return Err(ExchangeError::Malformed(
            "body shorter than its length".into(),
        ));
    };
    let length = u32::from_be_bytes(*length) as usize;
    if length > MAX_BODY {
        return Err(ExchangeError::TooLarge(format!(
            "records of {length} bytes"
        )));
    }
    let plain = lz4_flex::block::decompress(block, length)
        .map_err(|e| ExchangeError::Malformed(format!("body: {e}")))?;
    if plain.len() != length {
        return Err(ExchangeError::Malformed(format!(
            "body holds {} bytes of records, {length} declared",
            plain.len()
        )));
    }
    Ok(plain)
}

/// Seal a batch as a file for offline transfer (file sharing mode): SM2 key agreement to the
/// recipient's certificate key, SM4-GCM, signed by the sender.
pub fn seal_file(
    batch: &SignedBatch,
    sender: &Sm2SecretKey,
    recipient: &Sm2PublicKey,
    randomness: &EnvelopeRandomness,
) -> Result<Vec<u8>, ExchangeError> {
    envelope::seal(sender, recipient, &batch.encode(), FILE_CONTEXT, randomness)
        .map_err(|e| ExchangeError::File(e.to_string()))
}

/// Open a batch file sealed for `recipient`. The envelope's sender key must be the key of the
/// certificate inside the batch; verify the batch itself with [`SignedBatch::verify`].
pub fn open_file(recipient: &Sm2SecretKey, file: &[u8]) -> Result<SignedBatch, ExchangeError> {
    let claimed = envelope::claimed_sender(file).map_err(|e| ExchangeError::File(e.to_string()))?;
    let plain = envelope::open(recipient, &claimed, file, FILE_CONTEXT)
        .map_err(|e| ExchangeError::File(e.to_string()))?;
    let batch = SignedBatch::decode(&plain)?;
    let cert = ParsedCertificate::parse(&batch.certificate)
        .map_err(|e| ExchangeError::File(format!("sender certificate: {e}")))?;
    if cert.public_key != claimed {
        return Err(ExchangeError::File(
            "the file was sealed by a key other than the batch's certificate".into(),
        ));
    }
    Ok(batch)
}

const NONE: u32 = u32::MAX;

fn put_str(out: &mut Vec<u8>, s: &str) -> Result<(), ExchangeError> {
    if s.len() > MAX_FIELD {
        return Err(ExchangeError::TooLarge(format!(
            "a field of {} bytes",
            s.len()
        )));
    }
    out.extend_from_slice(&(s.len() as u32).to_be_bytes());
    out.extend_from_slice(s.as_bytes());
    Ok(())
}

fn put_opt(out: &mut Vec<u8>, s: &Option<String>) -> Result<(), ExchangeError> {
    match s {
        Some(s) => put_str(out, s),
        None => {
            out.extend_from_slice(&NONE.to_be_bytes());
            Ok(())
        }
    }
}

/// Encode records: per record, the version (`i64`) then each text field as a `u32` length and
/// UTF-8 bytes (`u32::MAX` for an absent optional field).
pub fn encode_records(records: &[FlowRecord]) -> Result<Vec<u8>, ExchangeError> {
    let mut out = Vec::with_capacity(records.iter().map(|r| r.payload.len() + 256).sum());
    for r in records {
        out.extend_from_slice(&r.version.to_be_bytes());
        put_str(&mut out, &r.gid)?;
        put_str(&mut out, &r.category)?;
        put_str(&mut out, &r.status)?;
        put_str(&mut out, &r.source_unit)?;
        put_opt(&mut out, &r.subject_code)?;
        put_opt(&mut out, &r.subject_id)?;
        put_str(&mut out, &r.document_number)?;
        put_opt(&mut out, &r.decision_date)?;
        put_str(&mut out, &r.payload)?;
        put_opt(&mut out, &r.personal)?;
        put_str(&mut out, &r.lineage)?;
        if out.len() > MAX_BODY {
            return Err(ExchangeError::TooLarge(format!(
                "more than {MAX_BODY} bytes"
            )));
        }
    }
    Ok(out)
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], ExchangeError> {
        if self.0.len() < n {
            return Err(ExchangeError::Malformed(format!("truncated {what}")));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }
    fn u32(&mut self, what: &str) -> Result<u32, ExchangeError> {
        Ok(u32::from_be_bytes(
            self.take(4, what)?.try_into().expect("4 bytes"),
        ))
    }
    fn u64(&mut self, what: &str) -> Result<u64, ExchangeError> {
        Ok(u64::from_be_bytes(
            self.take(8, what)?.try_into().expect("8 bytes"),
        ))
    }
    fn opt(&mut self, what: &str) -> Result<Option<String>, ExchangeError> {
        let len = self.u32(what)?;
        if len == NONE {
            return Ok(None);
        }
        let len = len as usize;
        if len > MAX_FIELD {
            return Err(ExchangeError::TooLarge(format!("{what} of {len} bytes")));
        }
        let bytes = self.take(len, what)?;
        simdutf8::basic::from_utf8(bytes)
            .map(|s| Some(s.to_owned()))
            .map_err(|_| ExchangeError::Malformed(format!("{what} is not UTF-8")))
    }
    fn text(&mut self, what: &str) -> Result<String, ExchangeError> {
        self.opt(what)?
            .ok_or_else(|| ExchangeError::Malformed(format!("{what} is absent")))
    }
}

/// Decode records encoded by [`encode_records`]; refuses truncation, bad UTF-8, oversized
/// fields, an empty gid and more than [`MAX_ROWS`] records.
pub fn decode_records(body: &[u8]) -> Result<Vec<FlowRecord>, ExchangeError> {
    let mut r = Reader(body);
    let mut records = Vec::new();
    while !r.0.is_empty() {
        if records.len() as u64 >= MAX_ROWS {
            return Err(ExchangeError::TooLarge(format!(
                "more than {MAX_ROWS} records"
            )));
        }
        let n = records.len() + 1;
        let version = r.u64("version")? as i64;
        let record = FlowRecord {
            version,
            gid: r.text("gid")?,
            category: r.text("category")?,
            status: r.text("status")?,
            source_unit: r.text("source unit")?,
            subject_code: r.opt("subject code")?,
            subject_id: r.opt("subject id")?,
            document_number: r.text("document number")?,
            decision_date: r.opt("decision date")?,
            payload: r.text("payload")?,
            personal: r.opt("personal fields")?,
            lineage: r.text("lineage")?,
        };
        if record.gid.is_empty() || record.version < 1 {
            return Err(ExchangeError::Malformed(format!(
                "record {n}: empty gid or version below 1"
            )));
        }
        records.push(record);
    }
    Ok(records)
}

/// Hex of bytes (lower case).
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[(b >> 4) as usize] as char);
        s.push(DIGITS[(b & 15) as usize] as char);
    }
    s
}

#[cfg(test)]
mod tests;
