//! The `orgs` and `org_idem` trees: org records, and the `Idempotency-Key`s of org
//! creation (key → payload fingerprint + the exact body answered).

use super::codec::{decode, encode};
use super::{transaction_result, StoreError, StoreResult};
use crate::domain::OrgId;
use serde::{Deserialize, Serialize};
use sled::transaction::ConflictableTransactionError;
use sled::Transactional;

const ORG_V: u8 = 1;
const IDEM_V: u8 = 1;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrgRecord {
    pub org_id: OrgId,
    pub name: String,
    pub owner_user_id: String,
    pub created_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreateReplay {
    pub fingerprint: [u8; 32],
    pub body: Vec<u8>,
}

/// What `create` did.
#[derive(Debug)]
pub enum CreateOutcome {
    Created,
    /// The idempotency key was used before; here is what it answered then.
    Replayed(CreateReplay),
}

/// Inserts `record`; with an idempotency key, atomically with the key's entry, so
/// concurrent creates with one key make exactly one org.
pub fn create(
    orgs: &sled::Tree,
    org_idem: &sled::Tree,
    record: &OrgRecord,
    idempotency: Option<(&str, CreateReplay)>,
) -> StoreResult<CreateOutcome> {
    let value = encode(ORG_V, record);
    let Some((key, replay)) = idempotency else {
        orgs.insert(record.org_id.as_str().as_bytes(), value)?;
        return Ok(CreateOutcome::Created);
    };
    let idem_value = encode(IDEM_V, &replay);
    let result = (orgs, org_idem).transaction(|(orgs, idem)| {
        if let Some(existing) = idem.get(key.as_bytes())? {
            return Ok(Some(existing));
        }
        idem.insert(key.as_bytes(), idem_value.clone())?;
        orgs.insert(record.org_id.as_str().as_bytes(), value.clone())?;
        Ok::<_, ConflictableTransactionError<StoreError>>(None)
    });
    match transaction_result(result)? {
        None => Ok(CreateOutcome::Created),
        Some(bytes) => Ok(CreateOutcome::Replayed(decode("org_idem", IDEM_V, &bytes)?)),
    }
}

pub fn get(orgs: &sled::Tree, org: &OrgId) -> StoreResult<Option<OrgRecord>> {
    orgs.get(org.as_str().as_bytes())?
        .map(|v| decode("orgs", ORG_V, &v))
        .transpose()
}
