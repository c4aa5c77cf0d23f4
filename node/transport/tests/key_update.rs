//! A QUIC key update in the middle of a bulk transfer: new SM4 packet keys are derived (counted
//! by the provider) and the transfer still arrives intact. Alone in its test binary, so that the
//! process-wide key counter sees only this connection.

mod common;

use common::*;

#[tokio::test]
async fn a_key_update_mid_transfer_keeps_the_data_intact() {
    let pki = pki();
    let (_server, addr, handler) = serve(&pki.credentials("province"));
    let client = client_endpoint(&pki.credentials("chengdu"));
    let connection = client.connect(addr, &province_name()).await.unwrap();
    // Warm up past quinn's own early key update (it updates once after 10..1000 packets, to
    // catch peers that mishandle updates; then only at the confidentiality limit).
    connection
        .send_bulk(b"warm-up", (0..8).map(|i| chunk(i, 1 << 20)))
        .await
        .unwrap();
    // Control: a transfer without a key update derives no keys.
    let keys_idle = xy_gmtls::provider::packet_keys_derived();
    connection
        .send_bulk(b"control", (0..8).map(|i| chunk(i, 1 << 20)))
        .await
        .unwrap();
    assert_eq!(xy_gmtls::provider::packet_keys_derived(), keys_idle);
    let keys_before = xy_gmtls::provider::packet_keys_derived();
    const CHUNKS: u64 = 64;
    let quinn = connection.quinn().clone();
    let chunks = (0..CHUNKS).map(move |i| {
        if i == CHUNKS / 2 {
            quinn.force_key_update();
        }
        chunk(i, 1 << 20)
    });
    let receipt = connection
        .send_bulk(b"return-flow/batch-9", chunks)
        .await
        .unwrap();
    let keys_after = xy_gmtls::provider::packet_keys_derived();
    assert!(
        keys_after > keys_before,
        "no new packet keys were derived: {keys_before} -> {keys_after}"
    );
    assert_eq!(receipt.bytes, CHUNKS << 20);
    let mut expected = xy_shangmi::Sm3Hasher::new();
    for i in 0..CHUNKS {
        expected.update(&chunk(i, 1 << 20));
    }
    assert_eq!(
        handler.bulk_digest.lock().unwrap().unwrap(),
        expected.finish()
    );
    // The connection goes on working under the new keys.
    assert_eq!(
        connection.request(b"after").await.unwrap(),
        b"510100/prefecture-node:after"
    );
}
