//! Fuzz the PKI decoders: certificates, SubjectPublicKeyInfos and private keys from arbitrary
//! bytes (peer certificates arrive from the network).
#![no_main]

use libfuzzer_sys::fuzz_target;
use xy_gmtls::pki::{ParsedCertificate, private_key_from_der, spki_sm2_key};

fuzz_target!(|data: &[u8]| {
    let _ = ParsedCertificate::parse(data);
    let _ = spki_sm2_key(data);
    let _ = private_key_from_der(data);
});
