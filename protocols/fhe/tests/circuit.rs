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

/// One node's values giving exactly `target` (a depth-first search over the indicator ranges).
fn values_for(policy: &ScoringPolicy, target: i64) -> Vec<u16> {
    fn search(
        indicators: &[xy_fhe::Indicator],
        score: i64,
        target: i64,
        values: &mut Vec<u16>,
    ) -> bool {
        let Some((first, rest)) = indicators.split_first() else {
            return score == target;
        };
        let sign = match first.direction {
            xy_fhe::Direction::Benefit => 1,
            xy_fhe::Direction::Risk => -1,
        };
        for v in 0..=first.max {
            values.push(v);
            if search(
                rest,
                score + sign * i64::from(v) * i64::from(first.weight),
                target,
                values,
            ) {
                return true;
            }
            values.pop();
        }
        false
    }
    let mut values = Vec::new();
    assert!(
        search(&policy.indicators, policy.score.base, target, &mut values),
        "no values give {target}"
    );
    assert_eq!(policy.plain(std::slice::from_ref(&values)).score, target);
    values
}

/// Values by indicator id (the others zero).
fn with(policy: &ScoringPolicy, set: &[(&str, u16)]) -> Vec<u16> {
    policy
        .indicators
        .iter()
        .map(|i| {
            set.iter()
                .find(|(id, _)| *id == i.id)
                .map_or(0, |(_, v)| *v)
        })
        .collect()
}

#[test]
fn every_band_edge_and_both_clamps_match_the_plaintext() {
    let policy = ScoringPolicy::enterprise();
    let mut cases: Vec<Vec<Vec<u16>>> = Vec::new();
    for band in &policy.score.bands {
        cases.push(vec![values_for(&policy, band.from)]);
        cases.push(vec![values_for(&policy, band.from - 1)]);
    }
    let best = with(
        &policy,
        &[
            ("licences_in_force", 15),
            ("commitments_kept_3y", 7),
            ("red_lists_in_force", 3),
        ],
    );
    cases.push(vec![best.clone(), best.clone(), best]); // 1009 → clamped to 900
    let worst = with(
        &policy,
        &[
            ("penalties_3y", 15),
            ("severe_penalties_3y", 7),
            ("commitments_broken_3y", 7),
            ("black_lists_in_force", 3),
        ],
    );
    cases.push(vec![worst.clone(), worst]); // below 0 → clamped to 300
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
    let values = with(&policy, &[("penalties_3y", 1), ("licences_in_force", 2)]);
    let good = encrypt_contribution(&policy, k.evaluation.public_key(), &values).unwrap();
    for bad in [Vec::new(), vec![0u8; 100], good[..good.len() / 2].to_vec()] {
        assert!(aggregate(&policy, &k.evaluation, &[good.clone(), bad], false).is_err());
    }
    assert!(encrypt_contribution(&policy, k.evaluation.public_key(), &[1, 2]).is_err());
    assert!(aggregate(&policy, &k.evaluation, &[], false).is_err());
    let mut upload = k.requester.upload().unwrap();
    upload.server_key.truncate(1000);
    assert!(EvaluationKey::from_upload(&upload).is_err());
}
