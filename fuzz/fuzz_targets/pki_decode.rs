//! Fuzz the PKI decoders: certificates, certification requests, SubjectPublicKeyInfos and private
//! keys from arbitrary bytes (peer certificates and enrolment requests arrive from the network).
#![no_main]

use libfuzzer_sys::fuzz_target;
use xy_gmtls::pki::{CertificationRequest, ParsedCertificate, private_key_from_der, spki_sm2_key};

fuzz_target!(|data: &[u8]| {
    let _ = ParsedCertificate::parse(data);
    let _ = CertificationRequest::parse_and_verify(data);
    let _ = spki_sm2_key(data);
    let _ = private_key_from_der(data);
});
