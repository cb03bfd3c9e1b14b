//! The `stripe_customers` tree: Stripe customer id → org id, written when the service
//! creates an org's customer, so a webhook about any of the customer's objects (a
//! subscription changed in the portal, an invoice) finds its org.

use super::StoreResult;
use crate::domain::OrgId;

pub fn put(tree: &sled::Tree, customer: &str, org: &OrgId) -> StoreResult<()> {
    tree.insert(customer.as_bytes(), org.as_str().as_bytes())?;
    Ok(())
}

/// The org of `customer`; `None` if unknown (or if the stored id no longer parses).
pub fn org_of(tree: &sled::Tree, customer: &str) -> StoreResult<Option<OrgId>> {
    Ok(tree.get(customer.as_bytes())?.and_then(|v| {
        std::str::from_utf8(&v)
            .ok()
            .and_then(|s| OrgId::parse(s).ok())
    }))
}
