//! Customers, payment methods, SetupIntents and the customer portal.

use super::types::metadata;
use super::{StripeApi, StripeFailure};
use stripe_billing::billing_portal_session::CreateBillingPortalSession;
use stripe_core::customer::{CreateCustomer, UpdateCustomer, UpdateCustomerInvoiceSettings};
use stripe_core::setup_intent::{CreateSetupIntent, CreateSetupIntentUsage};
use stripe_payment::payment_method::AttachPaymentMethod;

impl StripeApi {
    pub async fn create_customer(
        &self,
        org: &str,
        email: &str,
        name: &str,
        key: &str,
    ) -> Result<String, StripeFailure> {
        let req = CreateCustomer::new()
            .email(email)
            .name(name)
            .metadata(metadata(&[("org_id", org)]));
        Ok(self
            .send("customers.create", &req, Some(key))
            .await?
            .id
            .to_string())
    }

    pub async fn create_setup_intent(
        &self,
        customer: &str,
        key: &str,
    ) -> Result<String, StripeFailure> {
        let req = CreateSetupIntent::new()
            .customer(customer)
            .usage(CreateSetupIntentUsage::OffSession);
        self.send("setup_intents.create", &req, Some(key))
            .await?
            .client_secret
            .ok_or_else(|| StripeFailure::Broken("SetupIntent without client_secret".into()))
    }

    /// Attaches `payment_method` to `customer`; returns the attached method's id (a test
    /// token such as `pm_card_visa` becomes a new `pm_...`).
    pub async fn attach_payment_method(
        &self,
        payment_method: &str,
        customer: &str,
        key: &str,
    ) -> Result<String, StripeFailure> {
        let req = AttachPaymentMethod::new(payment_method).customer(customer);
        Ok(self
            .send("payment_methods.attach", &req, Some(key))
            .await?
            .id
            .to_string())
    }

    pub async fn set_customer_default_method(
        &self,
        customer: &str,
        payment_method: &str,
        key: &str,
    ) -> Result<(), StripeFailure> {
        let mut settings = UpdateCustomerInvoiceSettings::new();
        settings.default_payment_method = Some(payment_method.to_owned());
        let req = UpdateCustomer::new(customer).invoice_settings(settings);
        self.send("customers.update", &req, Some(key))
            .await
            .map(drop)
    }

    pub async fn create_portal_session(
        &self,
        customer: &str,
        return_url: &str,
        key: &str,
    ) -> Result<String, StripeFailure> {
        let req = CreateBillingPortalSession::new()
            .customer(customer)
            .return_url(return_url);
        Ok(self
            .send("billing_portal.sessions.create", &req, Some(key))
            .await?
            .url)
    }
}
