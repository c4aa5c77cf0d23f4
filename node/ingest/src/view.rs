//! Presenting stored records: personal fields are opened with the node's keys and, unless the
//! caller is privileged, masked (`110105********002X`; a natural person's name keeps its surname).

use serde_json::{Map, Value};
use xy_policy::identifiers::mask_id_number;
use xy_store::{NodeKeys, StoreError, StoredRecord};

/// Whether personal data is shown in clear.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disclosure {
    /// Public output: identity numbers and natural persons' names masked.
    Masked,
    /// Privileged output (audited by the caller): everything in clear.
    Unmasked,
}

/// Mask a person's name: the first character stays (`张*`, `欧**`).
pub fn mask_name(name: &str) -> String {
    let mut chars = name.chars();
    match chars.next() {
        Some(first) => std::iter::once(first).chain(chars.map(|_| '*')).collect(),
        None => String::new(),
    }
}

/// Add a record's opened personal fields to its other `fields`, as `disclosure` allows: masked,
/// identity numbers keep their region and check digits (`110105********002X`) and a natural
/// person's name its surname; unmasked, everything in clear.
pub fn disclose(
    fields: &mut Map<String, Value>,
    personal: Map<String, Value>,
    disclosure: Disclosure,
) {
    for (k, v) in personal {
        let v = match (disclosure, v) {
            (Disclosure::Masked, Value::String(s)) => Value::String(mask_id_number(&s)),
            (_, v) => v,
        };
        fields.insert(k, v);
    }
    if disclosure == Disclosure::Masked {
        let natural = fields
            .iter()
            .any(|(k, v)| k.ends_with("_XDR_LB") && v == "自然人");
        if natural {
            for (k, v) in fields.iter_mut() {
                if k.ends_with("_XDR_MC")
                    && let Value::String(s) = v
                {
                    *s = mask_name(s);
                }
            }
        }
    }
}

/// The JSON view of a stored record: its metadata and all its fields.
pub fn record_view(
    record: &StoredRecord,
    keys: &NodeKeys,
    disclosure: Disclosure,
) -> Result<Value, StoreError> {
    let mut fields: Map<String, Value> = match &record.payload {
        Value::Object(m) => m.clone(),
        _ => Map::new(),
    };
    let personal = match &record.personal {
        Some(sealed) => {
            // The seal is bound to the record's business-key hash.
            let key_hash = record_key_hash(record)?;
            let plain = keys.open(key_hash.as_bytes(), sealed)?;
            serde_json::from_slice(&plain)
                .map_err(|e| StoreError::Corrupt(format!("personal fields: {e}")))?
        }
        None => Map::new(),
    };
    disclose(&mut fields, personal, disclosure);
    Ok(serde_json::json!({
        "id": record.id,
        "category": record.category,
        "version": record.version,
        "status": record.status,
        "source_unit": record.source_unit,
        "subject_code": record.subject_code,
        "document_number": record.document_number,
        "decision_date": record.decision_date,
        "batch_id": record.batch_id,
        "ingested_at": record.ingested_at,
        "fields": fields,
    }))
}

fn record_key_hash(record: &StoredRecord) -> Result<String, StoreError> {
    record
        .key_hash
        .clone()
        .ok_or_else(|| StoreError::Corrupt(format!("record {} has no key hash", record.id)))
}
