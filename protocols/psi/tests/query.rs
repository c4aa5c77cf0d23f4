//! The private credit query against a plaintext lookup, in both modes: the institution gets the
//! labels of the ids it holds and nothing for the others; a bucket answer covers at least
//! `MIN_BUCKET` subjects; filter deltas carry changes and removals; invalid points are refused
//! before they are multiplied; the codecs round-trip and never panic on garbage.

use std::collections::HashMap;

use rand::{Rng, SeedableRng};
use std::sync::OnceLock;

use xy_psi::pir::PirServerKeys;
use xy_psi::query::{
    BucketKey, FetchRequest, FetchResponse, FilterIndex, LAYOUT_CHANGED, LabelIndex, MIN_BUCKET,
    OprfKey, PrivateQuery, QueryAnswer, QueryItem, QueryMode, QueryRequest, QueryResponse,
    Snapshot, bucket_count_for, bucket_of, entries, server_keys,
};
use xy_psi::{PsiError, PsiGroup, Ristretto255};

fn uscc(i: u64) -> Vec<u8> {
    format!("91510100{i:010}").into_bytes()
}

fn label(i: u64) -> Vec<u8> {
    format!(r#"[{{"category":"xzcf","document":"川市监罚〔2025〕{i}号"}}]"#).into_bytes()
}

fn randomness(seed: u64) -> impl FnMut(&mut [u8; 64]) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    move |bytes: &mut [u8; 64]| rng.fill(&mut bytes[..])
}

fn key(seed: u64) -> OprfKey {
    let mut bytes = [0u8; 64];
    randomness(seed)(&mut bytes);
    OprfKey::from_random(&bytes)
}

/// A node of `n` subjects: ids 0..n.
fn node(n: u64) -> (LabelIndex, HashMap<Vec<u8>, Vec<u8>>) {
    let subjects: Vec<(Vec<u8>, Vec<u8>)> = (0..n).map(|i| (uscc(i), label(i))).collect();
    let plain = subjects.iter().cloned().collect();
    (LabelIndex::build(key(1), subjects, 1), plain)
}

/// Ids the institution asks: some held by the node, some not.
fn asked(rng: &mut impl Rng, n: u64, held: usize, absent: usize) -> Vec<Vec<u8>> {
    let mut ids: Vec<Vec<u8>> = (0..held).map(|_| uscc(rng.random_range(0..n))).collect();
    ids.extend((0..absent).map(|_| uscc(n + rng.random_range(0..1u64 << 30))));
    ids
}

/// The institution's bucket key and the node's form of it.
fn bucket_keys() -> &'static (BucketKey, PirServerKeys) {
    static KEYS: OnceLock<(BucketKey, PirServerKeys)> = OnceLock::new();
    KEYS.get_or_init(|| {
        let key = BucketKey::from_seed(&[42; 32]);
        let server = server_keys(key.registration()).unwrap();
        (key, server)
    })
}

/// Bucket mode's two steps, through the codecs: the OPRF with the directories, then the PIR
/// fetches.
fn bucket_answers(
    index: &LabelIndex,
    query: PrivateQuery,
    request: &QueryRequest,
) -> Vec<QueryAnswer> {
    let response = QueryResponse::decode(&index.answer(request).unwrap().encode()).unwrap();
    let (key, server) = bucket_keys();
    let mut rng = rand::rngs::StdRng::seed_from_u64(99);
    let mut fill = |seed: &mut [u8; 32]| rng.fill(&mut seed[..]);
    let (fetch, requests) = query.fetch(&response, key, &mut fill).unwrap();
    let responses: Vec<FetchResponse> = requests
        .iter()
        .map(|r| {
            let r = FetchRequest::decode(&r.encode()).unwrap();
            FetchResponse::decode(&index.fetch(&r, server).unwrap().encode()).unwrap()
        })
        .collect();
    fetch.finish(&responses).unwrap()
}

/// Bucket mode: the labels of held ids, nothing for the others.
fn check(answers: &[xy_psi::query::QueryAnswer], plain: &HashMap<Vec<u8>, Vec<u8>>) {
    for a in answers {
        assert_eq!(a.label.as_ref(), plain.get(&a.id), "id {:?}", a.id);
        assert_eq!(a.found, plain.contains_key(&a.id));
    }
}

/// Filter mode: membership only.
fn check_membership(answers: &[xy_psi::query::QueryAnswer], plain: &HashMap<Vec<u8>, Vec<u8>>) {
    for a in answers {
        assert_eq!(a.found, plain.contains_key(&a.id), "id {:?}", a.id);
        assert_eq!(a.label, None);
    }
}

#[test]
fn bucket_mode_returns_the_labels_of_held_ids_only_and_covers_a_thousand_subjects() {
    let (index, plain) = node(5000);
    assert_eq!(index.subjects(), 5000);
    assert_eq!(index.bucket_count(), bucket_count_for(5000));
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let ids = asked(&mut rng, 5000, 6, 4);
    let (query, request) = PrivateQuery::new(
        QueryMode::Bucket,
        ids.clone(),
        index.bucket_count(),
        &mut randomness(2),
    )
    .unwrap();
    // What the node sees: the buckets and blinded points, never the ids.
    for (item, id) in request.items.iter().zip(&ids) {
        assert_eq!(item.bucket, bucket_of(id, index.bucket_count()));
        assert_ne!(
            item.blinded,
            Ristretto255::encode(&Ristretto255::hash_to_point(id))
        );
    }
    for item in &request.items {
        assert!(index.covered(item.bucket) >= MIN_BUCKET);
    }
    let answers = bucket_answers(&index, query, &request);
    assert_eq!(answers.iter().filter(|a| a.label.is_some()).count(), 6);
    check(&answers, &plain);
}

#[test]
fn a_node_smaller_than_a_bucket_answers_with_everything() {
    let (index, plain) = node(300);
    let ids = vec![uscc(5), uscc(299), uscc(1_000_000)];
    let (query, request) = PrivateQuery::new(
        QueryMode::Bucket,
        ids,
        index.bucket_count(),
        &mut randomness(3),
    )
    .unwrap();
    assert_eq!(index.covered(request.items[0].bucket), 300);
    check(&bucket_answers(&index, query, &request), &plain);
}

#[test]
fn filter_mode_needs_only_the_oprf_online_and_follows_deltas() {
    let (mut index, mut plain) = node(3000);
    let snapshot = Snapshot::decode(&index.snapshot(None).encode()).unwrap();
    let mut filter = FilterIndex::from_snapshot(&snapshot).unwrap();
    assert_eq!(filter.len(), 3000);
    let mut rng = rand::rngs::StdRng::seed_from_u64(8);
    let ids = asked(&mut rng, 3000, 5, 5);
    let (query, request) =
        PrivateQuery::new(QueryMode::Filter, ids.clone(), 0, &mut randomness(4)).unwrap();
    // The online request carries blinded points only.
    assert!(request.items.iter().all(|i| i.bucket == 0));
    let response = index.answer(&request).unwrap();
    assert!(response.buckets.is_empty());
    let answers = query.finish(&response, &filter).unwrap();
    assert_eq!(answers.iter().filter(|a| a.found).count(), 5);
    check_membership(&answers, &plain);

    // Changes at the node: a corrected label, a withdrawn subject, a new subject.
    let since = filter.epoch();
    index.upsert(&uscc(1), b"corrected");
    plain.insert(uscc(1), b"corrected".to_vec());
    index.remove(&uscc(2));
    plain.remove(&uscc(2));
    index.upsert(&uscc(9_999_999), b"new");
    plain.insert(uscc(9_999_999), b"new".to_vec());
    assert_eq!(index.subjects(), 3000);
    let delta = Snapshot::decode(&index.snapshot(Some(since)).encode()).unwrap();
    assert_eq!(
        (delta.added.len(), delta.removed.len()),
        (2, 1),
        "only the changes travel"
    );
    filter.apply(&delta).unwrap();
    assert_eq!((filter.len(), filter.epoch()), (3000, index.epoch()));
    let ids = vec![uscc(1), uscc(2), uscc(9_999_999), uscc(3)];
    let (query, request) =
        PrivateQuery::new(QueryMode::Filter, ids, 0, &mut randomness(5)).unwrap();
    let answers = query
        .finish(&index.answer(&request).unwrap(), &filter)
        .unwrap();
    check_membership(&answers, &plain);
    // The same changes reach bucket mode.
    let ids = vec![uscc(1), uscc(2), uscc(9_999_999)];
    let (query, request) = PrivateQuery::new(
        QueryMode::Bucket,
        ids,
        index.bucket_count(),
        &mut randomness(6),
    )
    .unwrap();
    check(&bucket_answers(&index, query, &request), &plain);
}

#[test]
fn a_label_opens_only_under_its_own_ids_output() {
    let k = key(9);
    let entry = k.output(b"A").seal(1, b"secret records");
    let parsed = entries(&entry).next().unwrap().unwrap();
    assert_eq!(k.output(b"A").open(&parsed).unwrap(), b"secret records");
    assert!(k.output(b"B").open(&parsed).is_err());
    assert!(key(10).output(b"A").open(&parsed).is_err());
    // Sizes are padded: short labels look alike.
    assert_eq!(
        k.output(b"A").seal(1, b"x").len(),
        k.output(b"A").seal(1, b"twenty-seven bytes of text.").len()
    );
}

#[test]
fn invalid_points_are_refused_not_multiplied() {
    let (index, _) = node(50);
    let identity = [0u8; 32];
    let not_canonical = [0xffu8; 32];
    for bad in [identity, not_canonical] {
        let request = QueryRequest {
            mode: QueryMode::Filter,
            bucket_count: 0,
            items: vec![QueryItem {
                bucket: 0,
                blinded: bad,
            }],
        };
        assert!(matches!(
            index.answer(&request),
            Err(PsiError::InvalidPoint(_))
        ));
    }
    // And from the node's side: a forged answer point ends the query.
    let (query, _) =
        PrivateQuery::new(QueryMode::Filter, vec![uscc(1)], 0, &mut randomness(7)).unwrap();
    let forged = QueryResponse {
        evaluated: vec![identity],
        buckets: vec![],
    };
    let filter = FilterIndex::default();
    assert!(matches!(
        query.finish(&forged, &filter),
        Err(PsiError::InvalidPoint(_))
    ));
}

#[test]
fn bad_queries_are_refused_by_cause() {
    let (index, _) = node(2600);
    let (_, mut request) = PrivateQuery::new(
        QueryMode::Bucket,
        vec![uscc(1)],
        index.bucket_count(),
        &mut randomness(8),
    )
    .unwrap();
    request.bucket_count += 1;
    let err = index.answer(&request).unwrap_err().to_string();
    assert!(err.contains("buckets"), "{err}");
    request.bucket_count -= 1;
    request.items[0].bucket = index.bucket_count();
    let err = index.answer(&request).unwrap_err().to_string();
    assert!(err.contains("does not exist"), "{err}");
    let too_many: Vec<Vec<u8>> = (0..1001).map(uscc).collect();
    assert!(PrivateQuery::new(QueryMode::Filter, too_many, 0, &mut randomness(9)).is_err());
    assert!(PrivateQuery::new(QueryMode::Filter, vec![], 0, &mut randomness(9)).is_err());
    // A delta before the snapshot is refused.
    let delta = index.snapshot(Some(0));
    assert!(FilterIndex::from_snapshot(&delta).is_err());
}

#[test]
fn the_codecs_round_trip_and_never_panic_on_garbage() {
    let (index, _) = node(1200);
    let mut rng = rand::rngs::StdRng::seed_from_u64(11);
    for mode in [QueryMode::Bucket, QueryMode::Filter] {
        let n = rng.random_range(1..20);
        let ids: Vec<Vec<u8>> = (0..n).map(|_| uscc(rng.random_range(0..2000))).collect();
        let (_, request) =
            PrivateQuery::new(mode, ids, index.bucket_count(), &mut randomness(n)).unwrap();
        let bytes = request.encode();
        assert_eq!(QueryRequest::decode(&bytes).unwrap(), request);
        let response = index.answer(&request).unwrap();
        let answer_bytes = response.encode();
        assert_eq!(QueryResponse::decode(&answer_bytes).unwrap(), response);
        for cut in 0..bytes.len() {
            assert!(QueryRequest::decode(&bytes[..cut]).is_err());
        }
        for cut in (0..answer_bytes.len()).step_by(97) {
            assert!(QueryResponse::decode(&answer_bytes[..cut]).is_err());
        }
    }
    let snapshot = index.snapshot(None).encode();
    assert_eq!(Snapshot::decode(&snapshot).unwrap(), index.snapshot(None));
    for _ in 0..20_000 {
        let len = rng.random_range(0..120);
        let mut bytes: Vec<u8> = (0..len).map(|_| rng.random()).collect();
        if bytes.len() >= 5 && rng.random_bool(0.5) {
            let magic: &[u8] = [b"XPQ?", b"XPQ!", b"XPQS"][rng.random_range(0..3)];
            bytes[..4].copy_from_slice(magic);
            bytes[4] = if magic == b"XPQS" { 1 } else { 2 };
        }
        let _ = QueryRequest::decode(&bytes);
        let _ = QueryResponse::decode(&bytes);
        let _ = Snapshot::decode(&bytes);
        let _ = entries(&bytes).count();
    }
}

#[test]
fn a_subject_listed_twice_keeps_its_last_label_and_chunks_build_the_same_index() {
    let subjects: Vec<(Vec<u8>, Vec<u8>)> = (0..1500).map(|i| (uscc(i), label(i))).collect();
    let whole = LabelIndex::build(key(1), subjects.clone(), 1);
    let chunked = LabelIndex::build_in_chunks(
        key(1),
        subjects.len(),
        subjects.chunks(128).map(<[_]>::to_vec),
        1,
    );
    assert_eq!(chunked.snapshot(None), whole.snapshot(None));
    let mut twice = subjects;
    twice.push((uscc(7), b"later".to_vec()));
    let index = LabelIndex::build(key(1), twice, 1);
    assert_eq!(index.subjects(), 1500);
    let (query, request) = PrivateQuery::new(
        QueryMode::Bucket,
        vec![uscc(7)],
        index.bucket_count(),
        &mut randomness(12),
    )
    .unwrap();
    let answers = bucket_answers(&index, query, &request);
    assert_eq!(answers[0].label.as_deref(), Some(&b"later"[..]));
}

#[test]
fn labels_longer_than_a_block_are_fetched_whole() {
    // Labels of 9 KB and 30 KB (three and eight blocks) among short ones.
    let mut rng = rand::rngs::StdRng::seed_from_u64(13);
    let mut subjects: Vec<(Vec<u8>, Vec<u8>)> = (0..1300).map(|i| (uscc(i), label(i))).collect();
    for (i, len) in [(3u64, 9_000usize), (700, 30_000)] {
        subjects[i as usize].1 = (0..len).map(|_| rng.random()).collect();
    }
    let plain: HashMap<Vec<u8>, Vec<u8>> = subjects.iter().cloned().collect();
    let index = LabelIndex::build(key(1), subjects, 1);
    let ids = vec![uscc(3), uscc(700), uscc(4), uscc(5_000_000)];
    let (query, request) = PrivateQuery::new(
        QueryMode::Bucket,
        ids,
        index.bucket_count(),
        &mut randomness(14),
    )
    .unwrap();
    let answers = bucket_answers(&index, query, &request);
    assert!(answers[0].found && answers[1].found && answers[2].found && !answers[3].found);
    check(&answers, &plain);
}

#[test]
fn a_fetch_is_refused_when_the_bucket_changed_or_the_keys_differ() {
    let (mut index, _) = node(2600);
    let (query, request) = PrivateQuery::new(
        QueryMode::Bucket,
        vec![uscc(1)],
        index.bucket_count(),
        &mut randomness(15),
    )
    .unwrap();
    let response = index.answer(&request).unwrap();
    let (key, server) = bucket_keys();
    let mut fill = |seed: &mut [u8; 32]| seed.fill(5);
    let (_, requests) = query.fetch(&response, key, &mut fill).unwrap();
    // Keys registered by someone else: refused.
    let other = server_keys(BucketKey::from_seed(&[43; 32]).registration()).unwrap();
    assert!(index.fetch(&requests[0], &other).is_err());
    // A fetch made for another layout of the bucket (it changed between the two steps):
    // refused, by name.
    let mut stale = requests[0].clone();
    stale.layout ^= 1;
    let err = index.fetch(&stale, server).unwrap_err().to_string();
    assert!(err.contains(LAYOUT_CHANGED), "{err}");
    // A label replaced in place keeps the layout: the fetch brings the new label.
    index.upsert(&uscc(1), b"changed");
    index.fetch(&requests[0], server).unwrap();
    // A window past the bucket's width.
    let mut wide = requests[0].clone();
    wide.items[0].count = 2;
    wide.layout = index.answer(&request).unwrap().buckets[0].1.layout;
    let err = index.fetch(&wide, server).unwrap_err().to_string();
    assert!(err.contains("width"), "{err}");
    // Garbage never panics the fetch codecs.
    let bytes = requests[0].encode();
    for cut in (0..bytes.len()).step_by(1013) {
        assert!(FetchRequest::decode(&bytes[..cut]).is_err());
    }
    let mut rng = rand::rngs::StdRng::seed_from_u64(16);
    for _ in 0..5_000 {
        let len = rng.random_range(0..200);
        let mut bytes: Vec<u8> = (0..len).map(|_| rng.random()).collect();
        if bytes.len() >= 5 && rng.random_bool(0.5) {
            let magic: &[u8] = [b"XPQF", b"XPQB"][rng.random_range(0..2)];
            bytes[..4].copy_from_slice(magic);
            bytes[4] = 2;
        }
        let _ = FetchRequest::decode(&bytes);
        let _ = FetchResponse::decode(&bytes);
    }
}
