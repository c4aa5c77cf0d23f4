//! The encrypted computation against the plaintext reference: random indicators from one to
//! three nodes, every band edge (a score exactly at and one below each band's lower bound), and
//! both clamps. Keys are generated once for the whole file (seconds).

use std::sync::OnceLock;

use xy_fhe::{
    EvaluationKey, RequesterKeys, ScoringPolicy, aggregate, decrypt, encrypt_contribution,
};

struct Keys {
    requester: RequesterKeys,
    evaluation: EvaluationKey,
}

fn keys() -> &'static Keys {
    static KEYS: OnceLock<Keys> = OnceLock::new();
    KEYS.get_or_init(|| {
        let requester = RequesterKeys::generate();
        let evaluation = EvaluationKey::from_upload(&requester.upload().unwrap()).unwrap();
        Keys {
            requester,
            evaluation,
        }
    })
}

/// Encrypt, aggregate and decrypt; returns (grade, score).
fn encrypted(policy: &ScoringPolicy, nodes: &[Vec<u16>]) -> (String, i64) {
    let k = keys();
    let contributions: Vec<Vec<u8>> = nodes
        .iter()
        .map(|values| encrypt_contribution(policy, k.evaluation.public_key(), values).unwrap())
        .collect();
    let answer = aggregate(policy, &k.evaluation, &contributions, true).unwrap();
    let (grade, score) = decrypt(policy, &k.requester.client_key, &answer).unwrap();
    (grade, score.unwrap())
}

/// One node's values giving exactly `target` (searching the indicator ranges).
fn values_for(policy: &ScoringPolicy, target: i64) -> Vec<u16> {
    for pen in 0..=15u16 {
        for sev in 0..=7u16 {
            for lic in 0..=15u16 {
                for com in 0..=7u16 {
                    let partial = policy.plain(&[vec![pen, sev, 0, lic, com]]).score;
                    let need = partial - target; // to be covered by fines, 2 points each
                    if need >= 0 && need % 2 == 0 && need / 2 <= 50 {
                        let v = vec![pen, sev, (need / 2) as u16, lic, com];
                        if policy.plain(std::slice::from_ref(&v)).score == target {
                            return v;
                        }
                    }
                }
            }
        }
    }
    panic!("no values give {target}");
}

#[test]
fn every_band_edge_and_both_clamps_match_the_plaintext() {
    let policy = ScoringPolicy::enterprise();
    let mut cases: Vec<Vec<Vec<u16>>> = Vec::new();
    for band in &policy.score.bands {
        cases.push(vec![values_for(&policy, band.from)]);
        cases.push(vec![values_for(&policy, band.from - 1)]);
    }
    let best = vec![0, 0, 0, 15, 7];
    cases.push(vec![best.clone(), best.clone(), best]); // 919 → clamped to 900
    let worst = vec![15, 7, 50, 0, 0];
    cases.push(vec![worst.clone(), worst]); // 110 → clamped to 300
    for nodes in cases {
        let expected = policy.plain(&nodes);
        let (grade, score) = encrypted(&policy, &nodes);
        assert_eq!(
            (grade.as_str(), score),
            (expected.grade.as_str(), expected.score),
            "{nodes:?}"
        );
    }
}

#[test]
fn random_indicators_from_several_nodes_match_the_plaintext() {
    use rand::{Rng, SeedableRng};
    let policy = ScoringPolicy::enterprise();
    let mut rng = rand::rngs::StdRng::seed_from_u64(20261126);
    for _ in 0..4 {
        let n = rng.random_range(1..=3);
        let nodes: Vec<Vec<u16>> = (0..n)
            .map(|_| {
                policy
                    .indicators
                    .iter()
                    .map(|i| rng.random_range(0..=i.max))
                    .collect()
            })
            .collect();
        let expected = policy.plain(&nodes);
        let (grade, score) = encrypted(&policy, &nodes);
        assert_eq!(
            (grade.as_str(), score),
            (expected.grade.as_str(), expected.score),
            "{nodes:?}"
        );
    }
}

#[test]
fn malformed_contributions_and_keys_are_refused() {
    let policy = ScoringPolicy::enterprise();
    let k = keys();
    let good = encrypt_contribution(&policy, k.evaluation.public_key(), &[1, 0, 0, 2, 1]).unwrap();
    for bad in [Vec::new(), vec![0u8; 100], good[..good.len() / 2].to_vec()] {
        assert!(aggregate(&policy, &k.evaluation, &[good.clone(), bad], false).is_err());
    }
    assert!(encrypt_contribution(&policy, k.evaluation.public_key(), &[1, 2]).is_err());
    assert!(aggregate(&policy, &k.evaluation, &[], false).is_err());
    let mut upload = k.requester.upload().unwrap();
    upload.server_key.truncate(1000);
    assert!(EvaluationKey::from_upload(&upload).is_err());
}
