//! Private credit query (system B3, 信易贷): an institution learns the records of the subjects it
//! asks about; the node learns at most one bucket of candidates per id (bucket mode) or nothing but
//! how many ids were asked (filter mode). Sans-IO: randomness comes in as an argument.
//!
//! The building block is the 2HashDH OPRF on Ristretto255, F_k(x) = SM3(domain ‖ x ‖ k·H(x)):
//! - The node holds k and evaluates F over its subject keys (统一社会信用代码) once, and again for
//!   each subject whose records change ([`LabelIndex`]). A subject's records (its *label*) are
//!   sealed with SM4-GCM under a key derived from F_k(subject) and filed under an 8-byte tag, also
//!   derived from F_k(subject).
//! - The institution sends H(x)·r for a random r; the node returns k·H(x)·r without learning x
//!   ([`OprfKey::evaluate`]); the institution removes r and derives the same tag and key
//!   ([`PrivateQuery`]).
//! - **Bucket mode**: the query names each id's bucket — a public hash of the id modulo the bucket
//!   count, which is chosen so that a bucket holds at least [`MIN_BUCKET`] subjects (a small bucket
//!   is answered together with the next ones until it does) — and the answer carries every entry
//!   of that bucket. The institution opens only entries whose key it can derive: those of its own
//!   ids.
//! - **Filter mode**: the institution keeps a [`FilterIndex`] — the node's tags, 8 bytes per
//!   subject, downloaded once as a snapshot and then as deltas by epoch — and the online query is
//!   the OPRF alone: the node learns the number of ids and nothing else, and the institution
//!   learns which of its ids the node holds records on (pre-screening). The records themselves
//!   come by bucket mode: a copy of every label would be gigabytes at ten million subjects, the
//!   tags are 80 MB.
//!
//! A sealed label is opaque without one online evaluation per guessed id, which the node counts,
//! audits and rate-limits. Labels are padded to a multiple of [`LABEL_PADDING`] bytes, so their
//! length reveals only a coarse size class.

use curve25519_dalek::scalar::Scalar;
use rayon::prelude::*;

use crate::PsiError;
use crate::group::{POINT_LEN, PsiGroup, Ristretto255};
use crate::pir::{
    BLOCK_BYTES, KEY_ID_LEN, MAX_BLOCKS, PirAnswer, PirDatabase, PirKeys, PirQuery, PirSecret,
    PirServerKeys,
};
use crate::reader::Reader;

/// Bytes of an entry's tag.
pub const TAG_LEN: usize = 8;
/// Fewest subjects a bucket-mode answer covers.
pub const MIN_BUCKET: usize = 1000;
/// Most ids in one query.
pub const MAX_QUERY_IDS: usize = 1000;
/// Labels are padded to a multiple of this many bytes.
pub const LABEL_PADDING: usize = 32;
/// Largest sealed label accepted (bytes).
pub const MAX_LABEL: usize = 1 << 20;
/// Protocol version of the query messages (2: bucket mode fetches its entries by PIR).
pub const QUERY_VERSION: u8 = 2;
/// Most PIR items in one fetch request (each is about 32 KB).
pub const MAX_FETCH_ITEMS: usize = 32;
/// Most blocks one fetch request may ask back (each is about 18 KB of answer).
pub const MAX_FETCH_BLOCKS: usize = 128;
/// Starts the error a fetch gets when its bucket changed after the directory was sent.
pub const LAYOUT_CHANGED: &str = "bucket layout changed";

const DOMAIN: &[u8] = b"xinyong/private-credit-query/v1";
const GCM_TAG: usize = 16;
/// tag ‖ version ‖ length of the sealed label.
const ENTRY_HEADER: usize = TAG_LEN + 8 + 4;

/// The node's OPRF key. Secret: it decides which sealed labels anybody can open.
#[derive(Clone)]
pub struct OprfKey(Scalar);

impl std::fmt::Debug for OprfKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OprfKey(..)")
    }
}

impl OprfKey {
    /// A key from 64 uniformly random bytes.
    pub fn from_random(bytes: &[u8; 64]) -> Self {
        Self(Ristretto255::scalar_from_random(bytes))
    }

    /// The key's 32-byte encoding (to store it sealed).
    pub fn to_bytes(&self) -> [u8; 32] {
        self.0.to_bytes()
    }

    /// A key from [`OprfKey::to_bytes`]; refuses non-canonical encodings and zero.
    pub fn from_bytes(bytes: &[u8; 32]) -> Result<Self, PsiError> {
        let scalar = Option::<Scalar>::from(Scalar::from_canonical_bytes(*bytes)).ok_or(
            PsiError::Malformed("the OPRF key is not a canonical scalar"),
        )?;
        if scalar == Scalar::ZERO {
            return Err(PsiError::Malformed("the OPRF key is zero"));
        }
        Ok(Self(scalar))
    }

    /// F_k(id), computed directly (the node's side).
    pub fn output(&self, id: &[u8]) -> OprfOutput {
        OprfOutput::finalize(
            id,
            &Ristretto255::encode(&(Ristretto255::hash_to_point(id) * self.0)),
        )
    }

    /// F_k(id) of a run of ids (the same outputs as [`OprfKey::output`]), computed the way the
    /// PSI computes its runs: hash-to-group and encodings sharing work across the run.
    pub fn outputs<E: AsRef<[u8]>>(&self, ids: &[E]) -> Vec<OprfOutput> {
        let points = Ristretto255::hash_to_points(ids);
        Ristretto255::mul_and_encode(&points, &self.0)
            .iter()
            .zip(ids)
            .map(|(encoded, id)| OprfOutput::finalize(id.as_ref(), encoded))
            .collect()
    }

    /// Evaluate blinded points from an institution, on all cores. Every point is validated
    /// first; an invalid one is refused, never multiplied.
    pub fn evaluate(&self, blinded: &[[u8; POINT_LEN]]) -> Result<Vec<[u8; POINT_LEN]>, PsiError> {
        let points = Ristretto255::decode_run(blinded.as_flattened())?;
        Ok(points
            .par_chunks(crate::RUN)
            .flat_map_iter(|run| Ristretto255::mul_and_encode(run, &self.0))
            .collect())
    }
}

/// An OPRF output: the secret from which a subject's tag and label key derive.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct OprfOutput([u8; 32]);

impl std::fmt::Debug for OprfOutput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OprfOutput(..)")
    }
}

impl OprfOutput {
    /// The output for `id` from the encoding of k·H(id).
    fn finalize(id: &[u8], encoded: &[u8; POINT_LEN]) -> Self {
        let mut h = xy_shangmi::Sm3Hasher::new();
        h.update(DOMAIN);
        h.update(&(id.len() as u32).to_be_bytes());
        h.update(id);
        h.update(encoded);
        Self(h.finish())
    }

    /// The tag an entry is filed under.
    pub fn tag(&self) -> [u8; TAG_LEN] {
        let mut tag = [0u8; TAG_LEN];
        tag.copy_from_slice(&xy_shangmi::derive_key(&self.0, "xinyong pcq tag")[..TAG_LEN]);
        tag
    }

    fn cipher(&self) -> xy_shangmi::Sm4Gcm {
        let key = xy_shangmi::derive_key(&self.0, "xinyong pcq label key");
        xy_shangmi::Sm4Gcm::new(&key[..16]).expect("a 16-byte key")
    }

    /// Seal a label as one encoded entry (tag ‖ version ‖ length ‖ SM4-GCM ciphertext ‖ GCM tag).
    /// `version` must change whenever the label does: it is the GCM nonce under this key.
    pub fn seal(&self, version: u64, label: &[u8]) -> Vec<u8> {
        let tag = self.tag();
        let padded_len = (4 + label.len()).div_ceil(LABEL_PADDING) * LABEL_PADDING;
        let mut out = Vec::with_capacity(ENTRY_HEADER + padded_len + GCM_TAG);
        out.extend_from_slice(&tag);
        out.extend_from_slice(&version.to_be_bytes());
        out.extend_from_slice(&((padded_len + GCM_TAG) as u32).to_be_bytes());
        let body = out.len();
        out.extend_from_slice(&(label.len() as u32).to_be_bytes());
        out.extend_from_slice(label);
        out.resize(body + padded_len, 0);
        let (head, plaintext) = out.split_at_mut(body);
        let gcm_tag =
            self.cipher()
                .encrypt_detached(&nonce(version), &head[..TAG_LEN + 8], plaintext);
        out.extend_from_slice(&gcm_tag);
        out
    }

    /// Open an entry sealed under this output.
    pub fn open(&self, entry: &EntryRef<'_>) -> Result<Vec<u8>, PsiError> {
        let bad = PsiError::Malformed("a sealed label does not open under its tag's key");
        if entry.tag != self.tag() || entry.sealed.len() < GCM_TAG + 4 {
            return Err(bad);
        }
        let mut aad = [0u8; TAG_LEN + 8];
        aad[..TAG_LEN].copy_from_slice(&entry.tag);
        aad[TAG_LEN..].copy_from_slice(&entry.version.to_be_bytes());
        let (body, gcm_tag) = entry.sealed.split_at(entry.sealed.len() - GCM_TAG);
        let mut plain = body.to_vec();
        let gcm_tag: [u8; GCM_TAG] = gcm_tag.try_into().map_err(|_| bad.clone())?;
        self.cipher()
            .decrypt_detached(&nonce(entry.version), &aad, &mut plain, &gcm_tag)
            .map_err(|_| bad.clone())?;
        let len = u32::from_be_bytes(plain[..4].try_into().map_err(|_| bad.clone())?) as usize;
        if len > plain.len() - 4 {
            return Err(bad);
        }
        plain.truncate(4 + len);
        plain.drain(..4);
        Ok(plain)
    }
}

fn nonce(version: u64) -> [u8; 12] {
    let mut nonce = [0u8; 12];
    nonce[..8].copy_from_slice(&version.to_be_bytes());
    nonce
}

/// An id's bucket: a public hash of the id modulo the bucket count.
pub fn bucket_of(id: &[u8], bucket_count: u32) -> u32 {
    let mut h = xy_shangmi::Sm3Hasher::new();
    h.update(DOMAIN);
    h.update(b"bucket");
    h.update(id);
    let digest = h.finish();
    u32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]]) % bucket_count.max(1)
}

/// The bucket count for `subjects` subjects: a mean of 1.25 × [`MIN_BUCKET`] per bucket, so that
/// nearly every bucket reaches the minimum on its own.
pub fn bucket_count_for(subjects: usize) -> u32 {
    (subjects / (MIN_BUCKET * 5 / 4)).clamp(1, u32::MAX as usize) as u32
}

/// One entry, borrowed from encoded bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EntryRef<'a> {
    /// The tag.
    pub tag: [u8; TAG_LEN],
    /// The label's version (the GCM nonce).
    pub version: u64,
    /// Ciphertext ‖ GCM tag (empty for a removal in a delta).
    pub sealed: &'a [u8],
}

impl EntryRef<'_> {
    fn write(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.tag);
        out.extend_from_slice(&self.version.to_be_bytes());
        out.extend_from_slice(&(self.sealed.len() as u32).to_be_bytes());
        out.extend_from_slice(self.sealed);
    }
}

/// The entries of encoded bytes, in order; stops with an error at the first malformed one.
pub fn entries(bytes: &[u8]) -> impl Iterator<Item = Result<EntryRef<'_>, PsiError>> {
    let mut rest = bytes;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let parsed = (|| {
            let mut r = Reader::new(rest);
            let tag: [u8; TAG_LEN] = r.array()?;
            let version = r.u64()?;
            let len = r.u32()? as usize;
            if len > MAX_LABEL {
                return Err(PsiError::Malformed("a sealed label beyond the limit"));
            }
            let sealed = r.bytes(len)?;
            Ok((
                EntryRef {
                    tag,
                    version,
                    sealed,
                },
                r.remaining(),
            ))
        })();
        match parsed {
            Ok((entry, remaining)) => {
                rest = remaining;
                Some(Ok(entry))
            }
            Err(e) => {
                rest = &[];
                Some(Err(e))
            }
        }
    })
}

/// The node's side: every subject's entry, by bucket, sorted by tag within a bucket.
pub struct LabelIndex {
    key: OprfKey,
    bucket_count: u32,
    buckets: Vec<Vec<u8>>,
    subjects: usize,
    epoch: u64,
    /// (epoch, bucket, tag) of every change, for filter deltas.
    changes: Vec<(u64, u32, [u8; TAG_LEN])>,
}

impl std::fmt::Debug for LabelIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LabelIndex")
            .field("bucket_count", &self.bucket_count)
            .field("subjects", &self.subjects)
            .field("epoch", &self.epoch)
            .finish_non_exhaustive()
    }
}

impl LabelIndex {
    /// Evaluate the OPRF over every subject (on all cores) and seal its label. `epoch` is the
    /// version of every label of this build (it must exceed any version sealed before under the
    /// same key). A subject listed twice keeps its last label.
    pub fn build(key: OprfKey, subjects: Vec<(Vec<u8>, Vec<u8>)>, epoch: u64) -> Self {
        let count = subjects.len();
        Self::build_in_chunks(key, count, std::iter::once(subjects), epoch)
    }

    /// [`LabelIndex::build`] over subjects that arrive in chunks (so that ten million labels
    /// never sit in memory twice); `expected` subjects set the bucket count. Each chunk is
    /// sealed on all cores and appended to its buckets; the buckets are then sorted by tag.
    pub fn build_in_chunks(
        key: OprfKey,
        expected: usize,
        chunks: impl IntoIterator<Item = Vec<(Vec<u8>, Vec<u8>)>>,
        epoch: u64,
    ) -> Self {
        let bucket_count = bucket_count_for(expected);
        let mut buckets = vec![Vec::new(); bucket_count as usize];
        for chunk in chunks {
            let sealed: Vec<(u32, Vec<u8>)> = chunk
                .par_chunks(crate::RUN)
                .flat_map_iter(|run| {
                    let ids: Vec<&[u8]> = run.iter().map(|(id, _)| id.as_slice()).collect();
                    key.outputs(&ids)
                        .into_iter()
                        .zip(run)
                        .map(|(output, (id, label))| {
                            (bucket_of(id, bucket_count), output.seal(epoch, label))
                        })
                        .collect::<Vec<_>>()
                })
                .collect();
            for (bucket, entry) in sealed {
                buckets[bucket as usize].extend_from_slice(&entry);
            }
        }
        // Sort each bucket by tag; of equal tags (the same subject twice) the last one stays.
        buckets.par_iter_mut().for_each(|bucket| {
            let mut list: Vec<(usize, EntryRef<'_>)> =
                entries(bucket).flatten().enumerate().collect();
            list.sort_by_key(|a| (a.1.tag, a.0));
            let mut sorted = Vec::with_capacity(bucket.len());
            for (i, (_, entry)) in list.iter().enumerate() {
                if list
                    .get(i + 1)
                    .is_none_or(|(_, next)| next.tag != entry.tag)
                {
                    entry.write(&mut sorted);
                }
            }
            *bucket = sorted;
        });
        let subjects = buckets.par_iter().map(|b| entries(b).count()).sum();
        Self {
            key,
            bucket_count,
            buckets,
            subjects,
            epoch,
            changes: Vec::new(),
        }
    }

    /// Buckets the ids are hashed into.
    pub fn bucket_count(&self) -> u32 {
        self.bucket_count
    }

    /// Subjects held.
    pub fn subjects(&self) -> usize {
        self.subjects
    }

    /// Bytes of sealed entries held.
    pub fn stored_bytes(&self) -> usize {
        self.buckets.iter().map(Vec::len).sum()
    }

    /// The epoch: raised by every change.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// Put or replace one subject's label (the OPRF is evaluated for this subject only).
    pub fn upsert(&mut self, id: &[u8], label: &[u8]) {
        self.epoch += 1;
        let output = self.key.output(id);
        let entry = output.seal(self.epoch, label);
        self.replace(id, output.tag(), Some(entry));
    }

    /// Remove one subject (its records were all withdrawn).
    pub fn remove(&mut self, id: &[u8]) {
        self.epoch += 1;
        let tag = self.key.output(id).tag();
        self.replace(id, tag, None);
    }

    fn replace(&mut self, id: &[u8], tag: [u8; TAG_LEN], entry: Option<Vec<u8>>) {
        let bucket = bucket_of(id, self.bucket_count);
        let old = std::mem::take(&mut self.buckets[bucket as usize]);
        let mut new = Vec::with_capacity(old.len() + entry.as_ref().map_or(0, Vec::len));
        let mut placed = false;
        let mut existed = false;
        // The bucket was written by this index: its entries parse.
        for e in entries(&old).flatten() {
            if !placed && e.tag >= tag {
                if let Some(entry) = &entry {
                    new.extend_from_slice(entry);
                }
                placed = true;
            }
            if e.tag == tag {
                existed = true;
            } else {
                e.write(&mut new);
            }
        }
        if !placed && let Some(entry) = &entry {
            new.extend_from_slice(entry);
        }
        self.buckets[bucket as usize] = new;
        match (existed, entry.is_some()) {
            (false, true) => self.subjects += 1,
            (true, false) => self.subjects -= 1,
            _ => {}
        }
        self.changes.push((self.epoch, bucket, tag));
    }

    /// Answer a query: evaluate the blinded points and, in bucket mode, attach each distinct
    /// bucket's directory (the bucket with the following ones when it holds fewer than
    /// [`MIN_BUCKET`] subjects; its entries themselves come by [`LabelIndex::fetch`]).
    pub fn answer(&self, request: &QueryRequest) -> Result<QueryResponse, PsiError> {
        if request.items.is_empty() || request.items.len() > MAX_QUERY_IDS {
            return Err(PsiError::Protocol(format!(
                "a query asks for 1 to {MAX_QUERY_IDS} ids, not {}",
                request.items.len()
            )));
        }
        let blinded: Vec<[u8; POINT_LEN]> = request.items.iter().map(|i| i.blinded).collect();
        let evaluated = self.key.evaluate(&blinded)?;
        let mut buckets = Vec::new();
        if request.mode == QueryMode::Bucket {
            if request.bucket_count != self.bucket_count {
                return Err(PsiError::Protocol(format!(
                    "the query was made for {} buckets; the node has {} (fetch the index info again)",
                    request.bucket_count, self.bucket_count
                )));
            }
            let mut asked: Vec<u32> = request.items.iter().map(|i| i.bucket).collect();
            asked.sort_unstable();
            asked.dedup();
            for bucket in asked {
                if bucket >= self.bucket_count {
                    return Err(PsiError::Protocol(format!(
                        "bucket {bucket} does not exist"
                    )));
                }
                buckets.push((bucket, self.blocks(bucket)?.directory));
            }
        }
        Ok(QueryResponse { evaluated, buckets })
    }

    /// Answer a bucket-mode fetch with the institution's PIR keys: each item's window of blocks
    /// of the bucket's layout, without learning which block was asked for.
    pub fn fetch(
        &self,
        request: &FetchRequest,
        keys: &PirServerKeys,
    ) -> Result<FetchResponse, PsiError> {
        if request.bucket_count != self.bucket_count || request.bucket >= self.bucket_count {
            return Err(PsiError::Protocol(format!(
                "bucket {} of {} does not exist; the node has {} buckets",
                request.bucket, request.bucket_count, self.bucket_count
            )));
        }
        let layout = self.blocks(request.bucket)?;
        if layout.directory.layout != request.layout {
            return Err(PsiError::Protocol(format!(
                "{LAYOUT_CHANGED}: the bucket changed since its directory was sent; ask again"
            )));
        }
        let width = layout.directory.width as usize;
        let blocks: Vec<&[u8]> = layout.blocks.iter().map(Vec::as_slice).collect();
        // Prepared once for every item of the request.
        let database = PirDatabase::new(&blocks)?;
        let answers = request
            .items
            .iter()
            .map(|item| {
                let (first, count) = (item.first as usize, item.count as usize);
                if count == 0 || first + count > width {
                    return Err(PsiError::Protocol(format!(
                        "blocks {first}..{} asked; the bucket's width is {width}",
                        first + count
                    )));
                }
                keys.answer(&item.query, &database, first, count)
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(FetchResponse { answers })
    }

    /// Bucket `bucket`'s candidates laid out in PIR blocks: entries sorted by tag, packed whole
    /// into blocks of [`BLOCK_BYTES`] (a block starts with the count of entries that start in
    /// it); an entry longer than a block starts a block and runs on over the next ones.
    fn blocks(&self, bucket: u32) -> Result<BucketBlocks, PsiError> {
        let candidates = self.candidates(bucket);
        let mut list: Vec<EntryRef<'_>> = entries(&candidates).flatten().collect();
        list.sort_unstable_by_key(|e| e.tag);
        let mut blocks: Vec<Vec<u8>> = Vec::new();
        let mut first_tags = Vec::new();
        let mut continued = Vec::new();
        let mut width = 1usize;
        for entry in &list {
            let mut bytes = Vec::with_capacity(ENTRY_HEADER + entry.sealed.len());
            entry.write(&mut bytes);
            // The last block takes more entries unless it ends a long entry's run.
            if continued.last() == Some(&false) {
                let block = blocks.last_mut().expect("an open block exists");
                if block.len() + bytes.len() <= BLOCK_BYTES {
                    block.extend_from_slice(&bytes);
                    let count = u16::from_be_bytes([block[0], block[1]]) + 1;
                    block[..2].copy_from_slice(&count.to_be_bytes());
                    continue;
                }
            }
            let mut run = Vec::with_capacity(2 + bytes.len());
            run.extend_from_slice(&1u16.to_be_bytes());
            run.extend_from_slice(&bytes);
            let span = run.len().div_ceil(BLOCK_BYTES);
            width = width.max(span);
            for (i, chunk) in run.chunks(BLOCK_BYTES).enumerate() {
                blocks.push(chunk.to_vec());
                first_tags.push(entry.tag);
                continued.push(i > 0);
            }
        }
        if blocks.is_empty() {
            blocks.push(vec![0, 0]);
            first_tags.push([0; TAG_LEN]);
            continued.push(false);
        }
        if blocks.len() > MAX_BLOCKS {
            return Err(PsiError::Protocol(format!(
                "bucket {bucket} needs {} blocks; a query reaches {MAX_BLOCKS}",
                blocks.len()
            )));
        }
        let mut directory = BucketDirectory {
            layout: 0,
            width: width as u32,
            first_tags,
            continued,
        };
        directory.layout = directory.digest();
        Ok(BucketBlocks { blocks, directory })
    }

    /// Subjects a bucket-mode answer for `bucket` covers: the candidates the node may learn an
    /// id is among.
    pub fn covered(&self, bucket: u32) -> usize {
        entries(&self.candidates(bucket)).count()
    }

    /// Bucket `bucket`'s entries, followed by the next buckets' until at least [`MIN_BUCKET`]
    /// subjects are covered (or all of them).
    fn candidates(&self, bucket: u32) -> Vec<u8> {
        let mut out = Vec::new();
        let mut covered = 0;
        for step in 0..self.bucket_count {
            let b = (bucket + step) % self.bucket_count;
            let bytes = &self.buckets[b as usize];
            covered += entries(bytes).count();
            out.extend_from_slice(bytes);
            if covered >= MIN_BUCKET {
                break;
            }
        }
        out
    }

    /// Every subject's tag (a full filter snapshot), or what changed after `since` (a delta:
    /// tags added and tags removed).
    pub fn snapshot(&self, since: Option<u64>) -> Snapshot {
        self.snapshot_page(since, 0, usize::MAX).0
    }

    /// One page of [`LabelIndex::snapshot`]: whole buckets from `from_bucket` on, stopping once
    /// the page holds `max_tags` tags (at least one bucket); returns the next page's first
    /// bucket, or `None` after the last. Changes made between pages reach the institution with
    /// its next delta (the page's epoch is taken before them).
    pub fn snapshot_page(
        &self,
        since: Option<u64>,
        from_bucket: u32,
        max_tags: usize,
    ) -> (Snapshot, Option<u32>) {
        let mut added = Vec::new();
        let mut removed = Vec::new();
        let mut next = None;
        let changed: Vec<(u32, [u8; TAG_LEN])> = match since {
            None => Vec::new(),
            Some(since) => {
                let mut changed: Vec<(u32, [u8; TAG_LEN])> = self
                    .changes
                    .iter()
                    .filter(|(epoch, bucket, _)| *epoch > since && *bucket >= from_bucket)
                    .map(|(_, bucket, tag)| (*bucket, *tag))
                    .collect();
                changed.sort_unstable();
                changed.dedup();
                changed
            }
        };
        for bucket in from_bucket..self.bucket_count {
            if added.len() + removed.len() >= max_tags {
                next = Some(bucket);
                break;
            }
            let bucket_entries = &self.buckets[bucket as usize];
            if since.is_none() {
                added.extend(entries(bucket_entries).flatten().map(|e| e.tag));
                continue;
            }
            let start = changed.partition_point(|(b, _)| *b < bucket);
            let end = changed.partition_point(|(b, _)| *b <= bucket);
            for (_, tag) in &changed[start..end] {
                if entries(bucket_entries).flatten().any(|e| e.tag == *tag) {
                    added.push(*tag);
                } else {
                    removed.push(*tag);
                }
            }
        }
        let snapshot = Snapshot {
            epoch: self.epoch,
            bucket_count: self.bucket_count,
            subjects: self.subjects as u64,
            delta: since.is_some(),
            added,
            removed,
        };
        (snapshot, next)
    }
}

/// A filter snapshot or delta, as it travels: tags only (8 bytes per subject).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Snapshot {
    /// The node's epoch when it was made.
    pub epoch: u64,
    /// The node's bucket count.
    pub bucket_count: u32,
    /// Subjects the node holds.
    pub subjects: u64,
    /// Whether this is a delta.
    pub delta: bool,
    /// Tags present (all of them in a full snapshot).
    pub added: Vec<[u8; TAG_LEN]>,
    /// Tags removed (deltas only).
    pub removed: Vec<[u8; TAG_LEN]>,
}

const SNAPSHOT_MAGIC: &[u8; 4] = b"XPQS";
/// Version of the snapshot format (unchanged by bucket mode's PIR: filters kept on disk by
/// institutions stay readable).
const SNAPSHOT_VERSION: u8 = 1;
/// Most tags in one snapshot or delta (more than any node holds).
const MAX_SNAPSHOT_TAGS: usize = 1 << 31;

impl Snapshot {
    /// Bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(42 + (self.added.len() + self.removed.len()) * TAG_LEN);
        out.extend_from_slice(SNAPSHOT_MAGIC);
        out.push(SNAPSHOT_VERSION);
        out.push(u8::from(self.delta));
        out.extend_from_slice(&self.epoch.to_be_bytes());
        out.extend_from_slice(&self.bucket_count.to_be_bytes());
        out.extend_from_slice(&self.subjects.to_be_bytes());
        for list in [&self.added, &self.removed] {
            out.extend_from_slice(&(list.len() as u64).to_be_bytes());
            for tag in list {
                out.extend_from_slice(tag);
            }
        }
        out
    }

    /// Parse [`Snapshot::encode`]'s bytes.
    pub fn decode(bytes: &[u8]) -> Result<Self, PsiError> {
        let mut r = Reader::new(bytes);
        r.header(
            SNAPSHOT_MAGIC,
            SNAPSHOT_VERSION,
            "not a filter snapshot",
            "unknown snapshot version",
        )?;
        let delta = match r.u8()? {
            0 => false,
            1 => true,
            _ => return Err(PsiError::Malformed("unknown snapshot kind")),
        };
        let epoch = r.u64()?;
        let bucket_count = r.u32()?;
        let subjects = r.u64()?;
        let mut lists = [Vec::new(), Vec::new()];
        for list in &mut lists {
            let count = usize::try_from(r.u64()?)
                .ok()
                .filter(|c| *c <= MAX_SNAPSHOT_TAGS)
                .ok_or(PsiError::Malformed("a snapshot beyond the limit"))?;
            let tags = r.bytes(
                count
                    .checked_mul(TAG_LEN)
                    .ok_or(PsiError::Malformed("a snapshot beyond the limit"))?,
            )?;
            list.extend(tags.chunks_exact(TAG_LEN).map(|c| {
                let mut tag = [0u8; TAG_LEN];
                tag.copy_from_slice(c);
                tag
            }));
        }
        r.finish()?;
        let [added, removed] = lists;
        if !delta && !removed.is_empty() {
            return Err(PsiError::Malformed("a full snapshot removes nothing"));
        }
        Ok(Self {
            epoch,
            bucket_count,
            subjects,
            delta,
            added,
            removed,
        })
    }
}

/// The institution's filter (filter mode): the node's tags, sorted. 8 bytes per subject.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct FilterIndex {
    epoch: u64,
    bucket_count: u32,
    tags: Vec<[u8; TAG_LEN]>,
}

impl FilterIndex {
    /// The filter of a full snapshot (or of pages appended into one).
    pub fn from_snapshot(snapshot: &Snapshot) -> Result<Self, PsiError> {
        if snapshot.delta {
            return Err(PsiError::Protocol(
                "a delta needs the full snapshot first".into(),
            ));
        }
        let mut tags = snapshot.added.clone();
        tags.sort_unstable();
        tags.dedup();
        Ok(Self {
            epoch: snapshot.epoch,
            bucket_count: snapshot.bucket_count,
            tags,
        })
    }

    /// Apply a delta made after this filter's epoch (a full snapshot replaces the filter).
    pub fn apply(&mut self, delta: &Snapshot) -> Result<(), PsiError> {
        if !delta.delta {
            *self = Self::from_snapshot(delta)?;
            return Ok(());
        }
        let removed: std::collections::HashSet<&[u8; TAG_LEN]> = delta.removed.iter().collect();
        self.tags.retain(|t| !removed.contains(t));
        self.tags.extend_from_slice(&delta.added);
        self.tags.sort_unstable();
        self.tags.dedup();
        self.epoch = delta.epoch;
        self.bucket_count = delta.bucket_count;
        Ok(())
    }

    /// The filter as a full snapshot (to keep it on disk between runs).
    pub fn to_snapshot(&self) -> Snapshot {
        Snapshot {
            epoch: self.epoch,
            bucket_count: self.bucket_count,
            subjects: self.tags.len() as u64,
            delta: false,
            added: self.tags.clone(),
            removed: Vec::new(),
        }
    }

    /// The epoch this filter is at (ask the node for the delta after it).
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// The node's bucket count when the snapshot was made.
    pub fn bucket_count(&self) -> u32 {
        self.bucket_count
    }

    /// Subjects held.
    pub fn len(&self) -> usize {
        self.tags.len()
    }

    /// Whether it holds nothing.
    pub fn is_empty(&self) -> bool {
        self.tags.is_empty()
    }

    /// Whether the node holds the subject with this tag.
    pub fn contains(&self, tag: &[u8; TAG_LEN]) -> bool {
        self.tags.binary_search(tag).is_ok()
    }
}

/// How a query finds its entries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum QueryMode {
    /// The node answers with each id's bucket.
    Bucket,
    /// The institution looks up its own [`FilterIndex`].
    Filter,
}

/// One blinded id.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QueryItem {
    /// Its bucket (bucket mode; 0 in filter mode).
    pub bucket: u32,
    /// H(id)·r.
    pub blinded: [u8; POINT_LEN],
}

/// Institution → node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueryRequest {
    /// Mode.
    pub mode: QueryMode,
    /// The bucket count the buckets were computed for (bucket mode).
    pub bucket_count: u32,
    /// The blinded ids.
    pub items: Vec<QueryItem>,
}

/// Node → institution.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueryResponse {
    /// k·H(id)·r for each item, in order.
    pub evaluated: Vec<[u8; POINT_LEN]>,
    /// Bucket mode: each distinct asked bucket and its directory.
    pub buckets: Vec<(u32, BucketDirectory)>,
}

const REQUEST_MAGIC: &[u8; 4] = b"XPQ?";
const RESPONSE_MAGIC: &[u8; 4] = b"XPQ!";

impl QueryRequest {
    /// Bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(14 + self.items.len() * (POINT_LEN + 4));
        out.extend_from_slice(REQUEST_MAGIC);
        out.push(QUERY_VERSION);
        out.push(match self.mode {
            QueryMode::Bucket => 0,
            QueryMode::Filter => 1,
        });
        out.extend_from_slice(&self.bucket_count.to_be_bytes());
        out.extend_from_slice(&(self.items.len() as u32).to_be_bytes());
        for item in &self.items {
            if self.mode == QueryMode::Bucket {
                out.extend_from_slice(&item.bucket.to_be_bytes());
            }
            out.extend_from_slice(&item.blinded);
        }
        out
    }

    /// Parse; refuses more than [`MAX_QUERY_IDS`] ids and trailing bytes.
    pub fn decode(bytes: &[u8]) -> Result<Self, PsiError> {
        let mut r = Reader::new(bytes);
        r.header(
            REQUEST_MAGIC,
            QUERY_VERSION,
            "not a private query",
            "unknown query version",
        )?;
        let mode = match r.u8()? {
            0 => QueryMode::Bucket,
            1 => QueryMode::Filter,
            _ => return Err(PsiError::Malformed("unknown query mode")),
        };
        let bucket_count = r.u32()?;
        let count = r.u32()? as usize;
        if count > MAX_QUERY_IDS {
            return Err(PsiError::Protocol(format!(
                "a query asks for at most {MAX_QUERY_IDS} ids, not {count}"
            )));
        }
        let mut items = Vec::with_capacity(count);
        for _ in 0..count {
            let bucket = if mode == QueryMode::Bucket {
                r.u32()?
            } else {
                0
            };
            items.push(QueryItem {
                bucket,
                blinded: r.array()?,
            });
        }
        r.finish()?;
        Ok(Self {
            mode,
            bucket_count,
            items,
        })
    }
}

impl QueryResponse {
    /// Bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(RESPONSE_MAGIC);
        out.push(QUERY_VERSION);
        out.extend_from_slice(&(self.evaluated.len() as u32).to_be_bytes());
        for point in &self.evaluated {
            out.extend_from_slice(point);
        }
        out.extend_from_slice(&(self.buckets.len() as u32).to_be_bytes());
        for (bucket, directory) in &self.buckets {
            out.extend_from_slice(&bucket.to_be_bytes());
            directory.write(&mut out);
        }
        out
    }

    /// Parse, checking every entry.
    pub fn decode(bytes: &[u8]) -> Result<Self, PsiError> {
        let mut r = Reader::new(bytes);
        r.header(
            RESPONSE_MAGIC,
            QUERY_VERSION,
            "not a private query answer",
            "unknown answer version",
        )?;
        let count = r.u32()? as usize;
        if count > MAX_QUERY_IDS {
            return Err(PsiError::Malformed(
                "more evaluated points than a query may ask",
            ));
        }
        let mut evaluated = Vec::with_capacity(count);
        for _ in 0..count {
            evaluated.push(r.array()?);
        }
        let bucket_count = r.u32()? as usize;
        if bucket_count > MAX_QUERY_IDS {
            return Err(PsiError::Malformed("more buckets than a query may ask"));
        }
        let mut buckets = Vec::with_capacity(bucket_count);
        for _ in 0..bucket_count {
            let bucket = r.u32()?;
            buckets.push((bucket, BucketDirectory::read(&mut r)?));
        }
        r.finish()?;
        Ok(Self { evaluated, buckets })
    }
}

/// A bucket's PIR layout as the institution sees it: which block each entry starts in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BucketDirectory {
    /// Digest of the layout; a fetch names it, so that a bucket changed in between is noticed.
    pub layout: u64,
    /// Blocks fetched per id: the most blocks one entry spans (1 unless a label exceeds 4 KiB).
    pub width: u32,
    /// The tag of the entry each block starts with (or continues).
    pub first_tags: Vec<[u8; TAG_LEN]>,
    /// Whether each block continues an entry from the block before.
    pub continued: Vec<bool>,
}

impl BucketDirectory {
    /// SM3 of everything but the digest itself, shortened.
    fn digest(&self) -> u64 {
        let mut body = Vec::new();
        self.write_body(&mut body);
        let digest = xy_shangmi::sm3(&body);
        u64::from_be_bytes(digest[..8].try_into().expect("8 bytes"))
    }

    fn write(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.layout.to_be_bytes());
        self.write_body(out);
    }

    fn write_body(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.width.to_be_bytes());
        out.extend_from_slice(&(self.first_tags.len() as u32).to_be_bytes());
        for tag in &self.first_tags {
            out.extend_from_slice(tag);
        }
        let mut bits = vec![0u8; self.continued.len().div_ceil(8)];
        for (i, _) in self.continued.iter().enumerate().filter(|(_, c)| **c) {
            bits[i / 8] |= 1 << (i % 8);
        }
        out.extend_from_slice(&bits);
    }

    fn read(r: &mut Reader<'_>) -> Result<Self, PsiError> {
        let layout = r.u64()?;
        let width = r.u32()?;
        let blocks = r.u32()? as usize;
        if blocks == 0 || blocks > MAX_BLOCKS || width == 0 || width as usize > blocks {
            return Err(PsiError::Malformed("a bucket directory out of bounds"));
        }
        let tags = r.bytes(blocks * TAG_LEN)?;
        let first_tags = tags
            .chunks_exact(TAG_LEN)
            .map(|c| c.try_into().expect("TAG_LEN bytes"))
            .collect();
        let bits = r.bytes(blocks.div_ceil(8))?;
        let continued = (0..blocks)
            .map(|i| bits[i / 8] >> (i % 8) & 1 == 1)
            .collect();
        Ok(Self {
            layout,
            width,
            first_tags,
            continued,
        })
    }

    /// The block an entry with `tag` starts in, if the bucket holds it: the last block that
    /// starts an entry with a tag at or below it (block 0 when there is none; the fetch then
    /// finds nothing, as it must look like any other).
    pub fn block_of(&self, tag: &[u8; TAG_LEN]) -> usize {
        let mut block = self
            .first_tags
            .partition_point(|t| t <= tag)
            .saturating_sub(1);
        while block > 0 && self.continued[block] {
            block -= 1;
        }
        block
    }
}

/// A bucket's blocks and their directory (the node's side).
struct BucketBlocks {
    blocks: Vec<Vec<u8>>,
    directory: BucketDirectory,
}

/// The institution's key for bucket mode: a PIR secret and the Galois keys it registers with
/// the node once ([`BucketKey::registration`], about 1.5 MB).
#[derive(Clone)]
pub struct BucketKey {
    secret: PirSecret,
    registration: Vec<u8>,
    key_id: [u8; KEY_ID_LEN],
}

impl std::fmt::Debug for BucketKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BucketKey")
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

impl BucketKey {
    /// The key of a 32-byte random seed (the seed is all an institution needs to keep).
    pub fn from_seed(seed: &[u8; 32]) -> Self {
        let secret = PirSecret::from_seed(seed);
        let galois_seed = xy_shangmi::derive_key(seed, "xinyong pcq galois keys");
        let keys = secret.galois_keys(&galois_seed);
        let registration = keys.encode();
        let key_id = keys.key_id();
        Self {
            secret,
            registration,
            key_id,
        }
    }

    /// The encoded Galois keys to register with the node.
    pub fn registration(&self) -> &[u8] {
        &self.registration
    }

    /// The id the node files the keys under.
    pub fn key_id(&self) -> [u8; KEY_ID_LEN] {
        self.key_id
    }
}

/// Prepare registered Galois keys at the node.
pub fn server_keys(registration: &[u8]) -> Result<PirServerKeys, PsiError> {
    Ok(PirServerKeys::new(&PirKeys::decode(registration)?))
}

/// One PIR query and the window of blocks it asks back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FetchItem {
    /// Blocks after the selected one where the window starts.
    pub first: u32,
    /// Blocks in the window.
    pub count: u32,
    /// The query.
    pub query: PirQuery,
}

/// Institution → node, bucket mode's second step: PIR queries over one bucket's blocks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FetchRequest {
    /// The bucket count the bucket was computed for.
    pub bucket_count: u32,
    /// The bucket.
    pub bucket: u32,
    /// The layout digest from the bucket's directory.
    pub layout: u64,
    /// 1 to [`MAX_FETCH_ITEMS`] queries, at most [`MAX_FETCH_BLOCKS`] blocks in all.
    pub items: Vec<FetchItem>,
}

/// Node → institution: one PIR answer per item, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FetchResponse {
    /// The answers.
    pub answers: Vec<PirAnswer>,
}

const FETCH_MAGIC: &[u8; 4] = b"XPQF";
const FETCHED_MAGIC: &[u8; 4] = b"XPQB";

impl FetchRequest {
    /// Bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(26 + self.items.len() * (12 + crate::pir::QUERY_LEN));
        out.extend_from_slice(FETCH_MAGIC);
        out.push(QUERY_VERSION);
        out.extend_from_slice(&self.bucket_count.to_be_bytes());
        out.extend_from_slice(&self.bucket.to_be_bytes());
        out.extend_from_slice(&self.layout.to_be_bytes());
        out.extend_from_slice(&(self.items.len() as u32).to_be_bytes());
        for item in &self.items {
            let query = item.query.encode();
            out.extend_from_slice(&item.first.to_be_bytes());
            out.extend_from_slice(&item.count.to_be_bytes());
            out.extend_from_slice(&(query.len() as u32).to_be_bytes());
            out.extend_from_slice(&query);
        }
        out
    }

    /// Parse; refuses more than [`MAX_FETCH_ITEMS`] items or [`MAX_FETCH_BLOCKS`] blocks.
    pub fn decode(bytes: &[u8]) -> Result<Self, PsiError> {
        let mut r = Reader::new(bytes);
        r.header(
            FETCH_MAGIC,
            QUERY_VERSION,
            "not a bucket fetch",
            "unknown fetch version",
        )?;
        let bucket_count = r.u32()?;
        let bucket = r.u32()?;
        let layout = r.u64()?;
        let count = r.u32()? as usize;
        if count == 0 || count > MAX_FETCH_ITEMS {
            return Err(PsiError::Malformed(
                "a fetch with too few or too many items",
            ));
        }
        let mut items = Vec::with_capacity(count);
        let mut blocks = 0usize;
        for _ in 0..count {
            let first = r.u32()?;
            let count = r.u32()?;
            blocks += count as usize;
            if blocks > MAX_FETCH_BLOCKS {
                return Err(PsiError::Malformed("a fetch asks for too many blocks"));
            }
            let len = r.u32()? as usize;
            let query = PirQuery::decode(r.bytes(len)?)?;
            items.push(FetchItem {
                first,
                count,
                query,
            });
        }
        r.finish()?;
        Ok(Self {
            bucket_count,
            bucket,
            layout,
            items,
        })
    }
}

impl FetchResponse {
    /// Bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(FETCHED_MAGIC);
        out.push(QUERY_VERSION);
        out.extend_from_slice(&(self.answers.len() as u32).to_be_bytes());
        for answer in &self.answers {
            let bytes = answer.encode();
            out.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
            out.extend_from_slice(&bytes);
        }
        out
    }

    /// Parse.
    pub fn decode(bytes: &[u8]) -> Result<Self, PsiError> {
        let mut r = Reader::new(bytes);
        r.header(
            FETCHED_MAGIC,
            QUERY_VERSION,
            "not a fetch answer",
            "unknown fetch answer version",
        )?;
        let count = r.u32()? as usize;
        if count == 0 || count > MAX_FETCH_ITEMS {
            return Err(PsiError::Malformed("a fetch answer with too many answers"));
        }
        let mut answers = Vec::with_capacity(count);
        for _ in 0..count {
            let len = r.u32()? as usize;
            answers.push(PirAnswer::decode(r.bytes(len)?, MAX_FETCH_BLOCKS)?);
        }
        r.finish()?;
        Ok(Self { answers })
    }
}

/// Bucket mode after the first step: the ids' OPRF outputs and the PIR fetches that bring
/// their entries ([`PrivateQuery::fetch`]).
pub struct BucketFetch {
    ids: Vec<Vec<u8>>,
    outputs: Vec<OprfOutput>,
    /// For each id: its (request, item) slots, in window order.
    slots: Vec<Vec<(usize, usize)>>,
    secret: PirSecret,
}

impl std::fmt::Debug for BucketFetch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BucketFetch")
            .field("ids", &self.ids.len())
            .finish_non_exhaustive()
    }
}

impl BucketFetch {
    /// Decrypt the node's answers (one [`FetchResponse`] per request, in order) and open each
    /// id's entry. An answer count that does not match, or an entry under an id's tag that
    /// does not open, ends the query with an error.
    pub fn finish(self, responses: &[FetchResponse]) -> Result<Vec<QueryAnswer>, PsiError> {
        let mut answers = Vec::with_capacity(self.ids.len());
        for ((id, output), slots) in self.ids.into_iter().zip(self.outputs).zip(self.slots) {
            let mut bytes = Vec::new();
            for (request, item) in slots {
                let answer = responses
                    .get(request)
                    .and_then(|r| r.answers.get(item))
                    .ok_or_else(|| {
                        PsiError::Protocol("the node answered fewer fetches than asked".into())
                    })?;
                bytes.extend_from_slice(&self.secret.decrypt(answer));
            }
            let tag = output.tag();
            let count = bytes
                .get(..2)
                .map_or(0, |c| u16::from_be_bytes([c[0], c[1]]) as usize);
            let found = entries(bytes.get(2..).unwrap_or_default())
                .take(count)
                .map_while(Result::ok)
                .find(|e| e.tag == tag);
            let (found, label) = match found {
                Some(entry) => (true, Some(output.open(&entry)?)),
                None => (false, None),
            };
            answers.push(QueryAnswer { id, found, label });
        }
        Ok(answers)
    }
}

/// What an institution learns about one id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueryAnswer {
    /// The id asked.
    pub id: Vec<u8>,
    /// Whether the node holds records on the subject.
    pub found: bool,
    /// Its label (the subject's records) — bucket mode; filter mode answers membership only.
    pub label: Option<Vec<u8>>,
}

/// The institution's side of one query.
pub struct PrivateQuery {
    mode: QueryMode,
    ids: Vec<Vec<u8>>,
    unblinds: Vec<Scalar>,
    buckets: Vec<u32>,
    bucket_count: u32,
}

impl std::fmt::Debug for PrivateQuery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PrivateQuery")
            .field("mode", &self.mode)
            .field("ids", &self.ids.len())
            .finish_non_exhaustive()
    }
}

impl PrivateQuery {
    /// Blind `ids` (1 to [`MAX_QUERY_IDS`]); `randomness` fills 64 bytes per id. In bucket mode
    /// `bucket_count` is the node's (from its index info or the filter snapshot).
    pub fn new(
        mode: QueryMode,
        ids: Vec<Vec<u8>>,
        bucket_count: u32,
        randomness: &mut dyn FnMut(&mut [u8; 64]),
    ) -> Result<(Self, QueryRequest), PsiError> {
        if ids.is_empty() || ids.len() > MAX_QUERY_IDS {
            return Err(PsiError::Protocol(format!(
                "a query asks for 1 to {MAX_QUERY_IDS} ids, not {}",
                ids.len()
            )));
        }
        if mode == QueryMode::Bucket && bucket_count == 0 {
            return Err(PsiError::Protocol("the node's bucket count is zero".into()));
        }
        let blinds: Vec<Scalar> = ids
            .iter()
            .map(|_| {
                let mut bytes = [0u8; 64];
                randomness(&mut bytes);
                Ristretto255::scalar_from_random(&bytes)
            })
            .collect();
        let buckets: Vec<u32> = match mode {
            QueryMode::Bucket => ids.iter().map(|id| bucket_of(id, bucket_count)).collect(),
            QueryMode::Filter => vec![0; ids.len()],
        };
        let items = ids
            .par_iter()
            .zip(blinds.par_iter())
            .zip(buckets.par_iter())
            .map(|((id, r), bucket)| QueryItem {
                bucket: *bucket,
                blinded: Ristretto255::encode(&(Ristretto255::hash_to_point(id) * r)),
            })
            .collect();
        let request = QueryRequest {
            mode,
            bucket_count: if mode == QueryMode::Bucket {
                bucket_count
            } else {
                0
            },
            items,
        };
        let unblinds = blinds.iter().map(Scalar::invert).collect();
        Ok((
            Self {
                mode,
                ids,
                unblinds,
                buckets,
                bucket_count,
            },
            request,
        ))
    }

    /// The ids' OPRF outputs from the node's evaluated points.
    fn outputs(&self, response: &QueryResponse) -> Result<Vec<OprfOutput>, PsiError> {
        if response.evaluated.len() != self.ids.len() {
            return Err(PsiError::Protocol(format!(
                "{} ids asked, {} evaluated",
                self.ids.len(),
                response.evaluated.len()
            )));
        }
        self.ids
            .par_iter()
            .zip(self.unblinds.par_iter())
            .zip(response.evaluated.par_iter())
            .map(|((id, unblind), evaluated)| {
                let point = Ristretto255::decode(evaluated)?;
                Ok(OprfOutput::finalize(
                    id,
                    &Ristretto255::encode(&(point * unblind)),
                ))
            })
            .collect()
    }

    /// Filter mode: unblind the node's answer and look the ids' tags up in the institution's
    /// [`FilterIndex`]. A point that is not a valid group element or a count that does not
    /// match ends the query with an error.
    pub fn finish(
        self,
        response: &QueryResponse,
        filter: &FilterIndex,
    ) -> Result<Vec<QueryAnswer>, PsiError> {
        if self.mode != QueryMode::Filter {
            return Err(PsiError::Protocol(
                "bucket mode goes on with a fetch (PrivateQuery::fetch)".into(),
            ));
        }
        let outputs = self.outputs(response)?;
        Ok(self
            .ids
            .into_iter()
            .zip(outputs)
            .map(|(id, output)| QueryAnswer {
                id,
                found: filter.contains(&output.tag()),
                label: None,
            })
            .collect())
    }

    /// Bucket mode: unblind the node's answer and make the PIR fetches that bring each id's
    /// block(s) of its bucket, one request per bucket (more when a bucket's items exceed a
    /// request's limits). `randomness` fills 32 bytes per PIR query.
    pub fn fetch(
        self,
        response: &QueryResponse,
        key: &BucketKey,
        randomness: &mut dyn FnMut(&mut [u8; 32]),
    ) -> Result<(BucketFetch, Vec<FetchRequest>), PsiError> {
        if self.mode != QueryMode::Bucket {
            return Err(PsiError::Protocol("only bucket mode fetches".into()));
        }
        let outputs = self.outputs(response)?;
        let mut requests: Vec<FetchRequest> = Vec::new();
        let mut slots = Vec::with_capacity(self.ids.len());
        for (output, bucket) in outputs.iter().zip(&self.buckets) {
            let (_, directory) = response
                .buckets
                .iter()
                .find(|(b, _)| b == bucket)
                .ok_or_else(|| PsiError::Protocol(format!("the answer lacks bucket {bucket}")))?;
            let blocks = directory.first_tags.len();
            let block = directory.block_of(&output.tag());
            let mut seed = [0u8; 32];
            randomness(&mut seed);
            let query = key.secret.query(key.key_id, block, blocks, &seed)?;
            let mut id_slots = Vec::new();
            let width = directory.width as usize;
            for first in (0..width).step_by(MAX_FETCH_BLOCKS) {
                let count = (width - first).min(MAX_FETCH_BLOCKS);
                let item = FetchItem {
                    first: first as u32,
                    count: count as u32,
                    query: query.clone(),
                };
                // The last request for this bucket, if the item fits in it.
                let open = requests.iter().rposition(|r| {
                    r.bucket == *bucket
                        && r.items.len() < MAX_FETCH_ITEMS
                        && r.items.iter().map(|i| i.count as usize).sum::<usize>() + count
                            <= MAX_FETCH_BLOCKS
                });
                let at = match open {
                    Some(at) => at,
                    None => {
                        requests.push(FetchRequest {
                            bucket_count: self.bucket_count,
                            bucket: *bucket,
                            layout: directory.layout,
                            items: Vec::new(),
                        });
                        requests.len() - 1
                    }
                };
                requests[at].items.push(item);
                id_slots.push((at, requests[at].items.len() - 1));
            }
            slots.push(id_slots);
        }
        Ok((
            BucketFetch {
                ids: self.ids,
                outputs,
                slots,
                secret: key.secret.clone(),
            },
            requests,
        ))
    }
}
