//! Story 6.1: one page of the org's invoices, newest first.

use super::error::{caller, BillingError};
use super::BillingService;
use crate::domain::OrgId;

pub struct InvoicePage {
    pub invoices: Vec<super::stripe::InvoiceSummary>,
    pub next_cursor: Option<String>,
}

impl BillingService {
    /// Story 6.1: one page of the org's invoices, newest first (none before it has a
    /// Stripe customer).
    pub async fn invoices(
        &self,
        org: &OrgId,
        limit: u32,
        cursor: Option<&str>,
    ) -> Result<InvoicePage, BillingError> {
        let stripe = self.stripe()?;
        let rec = self.engine.billing(org).await?;
        let Some(customer) = rec.customer_id else {
            return Ok(InvoicePage {
                invoices: Vec::new(),
                next_cursor: None,
            });
        };
        let (invoices, has_more) = stripe
            .list_invoices(&customer, limit, cursor)
            .await
            .map_err(caller("cursor"))?;
        let next_cursor = has_more
            .then(|| invoices.last().map(|i| i.id.clone()))
            .flatten();
        Ok(InvoicePage {
            invoices,
            next_cursor,
        })
    }
}
