//! Invoices (the preview of a price change, the customer's list) and events.

use super::{InvoiceSummary, Preview, PreviewLine, StripeApi, StripeFailure};
use stripe::StripeRequest;
use stripe_billing::invoice::{
    CreatePreviewInvoice, CreatePreviewInvoiceSubscriptionDetails,
    CreatePreviewInvoiceSubscriptionDetailsItems,
    CreatePreviewInvoiceSubscriptionDetailsProrationBehavior, ListInvoice,
};
use stripe_core::event::RetrieveEvent;

/// are stored as Stripe sent them).
struct Raw<R>(R);

impl<R: StripeRequest> StripeRequest for Raw<R> {
    type Output = miniserde::json::Value;

    fn build(&self) -> stripe_client_core::RequestBuilder {
        self.0.build()
    }
}

impl StripeApi {
    /// The invoice Stripe would issue if `item` moved to `new_price` at `proration_date`.
    pub async fn preview_price_change(
        &self,
        customer: &str,
        subscription: &str,
        item: &str,
        new_price: &str,
        prorate: bool,
        proration_date: i64,
    ) -> Result<Preview, StripeFailure> {
        let mut line = CreatePreviewInvoiceSubscriptionDetailsItems::new();
        line.id = Some(item.to_owned());
        line.price = Some(new_price.to_owned());
        let mut details = CreatePreviewInvoiceSubscriptionDetails::new();
        details.items = Some(vec![line]);
        details.proration_behavior = Some(if prorate {
            CreatePreviewInvoiceSubscriptionDetailsProrationBehavior::AlwaysInvoice
        } else {
            CreatePreviewInvoiceSubscriptionDetailsProrationBehavior::None
        });
        details.proration_date = Some(proration_date);
        let req = CreatePreviewInvoice::new()
            .customer(customer)
            .subscription(subscription)
            .subscription_details(details);
        let invoice = self.send("invoices.create_preview", &req, None).await?;
        let lines = invoice
            .lines
            .data
            .iter()
            .map(|l| PreviewLine {
                description: l.description.clone().unwrap_or_default(),
                amount: l.amount,
                proration: l.parent.as_ref().is_some_and(|p| {
                    p.subscription_item_details
                        .as_ref()
                        .is_some_and(|d| d.proration)
                        || p.invoice_item_details.as_ref().is_some_and(|d| d.proration)
                }),
                period_start: l.period.start,
                period_end: l.period.end,
            })
            .collect();
        Ok(Preview {
            amount_due: invoice.amount_due,
            currency: invoice.currency.to_string(),
            lines,
        })
    }

    /// One page of the customer's invoices, newest first; `true` when more exist.
    pub async fn list_invoices(
        &self,
        customer: &str,
        limit: u32,
        starting_after: Option<&str>,
    ) -> Result<(Vec<InvoiceSummary>, bool), StripeFailure> {
        let mut req = ListInvoice::new()
            .customer(customer)
            .limit(i64::from(limit));
        if let Some(cursor) = starting_after {
            req = req.starting_after(cursor);
        }
        let list = self.send("invoices.list", &req, None).await?;
        let invoices = list
            .data
            .into_iter()
            .filter_map(|inv| {
                Some(InvoiceSummary {
                    id: inv.id?.to_string(),
                    total: inv.total,
                    currency: inv.currency.to_string(),
                    status: inv.status.as_ref().map(|s| s.as_str().to_owned()),
                    url: inv.hosted_invoice_url,
                    created: inv.created,
                })
            })
            .collect();
        Ok((invoices, list.has_more))
    }

    /// The event `id` from Stripe's events API as JSON bytes; `None` if Stripe has no
    /// such event.
    pub async fn retrieve_event(&self, id: &str) -> Result<Option<Vec<u8>>, StripeFailure> {
        match self
            .send("events.retrieve", &Raw(RetrieveEvent::new(id)), None)
            .await
        {
            Ok(v) => Ok(Some(miniserde::json::to_string(&v).into_bytes())),
            Err(StripeFailure::Rejected { status: 404, .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }
}
