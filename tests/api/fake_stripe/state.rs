//! The fake's memory: every stored object as the JSON it returns, the idempotency
//! cache, and the Stripe-shaped error and reply types the handlers produce.

use super::objects;
use rand::distributions::Alphanumeric;
use rand::Rng;
use serde_json::Value;
use std::collections::HashMap;

/// A Stripe error response, ready to be rendered as `{"error": {...}}`.
#[derive(Clone, Debug)]
pub struct ApiError {
    pub status: u16,
    pub kind: &'static str,
    pub code: Option<&'static str>,
    pub decline_code: Option<&'static str>,
    pub message: String,
    pub param: Option<String>,
}

impl ApiError {
    pub fn new(status: u16, kind: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            kind,
            code: None,
            decline_code: None,
            message: message.into(),
            param: None,
        }
    }

    pub fn code(mut self, code: &'static str) -> ApiError {
        self.code = Some(code);
        self
    }

    pub fn param(mut self, param: impl Into<String>) -> ApiError {
        self.param = Some(param.into());
        self
    }

    pub fn with_status(mut self, status: u16) -> ApiError {
        self.status = status;
        self
    }

    pub fn invalid(message: impl Into<String>) -> ApiError {
        ApiError::new(400, "invalid_request_error", message)
    }

    pub fn invalid_param(param: &str, message: impl Into<String>) -> ApiError {
        ApiError::invalid(message)
            .code("parameter_invalid")
            .param(param)
    }

    pub fn missing_param(param: &str) -> ApiError {
        ApiError::invalid(format!("Missing required param: {param}."))
            .code("parameter_missing")
            .param(param)
    }

    pub fn unknown_param(param: &str) -> ApiError {
        ApiError::invalid(format!("Received unknown parameter: {param}"))
            .code("parameter_unknown")
            .param(param)
    }

    /// An id in the URL path is a 404; an id passed as a parameter is a 400 naming it.
    pub fn no_such(what: &str, id: &str, param: Option<&str>) -> ApiError {
        let mut e = ApiError::invalid(format!("No such {what}: '{id}'")).code("resource_missing");
        match param {
            Some(p) => e = e.param(p),
            None => e.status = 404,
        }
        e
    }

    pub fn body(&self) -> Value {
        let mut error = serde_json::json!({
            "type": self.kind,
            "message": self.message,
        });
        if let Some(code) = self.code {
            error["code"] = code.into();
            error["doc_url"] = format!("https://stripe.com/docs/error-codes/{code}").into();
        }
        if let Some(decline) = self.decline_code {
            error["decline_code"] = decline.into();
        }
        if let Some(param) = &self.param {
            error["param"] = param.clone().into();
        }
        serde_json::json!({ "error": error })
    }

    pub fn reply(&self) -> Reply {
        Reply::new(self.status, self.body())
    }
}

/// What goes back on the wire; kept whole so an idempotent replay is byte-identical.
#[derive(Clone, Debug)]
pub struct Reply {
    pub status: u16,
    pub body: Value,
    pub headers: Vec<(String, String)>,
}

impl Reply {
    pub fn new(status: u16, body: Value) -> Reply {
        Reply {
            status,
            body,
            headers: vec![("Request-Id".into(), new_id("req_"))],
        }
    }
}

pub struct Cached {
    /// Sorted, because serde_qs writes HashMap-backed params (metadata) in an
    /// arbitrary order, and a retry with the same logical params must still match.
    pub params: Vec<(String, String)>,
    pub reply: Reply,
}

#[derive(Default)]
pub struct Store {
    pub customers: Vec<Value>,
    pub prices: Vec<Value>,
    pub subscriptions: Vec<Value>,
    pub schedules: Vec<Value>,
    pub invoices: Vec<Value>,
    pub payment_methods: Vec<Value>,
    pub setup_intents: Vec<Value>,
    pub portal_sessions: Vec<Value>,
    pub events: Vec<Value>,
    /// (method, path, Idempotency-Key) → first outcome.
    pub idempotency: HashMap<(String, String, String), Cached>,
    /// Invoices `add_invoices` creates must be strictly newer than earlier ones.
    pub last_invoice_created: i64,
}

impl Store {
    /// The plans edgequota sells; `plan_free` deliberately has no price.
    pub fn seeded() -> Store {
        // Made long before any instant a test sets the clock to.
        const CATALOGUE_CREATED: i64 = 1_700_000_000;
        let mut store = Store::default();
        for (key, name, amount) in [
            ("plan_starter_m", "Starter", 1900),
            ("plan_pro_m", "Pro", 4900),
            ("plan_scale_m", "Scale", 19900),
        ] {
            let product = new_id("prod_");
            store.prices.push(objects::price(
                &new_id("price_"),
                &product,
                key,
                name,
                amount,
                CATALOGUE_CREATED,
            ));
        }
        store
    }
}

pub fn find<'a>(objects: &'a [Value], id: &str) -> Option<&'a Value> {
    objects.iter().find(|o| o["id"] == id)
}

pub fn find_mut<'a>(objects: &'a mut [Value], id: &str) -> Option<&'a mut Value> {
    objects.iter_mut().find(|o| o["id"] == id)
}

/// Stripe-looking ids: a type prefix and a random alphanumeric tail.
pub fn new_id(prefix: &str) -> String {
    let tail: String = rand::thread_rng()
        .sample_iter(&Alphanumeric)
        .take(24)
        .map(char::from)
        .collect();
    format!("{prefix}{tail}")
}
