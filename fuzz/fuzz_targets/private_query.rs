//! Fuzz the private-query decoders (an institution's request, fetch and PIR keys at the node; the
//! node's answers and filter snapshots at the institution), and feed what decodes to the node's
//! index and to a query's finish.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use xy_psi::pir::{PirAnswer, PirKeys, PirServerKeys};
use xy_psi::query::{
    BucketKey, FetchRequest, FetchResponse, FilterIndex, LabelIndex, OprfKey, PrivateQuery,
    QueryMode, QueryRequest, QueryResponse, Snapshot, server_keys,
};

fn index() -> &'static LabelIndex {
    static INDEX: OnceLock<LabelIndex> = OnceLock::new();
    INDEX.get_or_init(|| {
        let subjects = (0..50u32)
            .map(|i| (i.to_be_bytes().to_vec(), vec![b'x'; i as usize]))
            .collect();
        LabelIndex::build(OprfKey::from_random(&[7; 64]), subjects, 1)
    })
}

fn keys() -> &'static (BucketKey, PirServerKeys) {
    static KEYS: OnceLock<(BucketKey, PirServerKeys)> = OnceLock::new();
    KEYS.get_or_init(|| {
        let key = BucketKey::from_seed(&[3; 32]);
        let server = server_keys(key.registration()).expect("own keys");
        (key, server)
    })
}

fuzz_target!(|data: &[u8]| {
    if let Ok(request) = QueryRequest::decode(data) {
        let _ = index().answer(&request);
    }
    if let Ok(request) = FetchRequest::decode(data) {
        let _ = index().fetch(&request, &keys().1);
    }
    if let Ok(keys) = PirKeys::decode(data) {
        let _ = PirServerKeys::new(&keys);
    }
    let _ = PirAnswer::decode(data, 4);
    let mut filter = None;
    if let Ok(snapshot) = Snapshot::decode(data) {
        filter = FilterIndex::from_snapshot(&snapshot).ok();
        let mut base = FilterIndex::from_snapshot(&index().snapshot(None)).expect("own snapshot");
        let _ = base.apply(&snapshot);
    }
    if let Ok(response) = QueryResponse::decode(data) {
        for mode in [QueryMode::Bucket, QueryMode::Filter] {
            let ids = vec![1u32.to_be_bytes().to_vec(), 99u32.to_be_bytes().to_vec()];
            let mut fill = |b: &mut [u8; 64]| b.fill(3);
            let (query, _) = PrivateQuery::new(mode, ids, index().bucket_count(), &mut fill)
                .expect("two ids");
            match mode {
                QueryMode::Filter => {
                    let _ = query.finish(&response, filter.as_ref().unwrap_or(&FilterIndex::default()));
                }
                QueryMode::Bucket => {
                    let mut seeds = |b: &mut [u8; 32]| b.fill(4);
                    if let Ok((fetch, requests)) = query.fetch(&response, &keys().0, &mut seeds) {
                        // The node's answers to these fetches, or a fuzzed one.
                        let answers: Vec<FetchResponse> = requests
                            .iter()
                            .filter_map(|r| index().fetch(r, &keys().1).ok())
                            .chain(FetchResponse::decode(data).ok())
                            .collect();
                        let _ = fetch.finish(&answers);
                    }
                }
            }
        }
    }
});
