//! The slice of Stigg's GraphQL schema the fake serves, taken from Stigg's generated
//! clients (the Go and Python API clients are generated from the live schema): the two
//! mutations' input types with every field they define, and the fields their result
//! types can select. A request is validated against it as a GraphQL server would: the
//! variable's declared type, every input field, and the selection set.

/// What a field of an input type accepts.
#[derive(Clone, Copy)]
pub enum Input {
    Str,
    Bool,
    Float,
    Enum(&'static [&'static str]),
    /// An input object, a list or JSON: accepted as any non-scalar value (the fake never
    /// reads inside it).
    Object,
}

pub const BILLING_PERIOD: &[&str] = &["ANNUALLY", "MONTHLY"];
pub const SCHEDULE_STRATEGY: &[&str] =
    &["END_OF_BILLING_MONTH", "END_OF_BILLING_PERIOD", "IMMEDIATE"];

pub const PROVISION_CUSTOMER_INPUT: &[(&str, Input)] = &[
    ("customerId", Input::Str),
    ("refId", Input::Str),
    ("name", Input::Str),
    ("email", Input::Str),
    ("billingId", Input::Str),
    ("billingInformation", Input::Object),
    ("additionalMetaData", Input::Object),
    ("couponRefId", Input::Str),
    ("createdAt", Input::Str),
    ("crmId", Input::Str),
    ("salesforceId", Input::Str),
    ("awsMarketplaceCustomerId", Input::Str),
    ("environmentId", Input::Str),
    ("excludeFromExperiment", Input::Bool),
    ("shouldSyncFree", Input::Bool),
    ("subscriptionParams", Input::Object),
];

pub const PROVISION_SUBSCRIPTION_INPUT: &[(&str, Input)] = &[
    ("customerId", Input::Str),
    ("planId", Input::Str),
    ("billingPeriod", Input::Enum(BILLING_PERIOD)),
    ("scheduleStrategy", Input::Enum(SCHEDULE_STRATEGY)),
    ("billingId", Input::Str),
    ("addons", Input::Object),
    ("billableFeatures", Input::Object),
    ("unitQuantity", Input::Float),
    ("startDate", Input::Str),
    ("cancellationDate", Input::Str),
    ("subscriptionId", Input::Str),
    ("refId", Input::Str),
    ("resourceId", Input::Str),
    ("payingCustomerId", Input::Str),
    ("skipTrial", Input::Bool),
    ("trialOverrideConfiguration", Input::Object),
    ("awaitPaymentConfirmation", Input::Bool),
    ("checkoutOptions", Input::Object),
    ("billingInformation", Input::Object),
    ("billingCountryCode", Input::Str),
    ("billingCycleAnchor", Input::Enum(&["NOW", "UNCHANGED"])),
    (
        "paymentCollectionMethod",
        Input::Enum(&["CHARGE", "INVOICE", "NONE"]),
    ),
    ("promotionCode", Input::Str),
    ("appliedCoupon", Input::Object),
    ("priceUnitAmount", Input::Float),
    ("priceOverrides", Input::Object),
    ("charges", Input::Object),
    ("entitlements", Input::Object),
    ("subscriptionEntitlements", Input::Object),
    ("minimumSpend", Input::Object),
    ("budget", Input::Object),
    ("salesforceId", Input::Str),
    ("additionalMetaData", Input::Object),
];

/// An output type's fields: the name, and the object type it holds (`None`: a scalar
/// or enum, selected without a sub-selection).
pub type Fields = &'static [(&'static str, Option<&'static str>)];

pub fn output_type(name: &str) -> Option<Fields> {
    Some(match name {
        "ProvisionedCustomer" => &[
            ("customer", Some("Customer")),
            ("subscription", Some("CustomerSubscription")),
            ("subscriptionDecisionStrategy", None),
        ],
        "Customer" => &[
            ("id", None),
            ("customerId", None),
            ("refId", None),
            ("billingId", None),
            ("name", None),
            ("email", None),
            ("createdAt", None),
            ("updatedAt", None),
            ("additionalMetaData", None),
            ("awsMarketplaceCustomerId", None),
            ("hasActiveSubscription", None),
        ],
        "ProvisionSubscriptionResult" => &[
            ("id", None),
            ("status", None),
            ("subscription", Some("CustomerSubscription")),
            ("checkoutUrl", None),
            ("checkoutBillingId", None),
            ("isScheduled", None),
        ],
        "CustomerSubscription" => &[
            ("id", None),
            ("subscriptionId", None),
            ("refId", None),
            ("status", None),
            ("billingId", None),
            ("billingLinkUrl", None),
            ("effectiveEndDate", None),
            ("cancellationDate", None),
            ("currentBillingPeriodEnd", None),
        ],
        _ => return None,
    })
}

/// A parsed `mutation Name($input: Type!) { field(input: $input) { ...selection } }`.
pub struct Operation {
    pub name: String,
    pub variable_type: String,
    pub field: String,
    pub selection: Vec<Selected>,
}

pub struct Selected {
    pub name: String,
    pub children: Vec<Selected>,
}

fn tokens(query: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut word = String::new();
    for c in query.chars() {
        if c.is_alphanumeric() || c == '_' {
            word.push(c);
            continue;
        }
        if !word.is_empty() {
            out.push(std::mem::take(&mut word));
        }
        if "{}():$!".contains(c) {
            out.push(c.to_string());
        }
    }
    if !word.is_empty() {
        out.push(word);
    }
    out
}

/// Parses the one mutation shape the service sends; `Err` names what is wrong.
pub fn parse(query: &str) -> Result<Operation, String> {
    let t = tokens(query);
    let at = |i: usize| t.get(i).map(String::as_str).unwrap_or("");
    let expect = |i: usize, want: &str| {
        (at(i) == want)
            .then_some(())
            .ok_or_else(|| format!("Syntax Error: expected \"{want}\", found \"{}\".", at(i)))
    };
    expect(0, "mutation")?;
    let name = at(1).to_owned();
    expect(2, "(")?;
    expect(3, "$")?;
    expect(4, "input")?;
    expect(5, ":")?;
    let variable_type = at(6).to_owned();
    expect(7, "!")?;
    expect(8, ")")?;
    expect(9, "{")?;
    let field = at(10).to_owned();
    expect(11, "(")?;
    expect(12, "input")?;
    expect(13, ":")?;
    expect(14, "$")?;
    expect(15, "input")?;
    expect(16, ")")?;
    let (selection, next) = selection_set(&t, 17)?;
    expect(next, "}")?;
    if next + 1 != t.len() {
        return Err("Syntax Error: unexpected text after the operation.".into());
    }
    Ok(Operation {
        name,
        variable_type,
        field,
        selection,
    })
}

fn selection_set(t: &[String], at: usize) -> Result<(Vec<Selected>, usize), String> {
    if t.get(at).map(String::as_str) != Some("{") {
        return Err("Syntax Error: expected a selection set.".into());
    }
    let mut out = Vec::new();
    let mut i = at + 1;
    loop {
        match t.get(i).map(String::as_str) {
            Some("}") => return Ok((out, i + 1)),
            Some(name) if name.chars().all(|c| c.is_alphanumeric() || c == '_') => {
                let mut field = Selected {
                    name: name.to_owned(),
                    children: Vec::new(),
                };
                i += 1;
                if t.get(i).map(String::as_str) == Some("{") {
                    let (children, next) = selection_set(t, i)?;
                    field.children = children;
                    i = next;
                }
                out.push(field);
            }
            other => return Err(format!("Syntax Error: unexpected {other:?}.")),
        }
    }
}

/// Checks `selection` against output type `ty`.
pub fn check_selection(ty: &str, selection: &[Selected]) -> Result<(), String> {
    let fields = output_type(ty).ok_or_else(|| format!("Unknown type \"{ty}\"."))?;
    if selection.is_empty() {
        return Err(format!(
            "Field of type \"{ty}\" must have a selection of subfields."
        ));
    }
    for s in selection {
        let Some((_, child)) = fields.iter().find(|(n, _)| *n == s.name) else {
            return Err(format!(
                "Cannot query field \"{}\" on type \"{ty}\".",
                s.name
            ));
        };
        match (child, s.children.is_empty()) {
            (Some(child_ty), _) => check_selection(child_ty, &s.children)?,
            (None, true) => {}
            (None, false) => {
                return Err(format!(
                    "Field \"{}\" must not have a selection since it is a scalar.",
                    s.name
                ))
            }
        }
    }
    Ok(())
}
