//! SM2 X.509 v3 certificates, CRLs and PKCS#8 keys: issuing, parsing and PEM.
//!
//! Certificates carry an SM2 key (id-ecPublicKey with the curve 1.2.156.10197.1.301) and are signed
//! sm2-with-SM3 (1.2.156.10197.1.501) under the distinguishing id `1234567812345678`. A node's
//! certificate names its jurisdiction (GB/T 2260 administrative division code, e.g. 510000 for the
//! province, 510100 for Chengdu) and its role in a non-critical extension ([`IDENTITY_EXTENSION_OID`]),
//! so that OpenSSL and webpki, which do not know it, still verify the certificate.
//!
//! Everything here is sans-IO: serial numbers and validity times are arguments.

use xy_shangmi::sm2::{
    CERT_DISTID, Sm2PublicKey, Sm2SecretKey, signature_from_der, signature_to_der,
};

use crate::GmTlsError;
use crate::der::{self, Reader};

/// OID arcs of the xinyong node-identity extension, under the UUID arc 2.25 (ITU-T X.667), which
/// needs no registration. Its value is `SEQUENCE { jurisdiction PrintableString, role UTF8String }`.
pub const IDENTITY_EXTENSION_OID: [u128; 3] =
    [2, 25, 230_382_225_600_569_974_255_306_588_418_319_400_387];

const OID_EC_PUBLIC_KEY: [u128; 6] = [1, 2, 840, 10045, 2, 1];
const OID_SM2_CURVE: [u128; 6] = [1, 2, 156, 10197, 1, 301];
const OID_SM2_WITH_SM3: [u128; 6] = [1, 2, 156, 10197, 1, 501];
const OID_COUNTRY: [u128; 4] = [2, 5, 4, 6];
const OID_ORGANIZATION: [u128; 4] = [2, 5, 4, 10];
const OID_ORGANIZATIONAL_UNIT: [u128; 4] = [2, 5, 4, 11];
const OID_COMMON_NAME: [u128; 4] = [2, 5, 4, 3];
const OID_BASIC_CONSTRAINTS: [u128; 4] = [2, 5, 29, 19];
const OID_KEY_USAGE: [u128; 4] = [2, 5, 29, 15];
const OID_EXT_KEY_USAGE: [u128; 4] = [2, 5, 29, 37];
const OID_SUBJECT_ALT_NAME: [u128; 4] = [2, 5, 29, 17];
const OID_SUBJECT_KEY_ID: [u128; 4] = [2, 5, 29, 14];
const OID_AUTHORITY_KEY_ID: [u128; 4] = [2, 5, 29, 35];
const OID_CRL_NUMBER: [u128; 4] = [2, 5, 29, 20];
const OID_SERVER_AUTH: [u128; 9] = [1, 3, 6, 1, 5, 5, 7, 3, 1];
const OID_CLIENT_AUTH: [u128; 9] = [1, 3, 6, 1, 5, 5, 7, 3, 2];

/// The role a certificate grants (统一身份认证: nodes by level, and clients).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    /// The provincial node (省级节点).
    ProvinceNode,
    /// A prefecture's node (市级节点).
    PrefectureNode,
    /// A financial institution's client (金融机构).
    InstitutionClient,
    /// A department's client (部门).
    DepartmentClient,
}

impl Role {
    /// Every role, in a stable order.
    pub const ALL: [Role; 4] = [
        Role::ProvinceNode,
        Role::PrefectureNode,
        Role::InstitutionClient,
        Role::DepartmentClient,
    ];

    /// The name used in certificates, configuration and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::ProvinceNode => "province-node",
            Role::PrefectureNode => "prefecture-node",
            Role::InstitutionClient => "institution-client",
            Role::DepartmentClient => "department-client",
        }
    }

    /// The role of a name made by [`Role::as_str`].
    pub fn parse(name: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|role| role.as_str() == name)
    }

    /// Nodes serve peers (TLS server and client); institution and department clients only connect.
    pub fn is_node(self) -> bool {
        matches!(self, Role::ProvinceNode | Role::PrefectureNode)
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Who a certificate speaks for: a jurisdiction (GB/T 2260 code) and a role.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct PeerIdentity {
    /// Six-digit administrative division code, e.g. `510000` (Sichuan), `510100` (Chengdu).
    pub jurisdiction: String,
    /// The role the certificate grants.
    pub role: Role,
}

impl PeerIdentity {
    /// An identity, refused unless the jurisdiction is six ASCII digits.
    pub fn new(jurisdiction: &str, role: Role) -> Result<Self, GmTlsError> {
        if jurisdiction.len() != 6 || !jurisdiction.bytes().all(|b| b.is_ascii_digit()) {
            return Err(GmTlsError::Certificate(format!(
                "jurisdiction must be a six-digit GB/T 2260 code, got {jurisdiction:?}"
            )));
        }
        Ok(Self {
            jurisdiction: jurisdiction.to_owned(),
            role,
        })
    }
}

/// What a new certificate says about its subject.
#[derive(Clone, Debug)]
pub struct CertificateProfile {
    /// The subject's common name, also its DNS name for server-name checks.
    pub common_name: String,
    /// Further DNS names (subjectAltName).
    pub dns_names: Vec<String>,
    /// Jurisdiction and role; `None` for a CA.
    pub identity: Option<PeerIdentity>,
    /// Start of validity, seconds since the Unix epoch.
    pub not_before: u64,
    /// End of validity, seconds since the Unix epoch.
    pub not_after: u64,
    /// A certificate authority (may sign certificates and CRLs) rather than an end entity.
    pub is_ca: bool,
}

fn sm2_with_sm3_algorithm() -> Vec<u8> {
    der::sequence(&[&der::oid(&OID_SM2_WITH_SM3)])
}

fn name(common_name: &str, unit: Option<&str>) -> Vec<u8> {
    let attribute = |oid: &[u128], tag: u8, value: &str| {
        der::tlv(
            der::SET,
            &der::sequence(&[&der::oid(oid), &der::tlv(tag, value.as_bytes())]),
        )
    };
    let mut rdns = vec![
        attribute(&OID_COUNTRY, der::PRINTABLE_STRING, "CN"),
        attribute(&OID_ORGANIZATION, der::UTF8_STRING, "xinyong"),
    ];
    if let Some(unit) = unit {
        rdns.push(attribute(&OID_ORGANIZATIONAL_UNIT, der::UTF8_STRING, unit));
    }
    rdns.push(attribute(&OID_COMMON_NAME, der::UTF8_STRING, common_name));
    der::tlv(der::SEQUENCE, &rdns.concat())
}

fn extension(oid: &[u128], critical: bool, value: &[u8]) -> Vec<u8> {
    let oid = der::oid(oid);
    let value = der::tlv(der::OCTET_STRING, value);
    if critical {
        der::sequence(&[&oid, &der::tlv(der::BOOLEAN, &[0xff]), &value])
    } else {
        der::sequence(&[&oid, &value])
    }
}

/// The key identifier of a public key: the first 20 bytes of the SM3 digest of its point.
pub fn key_identifier(key: &Sm2PublicKey) -> [u8; 20] {
    let digest = xy_shangmi::sm3(&key.to_sec1());
    let mut out = [0u8; 20];
    out.copy_from_slice(&digest[..20]);
    out
}

fn signed(tbs: Vec<u8>, signer: &Sm2SecretKey) -> Result<Vec<u8>, GmTlsError> {
    let signature = signer
        .sign(CERT_DISTID, &tbs)
        .and_then(|sig| signature_to_der(&sig))?;
    Ok(der::sequence(&[
        &tbs,
        &sm2_with_sm3_algorithm(),
        &der::bit_string(&signature),
    ]))
}

/// The issuer of new certificates and CRLs: a CA certificate and its key.
#[derive(Debug)]
pub struct Issuer<'a> {
    subject_name: Vec<u8>,
    key_id: [u8; 20],
    key: &'a Sm2SecretKey,
}

impl<'a> Issuer<'a> {
    /// An issuer from its certificate (DER) and key; refused if they do not belong together or the
    /// certificate is not a CA.
    pub fn new(certificate: &[u8], key: &'a Sm2SecretKey) -> Result<Self, GmTlsError> {
        let parsed = ParsedCertificate::parse(certificate)?;
        if parsed.public_key != key.public_key() {
            return Err(GmTlsError::Certificate(
                "the CA key does not match the CA certificate".into(),
            ));
        }
        if !parsed.is_ca {
            return Err(GmTlsError::Certificate(
                "the issuing certificate is not a CA (basicConstraints)".into(),
            ));
        }
        Ok(Self {
            subject_name: parsed.subject.to_vec(),
            key_id: key_identifier(&parsed.public_key),
            key,
        })
    }

    /// A self-signed root certificate for `key`.
    pub fn self_signed(
        key: &Sm2SecretKey,
        profile: &CertificateProfile,
        serial: &[u8],
    ) -> Result<Vec<u8>, GmTlsError> {
        let public = key.public_key();
        let subject = name(&profile.common_name, None);
        let key_id = key_identifier(&public);
        let tbs = tbs_certificate(serial, &subject, &subject, &key_id, &public, profile);
        signed(tbs, key)
    }

    /// Issue a certificate for `subject_key` (serial: up to 20 bytes of the caller's randomness).
    pub fn issue(
        &self,
        subject_key: &Sm2PublicKey,
        profile: &CertificateProfile,
        serial: &[u8],
    ) -> Result<Vec<u8>, GmTlsError> {
        let unit = profile.identity.as_ref().map(|id| id.role.as_str());
        let subject = name(&profile.common_name, unit);
        let tbs = tbs_certificate(
            serial,
            &self.subject_name,
            &subject,
            &self.key_id,
            subject_key,
            profile,
        );
        signed(tbs, self.key)
    }

    /// A v2 CRL listing `revoked` (serial, revocation time), valid from `this_update` to
    /// `next_update`, with CRL number `number`.
    pub fn revocation_list(
        &self,
        revoked: &[(Vec<u8>, u64)],
        this_update: u64,
        next_update: u64,
        number: u64,
    ) -> Result<Vec<u8>, GmTlsError> {
        let entries: Vec<Vec<u8>> = revoked
            .iter()
            .map(|(serial, at)| der::sequence(&[&der::unsigned_integer(serial), &der::time(*at)]))
            .collect();
        let aki = der::sequence(&[&der::tlv(0x80, &self.key_id)]);
        let extensions = der::explicit(
            0,
            &der::sequence(&[
                &extension(&OID_AUTHORITY_KEY_ID, false, &aki),
                &extension(
                    &OID_CRL_NUMBER,
                    false,
                    &der::unsigned_integer(&number.to_be_bytes()),
                ),
            ]),
        );
        let mut parts: Vec<&[u8]> = Vec::new();
        let version = der::unsigned_integer(&[1]);
        let algorithm = sm2_with_sm3_algorithm();
        let this = der::time(this_update);
        let next = der::time(next_update);
        let list = der::tlv(der::SEQUENCE, &entries.concat());
        parts.extend([
            version.as_slice(),
            &algorithm,
            &self.subject_name,
            &this,
            &next,
        ]);
        if !entries.is_empty() {
            parts.push(&list);
        }
        parts.push(&extensions);
        signed(der::sequence(&parts), self.key)
    }
}

fn tbs_certificate(
    serial: &[u8],
    issuer: &[u8],
    subject: &[u8],
    issuer_key_id: &[u8; 20],
    subject_key: &Sm2PublicKey,
    profile: &CertificateProfile,
) -> Vec<u8> {
    let mut extensions = Vec::new();
    if profile.is_ca {
        let constraints = der::sequence(&[
            &der::tlv(der::BOOLEAN, &[0xff]),
            &der::unsigned_integer(&[0]),
        ]);
        extensions.push(extension(&OID_BASIC_CONSTRAINTS, true, &constraints));
        // keyCertSign (bit 5) and cRLSign (bit 6).
        extensions.push(extension(
            &OID_KEY_USAGE,
            true,
            &der::tlv(der::BIT_STRING, &[0x01, 0x06]),
        ));
    } else {
        extensions.push(extension(&OID_BASIC_CONSTRAINTS, true, &der::sequence(&[])));
        // digitalSignature (bit 0).
        extensions.push(extension(
            &OID_KEY_USAGE,
            true,
            &der::tlv(der::BIT_STRING, &[0x07, 0x80]),
        ));
        let usages = match profile.identity.as_ref().map(|id| id.role) {
            Some(role) if !role.is_node() => der::sequence(&[&der::oid(&OID_CLIENT_AUTH)]),
            _ => der::sequence(&[&der::oid(&OID_SERVER_AUTH), &der::oid(&OID_CLIENT_AUTH)]),
        };
        extensions.push(extension(&OID_EXT_KEY_USAGE, false, &usages));
        let names: Vec<Vec<u8>> = std::iter::once(&profile.common_name)
            .chain(&profile.dns_names)
            .map(|dns| der::tlv(0x82, dns.as_bytes()))
            .collect();
        extensions.push(extension(
            &OID_SUBJECT_ALT_NAME,
            false,
            &der::tlv(der::SEQUENCE, &names.concat()),
        ));
    }
    extensions.push(extension(
        &OID_SUBJECT_KEY_ID,
        false,
        &der::tlv(der::OCTET_STRING, &key_identifier(subject_key)),
    ));
    extensions.push(extension(
        &OID_AUTHORITY_KEY_ID,
        false,
        &der::sequence(&[&der::tlv(0x80, issuer_key_id)]),
    ));
    if let Some(identity) = &profile.identity {
        let value = der::sequence(&[
            &der::tlv(der::PRINTABLE_STRING, identity.jurisdiction.as_bytes()),
            &der::tlv(der::UTF8_STRING, identity.role.as_str().as_bytes()),
        ]);
        extensions.push(extension(&IDENTITY_EXTENSION_OID, false, &value));
    }
    der::sequence(&[
        &der::explicit(0, &der::unsigned_integer(&[2])),
        &der::unsigned_integer(serial),
        &sm2_with_sm3_algorithm(),
        issuer,
        &der::sequence(&[
            &der::time(profile.not_before),
            &der::time(profile.not_after),
        ]),
        subject,
        &subject_key.to_spki_der(),
        &der::explicit(3, &der::tlv(der::SEQUENCE, &extensions.concat())),
    ])
}

/// Check that `certificate` (DER) was signed by the CA certificate `issuer` (DER) with
/// SM2-with-SM3 under the issuer's key. Validity dates and revocation are the caller's to check.
pub fn verify_signed_by(certificate: &[u8], issuer: &[u8]) -> Result<(), GmTlsError> {
    let issuer = ParsedCertificate::parse(issuer)?;
    let outer = Reader::new(certificate)
        .expect(der::SEQUENCE)
        .ok_or_else(|| bad("not a DER SEQUENCE"))?;
    let mut parts = Reader::new(outer.content);
    let tbs = parts
        .expect(der::SEQUENCE)
        .ok_or_else(|| bad("no tbsCertificate"))?;
    let algorithm = parts
        .expect(der::SEQUENCE)
        .ok_or_else(|| bad("no signature algorithm"))?;
    if algorithm.raw != sm2_with_sm3_algorithm().as_slice() {
        return Err(GmTlsError::Certificate(
            "the certificate is not signed with SM2-with-SM3".into(),
        ));
    }
    let signature = parts
        .expect(der::BIT_STRING)
        .and_then(|b| {
            b.content
                .split_first()
                .filter(|(unused, _)| **unused == 0)
                .map(|(_, s)| s)
        })
        .ok_or_else(|| bad("signature"))?;
    let signature = signature_from_der(signature).map_err(|_| bad("signature"))?;
    issuer
        .public_key
        .verify(CERT_DISTID, tbs.raw, &signature)
        .map_err(|_| GmTlsError::Certificate("the certificate was not signed by this CA".into()))
}

/// A PKCS#10 certification request (RFC 2986) for `key`, signed by it: what a node sends the
/// coordinator to enrol. The CA decides the certificate's subject and identity; the request proves
/// possession of the key.
pub fn certification_request(key: &Sm2SecretKey, common_name: &str) -> Result<Vec<u8>, GmTlsError> {
    let info = der::sequence(&[
        &der::unsigned_integer(&[0]),
        &name(common_name, None),
        &key.public_key().to_spki_der(),
        &der::tlv(0xa0, &[]),
    ]);
    signed(info, key)
}

/// A verified certification request: its signature checked under its own SM2 key.
#[derive(Debug)]
pub struct CertificationRequest {
    /// The key to certify.
    pub public_key: Sm2PublicKey,
    /// The requested subject Name, DER (advisory).
    pub subject: Vec<u8>,
}

impl CertificationRequest {
    /// Parse a DER PKCS#10 request and verify its SM2-with-SM3 signature; anything else is
    /// refused with the reason.
    pub fn parse_and_verify(request: &[u8]) -> Result<Self, GmTlsError> {
        let bad = |what: &str| {
            GmTlsError::Certificate(format!("malformed certification request: {what}"))
        };
        let outer = Reader::new(request)
            .expect(der::SEQUENCE)
            .ok_or_else(|| bad("not a DER SEQUENCE"))?;
        let mut parts = Reader::new(outer.content);
        let info = parts
            .expect(der::SEQUENCE)
            .ok_or_else(|| bad("no certificationRequestInfo"))?;
        let algorithm = parts
            .expect(der::SEQUENCE)
            .ok_or_else(|| bad("no signature algorithm"))?;
        if algorithm.raw != sm2_with_sm3_algorithm().as_slice() {
            return Err(GmTlsError::Certificate(
                "the certification request is not signed with SM2-with-SM3".into(),
            ));
        }
        let signature = parts
            .expect(der::BIT_STRING)
            .ok_or_else(|| bad("no signature"))?;
        let mut fields = Reader::new(info.content);
        fields.expect(der::INTEGER).ok_or_else(|| bad("version"))?;
        let subject = fields.expect(der::SEQUENCE).ok_or_else(|| bad("subject"))?;
        let spki = fields
            .expect(der::SEQUENCE)
            .ok_or_else(|| bad("subjectPublicKeyInfo"))?;
        let public_key = spki_sm2_key(spki.raw)?;
        let signature = signature
            .content
            .split_first()
            .filter(|(unused, _)| **unused == 0)
            .map(|(_, der_signature)| der_signature)
            .ok_or_else(|| bad("signature bit string"))?;
        let signature = signature_from_der(signature)
            .map_err(|_| bad("signature is not a DER SM2 signature"))?;
        public_key
            .verify(CERT_DISTID, info.raw, &signature)
            .map_err(|_| {
                GmTlsError::Certificate(
                    "the certification request's signature does not verify under its key".into(),
                )
            })?;
        Ok(Self {
            public_key,
            subject: subject.raw.to_vec(),
        })
    }
}

/// The fields of a certificate the node looks at. Parsing checks structure only; trust is
/// webpki's job.
#[derive(Debug)]
pub struct ParsedCertificate<'a> {
    /// The serial number's content octets.
    pub serial: &'a [u8],
    /// The issuer Name, DER.
    pub issuer: &'a [u8],
    /// The subject Name, DER.
    pub subject: &'a [u8],
    /// The subject's SM2 key.
    pub public_key: Sm2PublicKey,
    /// basicConstraints says cA.
    pub is_ca: bool,
    /// The node-identity extension, when present.
    pub identity: Option<PeerIdentity>,
}

fn bad(what: &str) -> GmTlsError {
    GmTlsError::Certificate(format!("malformed certificate: {what}"))
}

impl<'a> ParsedCertificate<'a> {
    /// Parse a DER certificate whose key is SM2; other keys are refused with a clear error.
    pub fn parse(certificate: &'a [u8]) -> Result<Self, GmTlsError> {
        let outer = Reader::new(certificate)
            .expect(der::SEQUENCE)
            .ok_or_else(|| bad("not a DER SEQUENCE"))?;
        let tbs = Reader::new(outer.content)
            .expect(der::SEQUENCE)
            .ok_or_else(|| bad("no tbsCertificate"))?;
        let mut fields = Reader::new(tbs.content);
        fields.optional(0xa0); // version
        let serial = fields.expect(der::INTEGER).ok_or_else(|| bad("serial"))?;
        fields
            .expect(der::SEQUENCE)
            .ok_or_else(|| bad("signature algorithm"))?;
        let issuer = fields.expect(der::SEQUENCE).ok_or_else(|| bad("issuer"))?;
        fields
            .expect(der::SEQUENCE)
            .ok_or_else(|| bad("validity"))?;
        let subject = fields.expect(der::SEQUENCE).ok_or_else(|| bad("subject"))?;
        let spki = fields
            .expect(der::SEQUENCE)
            .ok_or_else(|| bad("subjectPublicKeyInfo"))?;
        let public_key = spki_sm2_key(spki.raw)?;
        let mut is_ca = false;
        let mut identity = None;
        while let Some(element) = fields.next() {
            if element.tag != 0xa3 {
                continue;
            }
            let list = Reader::new(element.content)
                .expect(der::SEQUENCE)
                .ok_or_else(|| bad("extensions"))?;
            let mut extensions = Reader::new(list.content);
            while let Some(ext) = extensions.next() {
                let mut parts = Reader::new(ext.content);
                let oid = parts.expect(der::OID).ok_or_else(|| bad("extension id"))?;
                parts.optional(der::BOOLEAN);
                let value = parts
                    .expect(der::OCTET_STRING)
                    .ok_or_else(|| bad("extension value"))?;
                if oid.content == der::oid_content(&OID_BASIC_CONSTRAINTS) {
                    let seq = Reader::new(value.content)
                        .expect(der::SEQUENCE)
                        .ok_or_else(|| bad("basicConstraints"))?;
                    is_ca = Reader::new(seq.content)
                        .optional(der::BOOLEAN)
                        .is_some_and(|b| b.content == [0xff]);
                } else if oid.content == der::oid_content(&IDENTITY_EXTENSION_OID) {
                    identity = Some(parse_identity(value.content)?);
                }
            }
        }
        Ok(Self {
            serial: serial.content,
            issuer: issuer.raw,
            subject: subject.raw,
            public_key,
            is_ca,
            identity,
        })
    }
}

fn parse_identity(value: &[u8]) -> Result<PeerIdentity, GmTlsError> {
    let seq = Reader::new(value)
        .expect(der::SEQUENCE)
        .ok_or_else(|| bad("identity extension"))?;
    let mut parts = Reader::new(seq.content);
    let jurisdiction = parts
        .expect(der::PRINTABLE_STRING)
        .and_then(|e| std::str::from_utf8(e.content).ok())
        .ok_or_else(|| bad("identity jurisdiction"))?;
    let role = parts
        .expect(der::UTF8_STRING)
        .and_then(|e| std::str::from_utf8(e.content).ok())
        .and_then(Role::parse)
        .ok_or_else(|| bad("identity role"))?;
    PeerIdentity::new(jurisdiction, role)
}

/// The SM2 key of a DER SubjectPublicKeyInfo; an RSA key or another curve is refused by name.
pub fn spki_sm2_key(spki: &[u8]) -> Result<Sm2PublicKey, GmTlsError> {
    let seq = Reader::new(spki)
        .expect(der::SEQUENCE)
        .ok_or_else(|| bad("subjectPublicKeyInfo"))?;
    let mut parts = Reader::new(seq.content);
    let algorithm = parts
        .expect(der::SEQUENCE)
        .ok_or_else(|| bad("key algorithm"))?;
    let mut alg = Reader::new(algorithm.content);
    let alg_oid = alg
        .expect(der::OID)
        .ok_or_else(|| bad("key algorithm id"))?;
    if alg_oid.content != der::oid_content(&OID_EC_PUBLIC_KEY) {
        return Err(GmTlsError::Certificate(
            "the certificate key is not an elliptic-curve key (e.g. RSA); only SM2 keys are accepted".into(),
        ));
    }
    let curve = alg.expect(der::OID).ok_or_else(|| bad("key curve"))?;
    if curve.content != der::oid_content(&OID_SM2_CURVE) {
        return Err(GmTlsError::Certificate(
            "the certificate key is on the wrong curve; only SM2 (1.2.156.10197.1.301) is accepted"
                .into(),
        ));
    }
    Sm2PublicKey::from_spki_der(spki).map_err(|_| bad("SM2 public key"))
}

/// The jurisdiction and role of a DER certificate, if it carries the identity extension.
pub fn peer_identity(certificate: &[u8]) -> Result<Option<PeerIdentity>, GmTlsError> {
    Ok(ParsedCertificate::parse(certificate)?.identity)
}

/// Encode an SM2 private key as PKCS#8 (RFC 5208/5915) DER, with its public key.
pub fn private_key_to_pkcs8(key: &Sm2SecretKey) -> Vec<u8> {
    let ec_private_key = der::sequence(&[
        &der::unsigned_integer(&[1]),
        &der::tlv(der::OCTET_STRING, &key.to_bytes()),
        &der::tlv(0xa1, &der::bit_string(&key.public_key().to_sec1())),
    ]);
    der::sequence(&[
        &der::unsigned_integer(&[0]),
        &der::sequence(&[&der::oid(&OID_EC_PUBLIC_KEY), &der::oid(&OID_SM2_CURVE)]),
        &der::tlv(der::OCTET_STRING, &ec_private_key),
    ])
}

/// Decode an SM2 private key from PKCS#8 DER (as made by [`private_key_to_pkcs8`] or
/// `openssl genpkey -algorithm SM2`) or from a SEC1 `EC PRIVATE KEY`; other keys are refused.
pub fn private_key_from_der(der_bytes: &[u8]) -> Result<Sm2SecretKey, GmTlsError> {
    let bad_key = |what: &str| GmTlsError::Key(what.to_owned());
    let outer = Reader::new(der_bytes)
        .expect(der::SEQUENCE)
        .ok_or_else(|| bad_key("not a DER private key"))?;
    let mut parts = Reader::new(outer.content);
    let version = parts
        .expect(der::INTEGER)
        .ok_or_else(|| bad_key("no version"))?;
    let ec_private_key = if version.content == [0] {
        // PKCS#8 PrivateKeyInfo.
        let algorithm = parts
            .expect(der::SEQUENCE)
            .ok_or_else(|| bad_key("no algorithm"))?;
        let mut alg = Reader::new(algorithm.content);
        let is_ec = alg
            .expect(der::OID)
            .is_some_and(|oid| oid.content == der::oid_content(&OID_EC_PUBLIC_KEY));
        let is_sm2 = alg
            .expect(der::OID)
            .is_some_and(|oid| oid.content == der::oid_content(&OID_SM2_CURVE));
        if !is_ec || !is_sm2 {
            return Err(bad_key(
                "not an SM2 key (id-ecPublicKey with curve 1.2.156.10197.1.301)",
            ));
        }
        let inner = parts
            .expect(der::OCTET_STRING)
            .ok_or_else(|| bad_key("no key octets"))?;
        Reader::new(inner.content)
            .expect(der::SEQUENCE)
            .ok_or_else(|| bad_key("malformed ECPrivateKey"))?
            .content
    } else {
        outer.content
    };
    let mut fields = Reader::new(ec_private_key);
    fields
        .expect(der::INTEGER)
        .ok_or_else(|| bad_key("ECPrivateKey version"))?;
    let scalar = fields
        .expect(der::OCTET_STRING)
        .ok_or_else(|| bad_key("ECPrivateKey scalar"))?;
    if let Some(params) = fields.optional(0xa0) {
        let is_sm2 = Reader::new(params.content)
            .expect(der::OID)
            .is_some_and(|oid| oid.content == der::oid_content(&OID_SM2_CURVE));
        if !is_sm2 {
            return Err(bad_key("the EC key is not on the SM2 curve"));
        }
    }
    let mut padded = [0u8; 32];
    if scalar.content.len() > 32 {
        return Err(bad_key("SM2 scalar longer than 32 bytes"));
    }
    padded[32 - scalar.content.len()..].copy_from_slice(scalar.content);
    Sm2SecretKey::from_bytes(&padded).map_err(|_| bad_key("SM2 scalar out of range"))
}

/// PEM text for DER bytes under `label` (e.g. `CERTIFICATE`, `PRIVATE KEY`, `X509 CRL`).
pub fn pem_encode(label: &str, der_bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut b64 = String::with_capacity(der_bytes.len() * 4 / 3 + 4);
    for chunk in der_bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |acc, (i, b)| acc | u32::from(*b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                b64.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                b64.push('=');
            }
        }
    }
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).unwrap_or_default());
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}
