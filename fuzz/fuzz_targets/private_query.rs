//! Fuzz the private-query decoders (an institution's request at the node; the node's answer and
//! filter snapshots at the institution), and feed what decodes to the node's index and to a
//! query's finish.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use xy_psi::query::{
    FilterIndex, LabelIndex, OprfKey, PrivateQuery, QueryMode, QueryRequest, QueryResponse,
    Snapshot,
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

fuzz_target!(|data: &[u8]| {
    if let Ok(request) = QueryRequest::decode(data) {
        let _ = index().answer(&request);
    }
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
            let _ = query.finish(&response, Some(filter.as_ref().unwrap_or(&FilterIndex::default())));
        }
    }
});
