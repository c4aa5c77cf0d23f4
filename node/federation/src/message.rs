//! The payload of a federation request or response: a JSON header naming the operation, then an
//! opaque body (ciphertexts, keys). `u32` big-endian header length first; both parts are bounded
//! by the frame limit of the transport.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::FederationError;

/// Largest JSON header accepted.
const MAX_HEADER: usize = 64 * 1024;

/// Encode `header` and `body`.
pub fn encode<H: Serialize>(header: &H, body: &[u8]) -> Result<Vec<u8>, FederationError> {
    let json = serde_json::to_vec(header).map_err(|e| FederationError::Malformed(e.to_string()))?;
    let mut out = Vec::with_capacity(4 + json.len() + body.len());
    out.extend_from_slice(&(json.len() as u32).to_be_bytes());
    out.extend_from_slice(&json);
    out.extend_from_slice(body);
    Ok(out)
}

/// Decode a payload into its header and body; refuses truncated or oversized headers.
pub fn decode<H: DeserializeOwned>(payload: &[u8]) -> Result<(H, &[u8]), FederationError> {
    let Some((len, rest)) = payload.split_first_chunk::<4>() else {
        return Err(FederationError::Malformed(
            "payload shorter than its header length".into(),
        ));
    };
    let len = u32::from_be_bytes(*len) as usize;
    if len > MAX_HEADER || len > rest.len() {
        return Err(FederationError::Malformed(format!(
            "header length {len} does not fit the payload"
        )));
    }
    let (json, body) = rest.split_at(len);
    let header = serde_json::from_slice(json)
        .map_err(|e| FederationError::Malformed(format!("header: {e}")))?;
    Ok((header, body))
}

/// Split a body made of length-prefixed parts (`u64` big-endian lengths).
pub fn split_parts(mut body: &[u8]) -> Result<Vec<&[u8]>, FederationError> {
    let mut parts = Vec::new();
    while !body.is_empty() {
        let Some((len, rest)) = body.split_first_chunk::<8>() else {
            return Err(FederationError::Malformed("truncated part length".into()));
        };
        let len = usize::try_from(u64::from_be_bytes(*len)).unwrap_or(usize::MAX);
        if len > rest.len() {
            return Err(FederationError::Malformed(
                "part longer than the body".into(),
            ));
        }
        let (part, rest) = rest.split_at(len);
        parts.push(part);
        body = rest;
    }
    Ok(parts)
}

/// Join parts with `u64` length prefixes.
pub fn join_parts(parts: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::with_capacity(parts.iter().map(|p| p.len() + 8).sum());
    for part in parts {
        out.extend_from_slice(&(part.len() as u64).to_be_bytes());
        out.extend_from_slice(part);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_refuses_truncation() {
        let payload = encode(&serde_json::json!({"op": "x"}), b"body").unwrap();
        let (h, body): (serde_json::Value, &[u8]) = decode(&payload).unwrap();
        assert_eq!((h["op"].as_str(), body), (Some("x"), &b"body"[..]));
        for cut in 0..payload.len() - 4 {
            assert!(
                decode::<serde_json::Value>(&payload[..cut]).is_err() || cut >= payload.len() - 4
            );
        }
        let parts = join_parts(&[b"a", b"", b"ccc"]);
        assert_eq!(split_parts(&parts).unwrap(), [&b"a"[..], b"", b"ccc"]);
        assert!(split_parts(&parts[..parts.len() - 1]).is_err());
    }
}
