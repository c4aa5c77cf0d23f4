//! The rustls [`CryptoProvider`] of RFC 8998: TLS_SM4_GCM_SM3 (0x00C6) and TLS_SM4_CCM_SM3
//! (0x00C7), key exchange curveSM2 (0x0029), signatures sm2sig_sm3 (0x0708), and QUIC packet
//! protection (SM4-GCM/CCM) with SM4-ECB header protection (RFC 9001 §5.4.3).
//!
//! rustls 0.23 has no names for these code points; they are built with `::from(u16)`, so that a
//! later rustls with named variants still compares equal.

use std::sync::{Arc, LazyLock};

use hmac::{KeyInit as _, Mac as _};
use rustls::crypto::cipher::{
    AeadKey, InboundOpaqueMessage, InboundPlainMessage, Iv, MessageDecrypter, MessageEncrypter,
    Nonce, OutboundOpaqueMessage, OutboundPlainMessage, PrefixedPayload, Tls13AeadAlgorithm,
    UnsupportedOperationError, make_tls13_aad,
};
use rustls::crypto::tls13::HkdfUsingHmac;
use rustls::crypto::{
    ActiveKeyExchange, CipherSuiteCommon, CryptoProvider, GetRandomFailed, KeyProvider,
    SecureRandom, SharedSecret, SupportedKxGroup, WebPkiSupportedAlgorithms, hash, hmac as rhmac,
};
use rustls::pki_types::{
    AlgorithmIdentifier, InvalidSignature, PrivateKeyDer, SignatureVerificationAlgorithm,
};
use rustls::sign::{Signer, SigningKey};
use rustls::{
    CipherSuite, ConnectionTrafficSecrets, ContentType, Error, NamedGroup, ProtocolVersion,
    SignatureAlgorithm, SignatureScheme, SupportedCipherSuite, Tls13CipherSuite, quic,
};
use sm3::Digest as _;
use xy_shangmi::sm2::{
    CERT_DISTID, Sm2PublicKey, Sm2SecretKey, TLS13_DISTID, signature_from_der, signature_to_der,
};
use xy_shangmi::{GCM_NONCE_LEN, GCM_TAG_LEN, Sm4Aead, Sm4Ccm, Sm4Gcm};

/// TLS_SM4_GCM_SM3 (RFC 8998).
pub const TLS_SM4_GCM_SM3: u16 = 0x00c6;
/// TLS_SM4_CCM_SM3 (RFC 8998).
pub const TLS_SM4_CCM_SM3: u16 = 0x00c7;
/// curveSM2 (RFC 8998 §3.4).
pub const CURVE_SM2: u16 = 0x0029;
/// sm2sig_sm3 (RFC 8998 §3.2).
pub const SM2SIG_SM3: u16 = 0x0708;

/// The SM2 signature scheme as rustls names it.
pub fn sm2sig_sm3() -> SignatureScheme {
    SignatureScheme::from(SM2SIG_SM3)
}

// ---------------------------------------------------------------------------------------------
// SM3 hash and HMAC-SM3 (the HKDF of both suites).

struct Sm3Hash;

/// rustls has no name for SM3 among TLS 1.2 hash algorithms; 0x07 is not assigned to any other
/// hash, so resumption never confuses it with SHA-256 (0x04) or SHA-384 (0x05).
const SM3_HASH_ALGORITHM: u8 = 0x07;

impl hash::Hash for Sm3Hash {
    fn start(&self) -> Box<dyn hash::Context> {
        Box::new(Sm3Context(sm3::Sm3::new()))
    }

    fn hash(&self, data: &[u8]) -> hash::Output {
        hash::Output::new(&xy_shangmi::sm3(data))
    }

    fn output_len(&self) -> usize {
        xy_shangmi::SM3_LEN
    }

    fn algorithm(&self) -> hash::HashAlgorithm {
        hash::HashAlgorithm::from(SM3_HASH_ALGORITHM)
    }
}

struct Sm3Context(sm3::Sm3);

impl hash::Context for Sm3Context {
    fn fork_finish(&self) -> hash::Output {
        hash::Output::new(&self.0.clone().finalize())
    }

    fn fork(&self) -> Box<dyn hash::Context> {
        Box::new(Sm3Context(self.0.clone()))
    }

    fn finish(self: Box<Self>) -> hash::Output {
        hash::Output::new(&self.0.finalize())
    }

    fn update(&mut self, data: &[u8]) {
        self.0.update(data);
    }
}

struct HmacSm3;

impl rhmac::Hmac for HmacSm3 {
    fn with_key(&self, key: &[u8]) -> Box<dyn rhmac::Key> {
        // HMAC accepts keys of any length (long keys are hashed first).
        let mac = hmac::Hmac::<sm3::Sm3>::new_from_slice(key).unwrap_or_else(|_| {
            hmac::Hmac::<sm3::Sm3>::new_from_slice(&xy_shangmi::sm3(key))
                .expect("a 32-byte HMAC key is always accepted")
        });
        Box::new(HmacSm3Key(mac))
    }

    fn hash_output_len(&self) -> usize {
        xy_shangmi::SM3_LEN
    }
}

struct HmacSm3Key(hmac::Hmac<sm3::Sm3>);

impl rhmac::Key for HmacSm3Key {
    fn sign_concat(&self, first: &[u8], middle: &[&[u8]], last: &[u8]) -> rhmac::Tag {
        let mut mac = self.0.clone();
        mac.update(first);
        for part in middle {
            mac.update(part);
        }
        mac.update(last);
        rhmac::Tag::new(&mac.finalize().into_bytes())
    }

    fn tag_len(&self) -> usize {
        xy_shangmi::SM3_LEN
    }
}

static HMAC_SM3: HmacSm3 = HmacSm3;
static HKDF_SM3: HkdfUsingHmac<'static> = HkdfUsingHmac(&HMAC_SM3);

// ---------------------------------------------------------------------------------------------
// SM4-GCM and SM4-CCM for the TLS 1.3 record layer.

/// Which SM4 AEAD a suite uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sm4Mode {
    /// SM4-GCM (TLS_SM4_GCM_SM3).
    Gcm,
    /// SM4-CCM with a 16-byte tag (TLS_SM4_CCM_SM3).
    Ccm,
}

/// An SM4 AEAD keyed for one direction of a connection.
#[derive(Clone)]
enum Sm4Key {
    Gcm(Sm4Gcm),
    Ccm(Sm4Ccm),
}

impl Sm4Key {
    fn new(mode: Sm4Mode, key: &AeadKey) -> Self {
        // Both suites derive 16-byte keys (key_len below), which the SM4 AEADs always accept.
        const FIXED: &str = "SM4 key length is fixed by the suite";
        match mode {
            Sm4Mode::Gcm => Sm4Key::Gcm(Sm4Aead::new(key.as_ref()).expect(FIXED)),
            Sm4Mode::Ccm => Sm4Key::Ccm(Sm4Aead::new(key.as_ref()).expect(FIXED)),
        }
    }

    fn seal(
        &self,
        nonce: &[u8; GCM_NONCE_LEN],
        aad: &[u8],
        buffer: &mut [u8],
    ) -> [u8; GCM_TAG_LEN] {
        match self {
            Sm4Key::Gcm(k) => k.encrypt_detached(nonce, aad, buffer),
            Sm4Key::Ccm(k) => k.encrypt_detached(nonce, aad, buffer),
        }
    }

    /// Open `buffer` = ciphertext || tag in place; returns the plaintext length.
    fn open(
        &self,
        nonce: &[u8; GCM_NONCE_LEN],
        aad: &[u8],
        buffer: &mut [u8],
    ) -> Result<usize, Error> {
        let Some(plain_len) = buffer.len().checked_sub(GCM_TAG_LEN) else {
            return Err(Error::DecryptError);
        };
        let (body, tag) = buffer.split_at_mut(plain_len);
        let mut tag_bytes = [0u8; GCM_TAG_LEN];
        tag_bytes.copy_from_slice(tag);
        let result = match self {
            Sm4Key::Gcm(k) => k.decrypt_detached(nonce, aad, body, &tag_bytes),
            Sm4Key::Ccm(k) => k.decrypt_detached(nonce, aad, body, &tag_bytes),
        };
        result.map(|()| plain_len).map_err(|_| Error::DecryptError)
    }
}

struct Sm4Tls13Aead(Sm4Mode);

impl Tls13AeadAlgorithm for Sm4Tls13Aead {
    fn encrypter(&self, key: AeadKey, iv: Iv) -> Box<dyn MessageEncrypter> {
        Box::new(Sm4RecordCipher {
            key: Sm4Key::new(self.0, &key),
            iv,
        })
    }

    fn decrypter(&self, key: AeadKey, iv: Iv) -> Box<dyn MessageDecrypter> {
        Box::new(Sm4RecordCipher {
            key: Sm4Key::new(self.0, &key),
            iv,
        })
    }

    fn key_len(&self) -> usize {
        xy_shangmi::SM4_KEY_LEN
    }

    fn extract_keys(
        &self,
        _key: AeadKey,
        _iv: Iv,
    ) -> Result<ConnectionTrafficSecrets, UnsupportedOperationError> {
        // rustls has no SM4 variant of ConnectionTrafficSecrets (used for kernel TLS offload).
        Err(UnsupportedOperationError)
    }
}

struct Sm4RecordCipher {
    key: Sm4Key,
    iv: Iv,
}

impl MessageEncrypter for Sm4RecordCipher {
    fn encrypt(
        &mut self,
        msg: OutboundPlainMessage<'_>,
        seq: u64,
    ) -> Result<OutboundOpaqueMessage, Error> {
        let total_len = self.encrypted_payload_len(msg.payload.len());
        let mut payload = PrefixedPayload::with_capacity(total_len);
        payload.extend_from_chunks(&msg.payload);
        payload.extend_from_slice(&msg.typ.to_array());
        let nonce = Nonce::new(&self.iv, seq).0;
        let tag = self
            .key
            .seal(&nonce, &make_tls13_aad(total_len), payload.as_mut());
        payload.extend_from_slice(&tag);
        Ok(OutboundOpaqueMessage::new(
            ContentType::ApplicationData,
            ProtocolVersion::TLSv1_2,
            payload,
        ))
    }

    fn encrypted_payload_len(&self, payload_len: usize) -> usize {
        payload_len + 1 + GCM_TAG_LEN
    }
}

impl MessageDecrypter for Sm4RecordCipher {
    fn decrypt<'a>(
        &mut self,
        mut msg: InboundOpaqueMessage<'a>,
        seq: u64,
    ) -> Result<InboundPlainMessage<'a>, Error> {
        let payload = &mut msg.payload;
        let nonce = Nonce::new(&self.iv, seq).0;
        let aad = make_tls13_aad(payload.len());
        let plain_len = self.key.open(&nonce, &aad, payload)?;
        payload.truncate(plain_len);
        msg.into_tls13_unpadded_message()
    }
}

// ---------------------------------------------------------------------------------------------
// QUIC packet and header protection (RFC 9001 §5.3, §5.4.3 with SM4 in place of AES).

struct Sm4Quic {
    mode: Sm4Mode,
    confidentiality_limit: u64,
    integrity_limit: u64,
}

/// QUIC packet keys derived so far in this process (each key phase derives one per direction):
/// lets tests and operators see that key updates really happened.
static PACKET_KEYS_DERIVED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// How many SM4 QUIC packet keys this process has derived (handshake, 1-RTT and every key update).
pub fn packet_keys_derived() -> u64 {
    PACKET_KEYS_DERIVED.load(std::sync::atomic::Ordering::Relaxed)
}

impl quic::Algorithm for Sm4Quic {
    fn packet_key(&self, key: AeadKey, iv: Iv) -> Box<dyn quic::PacketKey> {
        PACKET_KEYS_DERIVED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Box::new(Sm4PacketKey {
            key: Sm4Key::new(self.mode, &key),
            iv,
            confidentiality_limit: self.confidentiality_limit,
            integrity_limit: self.integrity_limit,
        })
    }

    fn header_protection_key(&self, key: AeadKey) -> Box<dyn quic::HeaderProtectionKey> {
        let mut bytes = [0u8; 16];
        bytes.copy_from_slice(&key.as_ref()[..16]);
        Box::new(Sm4HeaderProtection(xy_shangmi::Sm4Block::new_detected(
            &bytes,
        )))
    }

    fn aead_key_len(&self) -> usize {
        xy_shangmi::SM4_KEY_LEN
    }
}

struct Sm4PacketKey {
    key: Sm4Key,
    iv: Iv,
    confidentiality_limit: u64,
    integrity_limit: u64,
}

impl quic::PacketKey for Sm4PacketKey {
    fn encrypt_in_place(
        &self,
        packet_number: u64,
        header: &[u8],
        payload: &mut [u8],
    ) -> Result<quic::Tag, Error> {
        let nonce = Nonce::new(&self.iv, packet_number).0;
        Ok(quic::Tag::from(&self.key.seal(&nonce, header, payload)[..]))
    }

    fn decrypt_in_place<'a>(
        &self,
        packet_number: u64,
        header: &[u8],
        payload: &'a mut [u8],
    ) -> Result<&'a [u8], Error> {
        let nonce = Nonce::new(&self.iv, packet_number).0;
        let plain_len = self.key.open(&nonce, header, payload)?;
        Ok(&payload[..plain_len])
    }

    fn tag_len(&self) -> usize {
        GCM_TAG_LEN
    }

    fn confidentiality_limit(&self) -> u64 {
        self.confidentiality_limit
    }

    fn integrity_limit(&self) -> u64 {
        self.integrity_limit
    }
}

/// Header protection by SM4-ECB of the 16-byte sample (RFC 9001 §5.4.3 with SM4 for AES), on the
/// key expanded once.
struct Sm4HeaderProtection(xy_shangmi::Sm4Block);

impl Sm4HeaderProtection {
    fn apply(
        &self,
        sample: &[u8],
        first: &mut u8,
        packet_number: &mut [u8],
        unmasking: bool,
    ) -> Result<(), Error> {
        let Ok(sample) = <[u8; 16]>::try_from(sample) else {
            return Err(Error::General(
                "header protection sample must be 16 bytes".into(),
            ));
        };
        if packet_number.len() > 4 {
            return Err(Error::General("packet number longer than 4 bytes".into()));
        }
        let mut mask = sample;
        self.0.encrypt_block(&mut mask);
        let bits = if *first & 0x80 == 0x80 { 0x0f } else { 0x1f };
        let first_plain = if unmasking {
            *first ^ (mask[0] & bits)
        } else {
            *first
        };
        let pn_len = usize::from(first_plain & 0x03) + 1;
        *first ^= mask[0] & bits;
        for (byte, m) in packet_number.iter_mut().zip(&mask[1..]).take(pn_len) {
            *byte ^= m;
        }
        Ok(())
    }
}

impl quic::HeaderProtectionKey for Sm4HeaderProtection {
    fn encrypt_in_place(
        &self,
        sample: &[u8],
        first: &mut u8,
        packet_number: &mut [u8],
    ) -> Result<(), Error> {
        self.apply(sample, first, packet_number, false)
    }

    fn decrypt_in_place(
        &self,
        sample: &[u8],
        first: &mut u8,
        packet_number: &mut [u8],
    ) -> Result<(), Error> {
        self.apply(sample, first, packet_number, true)
    }

    fn sample_len(&self) -> usize {
        16
    }
}

// Limits as RFC 9001 §6.6 sets them for AES-128-GCM and AES-128-CCM: SM4 is a 128-bit block cipher
// in the same modes, so the same bounds apply.
static SM4_GCM_QUIC: Sm4Quic = Sm4Quic {
    mode: Sm4Mode::Gcm,
    confidentiality_limit: 1 << 23,
    integrity_limit: 1 << 52,
};
static SM4_CCM_QUIC: Sm4Quic = Sm4Quic {
    mode: Sm4Mode::Ccm,
    confidentiality_limit: 2_965_820, // 2^21.5
    integrity_limit: 2_965_820,
};

static SM4_GCM_AEAD: Sm4Tls13Aead = Sm4Tls13Aead(Sm4Mode::Gcm);
static SM4_CCM_AEAD: Sm4Tls13Aead = Sm4Tls13Aead(Sm4Mode::Ccm);
static SM3_HASH: Sm3Hash = Sm3Hash;

/// TLS_SM4_GCM_SM3 as a rustls TLS 1.3 suite (QUIC-capable). Built at first use, because the
/// code point comes from `CipherSuite::from(u16)`, which is not `const`.
pub static TLS13_SM4_GCM_SM3: LazyLock<Tls13CipherSuite> = LazyLock::new(|| Tls13CipherSuite {
    common: CipherSuiteCommon {
        suite: CipherSuite::from(TLS_SM4_GCM_SM3),
        hash_provider: &SM3_HASH,
        confidentiality_limit: 1 << 24,
    },
    hkdf_provider: &HKDF_SM3,
    aead_alg: &SM4_GCM_AEAD,
    quic: Some(&SM4_GCM_QUIC),
});

/// TLS_SM4_CCM_SM3 as a rustls TLS 1.3 suite (QUIC-capable).
pub static TLS13_SM4_CCM_SM3: LazyLock<Tls13CipherSuite> = LazyLock::new(|| Tls13CipherSuite {
    common: CipherSuiteCommon {
        suite: CipherSuite::from(TLS_SM4_CCM_SM3),
        hash_provider: &SM3_HASH,
        confidentiality_limit: 1 << 23,
    },
    hkdf_provider: &HKDF_SM3,
    aead_alg: &SM4_CCM_AEAD,
    quic: Some(&SM4_CCM_QUIC),
});

/// The QUIC suite of TLS_SM4_GCM_SM3 (for key-schedule checks against the regression vector).
pub fn sm4_gcm_quic_suite() -> quic::Suite {
    quic::Suite {
        suite: &TLS13_SM4_GCM_SM3,
        quic: &SM4_GCM_QUIC,
    }
}

// ---------------------------------------------------------------------------------------------
// curveSM2 key exchange.

/// Randomness from the operating system (getrandom).
#[derive(Debug)]
pub struct OsRandom;

impl SecureRandom for OsRandom {
    fn fill(&self, buf: &mut [u8]) -> Result<(), GetRandomFailed> {
        getrandom::fill(buf).map_err(|_| GetRandomFailed)
    }
}

static OS_RANDOM: OsRandom = OsRandom;

/// curveSM2 (0x0029): plain ephemeral ECDH on the SM2 curve (RFC 8998 §3.4).
#[derive(Debug)]
struct CurveSm2 {
    random: &'static dyn SecureRandom,
}

static CURVE_SM2_GROUP: CurveSm2 = CurveSm2 { random: &OS_RANDOM };

impl SupportedKxGroup for CurveSm2 {
    fn start(&self) -> Result<Box<dyn ActiveKeyExchange>, Error> {
        let mut failed = false;
        let secret = Sm2SecretKey::generate(&mut |bytes| {
            failed |= self.random.fill(bytes).is_err();
        });
        if failed {
            return Err(Error::FailedToGetRandomBytes);
        }
        let public = secret.public_key().to_sec1();
        Ok(Box::new(Sm2KeyExchange { secret, public }))
    }

    fn name(&self) -> NamedGroup {
        NamedGroup::from(CURVE_SM2)
    }
}

struct Sm2KeyExchange {
    secret: Sm2SecretKey,
    public: [u8; 65],
}

impl ActiveKeyExchange for Sm2KeyExchange {
    fn complete(self: Box<Self>, peer_pub_key: &[u8]) -> Result<SharedSecret, Error> {
        // RFC 8998 §3.4: uncompressed 65-byte points only; the point must be on the curve and not
        // the identity (from_sec1 checks both).
        if peer_pub_key.len() != 65 || peer_pub_key[0] != 0x04 {
            return Err(Error::from(rustls::PeerMisbehaved::InvalidKeyShare));
        }
        let peer = Sm2PublicKey::from_sec1(peer_pub_key)
            .map_err(|_| Error::from(rustls::PeerMisbehaved::InvalidKeyShare))?;
        Ok(SharedSecret::from(&self.secret.diffie_hellman(&peer)[..]))
    }

    fn pub_key(&self) -> &[u8] {
        &self.public
    }

    fn group(&self) -> NamedGroup {
        NamedGroup::from(CURVE_SM2)
    }
}

// ---------------------------------------------------------------------------------------------
// SM2 signing (CertificateVerify) and key loading.

/// An SM2 key that signs TLS 1.3 CertificateVerify messages under a distinguishing id
/// ([`TLS13_DISTID`] unless a test asks otherwise).
#[derive(Debug)]
pub struct Sm2SigningKey {
    key: Arc<Sm2SecretKey>,
    distid: &'static str,
}

impl Sm2SigningKey {
    /// A signing key using the RFC 8998 CertificateVerify id.
    pub fn new(key: Sm2SecretKey) -> Self {
        Self::with_distid(key, TLS13_DISTID)
    }

    /// A signing key with another distinguishing id: only for showing that a peer signing under
    /// the wrong id is refused.
    pub fn with_distid(key: Sm2SecretKey, distid: &'static str) -> Self {
        Self {
            key: Arc::new(key),
            distid,
        }
    }
}

impl SigningKey for Sm2SigningKey {
    fn choose_scheme(&self, offered: &[SignatureScheme]) -> Option<Box<dyn Signer>> {
        offered.contains(&sm2sig_sm3()).then(|| {
            Box::new(Sm2Signer {
                key: Arc::clone(&self.key),
                distid: self.distid,
            }) as Box<dyn Signer>
        })
    }

    fn public_key(&self) -> Option<rustls::pki_types::SubjectPublicKeyInfoDer<'_>> {
        Some(self.key.public_key().to_spki_der().into())
    }

    fn algorithm(&self) -> SignatureAlgorithm {
        // rustls has no SM2 entry; SM2 is an elliptic-curve signature, and this value only matters
        // for TLS 1.2 suite selection, which this provider does not offer.
        SignatureAlgorithm::ECDSA
    }
}

#[derive(Debug)]
struct Sm2Signer {
    key: Arc<Sm2SecretKey>,
    distid: &'static str,
}

impl Signer for Sm2Signer {
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, Error> {
        self.key
            .sign(self.distid, message)
            .and_then(|sig| signature_to_der(&sig))
            .map_err(|e| Error::General(format!("SM2 signing failed: {e}")))
    }

    fn scheme(&self) -> SignatureScheme {
        sm2sig_sm3()
    }
}

/// Loads SM2 private keys (PKCS#8 or SEC1 DER); any other key type is refused.
#[derive(Debug)]
struct Sm2KeyProvider;

impl KeyProvider for Sm2KeyProvider {
    fn load_private_key(
        &self,
        key_der: PrivateKeyDer<'static>,
    ) -> Result<Arc<dyn SigningKey>, Error> {
        let key = crate::pki::private_key_from_der(key_der.secret_der())
            .map_err(|e| Error::General(e.to_string()))?;
        Ok(Arc::new(Sm2SigningKey::new(key)))
    }
}

static SM2_KEY_PROVIDER: Sm2KeyProvider = Sm2KeyProvider;

// ---------------------------------------------------------------------------------------------
// SM2 signature verification for webpki: one algorithm per distinguishing id.

/// The DER content of the AlgorithmIdentifier of an SM2 public key: id-ecPublicKey, curve SM2.
const SM2_PUBLIC_KEY_ALG_ID: &[u8] = &[
    0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a, 0x81, 0x1c, 0xcf, 0x55,
    0x01, 0x82, 0x2d,
];
/// sm2-with-SM3 (1.2.156.10197.1.501) without parameters, as RFC 5758-style encoders write it.
const SM2_WITH_SM3_ALG_ID: &[u8] = &[0x06, 0x08, 0x2a, 0x81, 0x1c, 0xcf, 0x55, 0x01, 0x83, 0x75];
/// sm2-with-SM3 with explicit NULL parameters, as some older CAs write it.
const SM2_WITH_SM3_NULL_ALG_ID: &[u8] = &[
    0x06, 0x08, 0x2a, 0x81, 0x1c, 0xcf, 0x55, 0x01, 0x83, 0x75, 0x05, 0x00,
];

/// SM2 with SM3 under one distinguishing id, for webpki.
#[derive(Debug)]
pub struct Sm2Verification {
    distid: &'static str,
    signature_alg_id: &'static [u8],
}

impl SignatureVerificationAlgorithm for Sm2Verification {
    fn verify_signature(
        &self,
        public_key: &[u8],
        message: &[u8],
        signature: &[u8],
    ) -> Result<(), InvalidSignature> {
        let key = Sm2PublicKey::from_sec1(public_key).map_err(|_| InvalidSignature)?;
        let signature = signature_from_der(signature).map_err(|_| InvalidSignature)?;
        key.verify(self.distid, message, &signature)
            .map_err(|_| InvalidSignature)
    }

    fn public_key_alg_id(&self) -> AlgorithmIdentifier {
        AlgorithmIdentifier::from_slice(SM2_PUBLIC_KEY_ALG_ID)
    }

    fn signature_alg_id(&self) -> AlgorithmIdentifier {
        AlgorithmIdentifier::from_slice(self.signature_alg_id)
    }
}

/// Certificate and CRL signatures: distinguishing id `1234567812345678`.
pub static SM2_SM3_CERTIFICATES: Sm2Verification = Sm2Verification {
    distid: CERT_DISTID,
    signature_alg_id: SM2_WITH_SM3_ALG_ID,
};
static SM2_SM3_CERTIFICATES_NULL_PARAMS: Sm2Verification = Sm2Verification {
    distid: CERT_DISTID,
    signature_alg_id: SM2_WITH_SM3_NULL_ALG_ID,
};
/// TLS 1.3 CertificateVerify: distinguishing id `TLSv1.3+GM+Cipher+Suite` (RFC 8998 §3.2.1).
pub static SM2_SM3_TLS13: Sm2Verification = Sm2Verification {
    distid: TLS13_DISTID,
    signature_alg_id: SM2_WITH_SM3_ALG_ID,
};

static CERTIFICATE_SIGNATURE_ALGORITHMS: [&dyn SignatureVerificationAlgorithm; 2] =
    [&SM2_SM3_CERTIFICATES, &SM2_SM3_CERTIFICATES_NULL_PARAMS];
static TLS13_SIGNATURE_ALGORITHMS: [&dyn SignatureVerificationAlgorithm; 1] = [&SM2_SM3_TLS13];
static SCHEME_MAPPING: LazyLock<[(SignatureScheme, &[&dyn SignatureVerificationAlgorithm]); 1]> =
    LazyLock::new(|| [(sm2sig_sm3(), &TLS13_SIGNATURE_ALGORITHMS[..])]);

/// Chains and CRLs verify with the certificate id; handshake signatures with the TLS 1.3 id.
pub fn sm2_verification() -> WebPkiSupportedAlgorithms {
    WebPkiSupportedAlgorithms {
        all: &CERTIFICATE_SIGNATURE_ALGORITHMS,
        mapping: &*SCHEME_MAPPING,
    }
}

/// The RFC 8998 provider offering both SM4 suites (GCM preferred).
pub fn provider() -> CryptoProvider {
    provider_with_suites(&[Sm4Mode::Gcm, Sm4Mode::Ccm])
}

/// The RFC 8998 provider offering exactly `suites`, in that order of preference.
pub fn provider_with_suites(suites: &[Sm4Mode]) -> CryptoProvider {
    CryptoProvider {
        cipher_suites: suites
            .iter()
            .map(|mode| match mode {
                Sm4Mode::Gcm => SupportedCipherSuite::Tls13(&TLS13_SM4_GCM_SM3),
                Sm4Mode::Ccm => SupportedCipherSuite::Tls13(&TLS13_SM4_CCM_SM3),
            })
            .collect(),
        kx_groups: vec![&CURVE_SM2_GROUP],
        signature_verification_algorithms: sm2_verification(),
        secure_random: &OS_RANDOM,
        key_provider: &SM2_KEY_PROVIDER,
    }
}
