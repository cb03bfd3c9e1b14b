//! The plan catalogue (`config/plans.toml`): plan code → Stripe lookup key, Stigg plan
//! id, rank, trial days and included amounts per metric.

use super::{Metric, ParseError};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

/// The plan an org falls back to when it has no live subscription.
pub const FREE_PLAN: &str = "plan_free";

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct PlanCode(String);

impl PlanCode {
    pub fn new(raw: &str) -> Self {
        Self(raw.to_owned())
    }
    pub fn free() -> Self {
        Self(FREE_PLAN.to_owned())
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for PlanCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub code: PlanCode,
    pub stripe_lookup_key: String,
    pub stigg_plan_id: String,
    pub rank: u32,
    pub trial_days: u32,
    pub included: BTreeMap<Metric, u64>,
}

impl Plan {
    /// Included amount of `metric`; a metric the plan does not grant has 0.
    pub fn included(&self, metric: &Metric) -> u64 {
        self.included.get(metric).copied().unwrap_or(0)
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PlanFile {
    plans: BTreeMap<String, PlanEntry>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PlanEntry {
    stripe_lookup_key: String,
    stigg_plan_id: String,
    rank: u32,
    #[serde(default)]
    trial_days: u32,
    included: BTreeMap<String, u64>,
}

/// Every plan, by code. Immutable after start; shared as `Arc<Catalogue>`.
#[derive(Debug, Clone)]
pub struct Catalogue {
    plans: BTreeMap<PlanCode, Arc<Plan>>,
    metrics: Vec<Metric>,
}

impl Catalogue {
    /// Parses the TOML catalogue; it must define `plan_free`, and every metric name must
    /// follow the metric pattern.
    pub fn from_toml(text: &str) -> Result<Self, ParseError> {
        let file: PlanFile =
            toml::from_str(text).map_err(|e| ParseError::new(format!("plans: {e}")))?;
        let mut plans = BTreeMap::new();
        let mut metrics = Vec::new();
        for (code, entry) in file.plans {
            let mut included = BTreeMap::new();
            for (name, amount) in entry.included {
                let metric = Metric::parse(&name)
                    .map_err(|e| ParseError::new(format!("plans.{code}.included.{name}: {e}")))?;
                if !metrics.contains(&metric) {
                    metrics.push(metric.clone());
                }
                included.insert(metric, amount);
            }
            let code = PlanCode::new(&code);
            plans.insert(
                code.clone(),
                Arc::new(Plan {
                    code,
                    stripe_lookup_key: entry.stripe_lookup_key,
                    stigg_plan_id: entry.stigg_plan_id,
                    rank: entry.rank,
                    trial_days: entry.trial_days,
                    included,
                }),
            );
        }
        if !plans.contains_key(&PlanCode::free()) {
            return Err(ParseError::new(format!(
                "plans: `{FREE_PLAN}` must be defined"
            )));
        }
        metrics.sort();
        Ok(Self { plans, metrics })
    }

    pub fn get(&self, code: &PlanCode) -> Option<&Arc<Plan>> {
        self.plans.get(code)
    }

    /// The plan for `code`, or the free plan when the code is no longer in the catalogue
    /// (a plan removed from the file must not make its orgs unusable).
    pub fn get_or_free(&self, code: &PlanCode) -> Arc<Plan> {
        self.plans
            .get(code)
            .or_else(|| self.plans.get(&PlanCode::free()))
            .cloned()
            .unwrap_or_else(|| {
                Arc::new(Plan {
                    code: PlanCode::free(),
                    stripe_lookup_key: String::new(),
                    stigg_plan_id: String::new(),
                    rank: 0,
                    trial_days: 0,
                    included: BTreeMap::new(),
                })
            })
    }

    pub fn free(&self) -> Arc<Plan> {
        self.get_or_free(&PlanCode::free())
    }

    /// Metrics that some plan defines; any other metric name is refused with a 400.
    pub fn is_known_metric(&self, metric: &Metric) -> bool {
        self.metrics.binary_search(metric).is_ok()
    }

    /// The metric's position in `metrics()` (the index of its slot in an `OrgView`).
    /// The plan whose Stripe price carries `lookup_key`.
    pub fn by_lookup_key(&self, lookup_key: &str) -> Option<&Arc<Plan>> {
        self.plans
            .values()
            .find(|p| p.stripe_lookup_key == lookup_key)
    }

    pub fn metric_index(&self, metric: &Metric) -> Option<usize> {
        self.metrics.binary_search(metric).ok()
    }

    pub fn metrics(&self) -> &[Metric] {
        &self.metrics
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = r#"
        [plans.plan_free]
        stripe_lookup_key = "plan_free"
        stigg_plan_id = "plan-free"
        rank = 0
        included = { api_call = 1000 }

        [plans.plan_pro_m]
        stripe_lookup_key = "plan_pro_m"
        stigg_plan_id = "plan-pro"
        rank = 2
        trial_days = 0
        included = { api_call = 100000, seat = 5 }
    "#;

    #[test]
    fn catalogue_parses_plans_and_collects_metrics() {
        let c = Catalogue::from_toml(SAMPLE).unwrap();
        let pro = c.get(&PlanCode::new("plan_pro_m")).unwrap();
        assert_eq!(pro.included(&Metric::api_call()), 100_000);
        assert_eq!(pro.included(&Metric::parse("nope").unwrap()), 0);
        assert!(c.is_known_metric(&Metric::parse("seat").unwrap()));
        assert!(!c.is_known_metric(&Metric::parse("nope").unwrap()));
        assert_eq!(c.get_or_free(&PlanCode::new("gone")).code, PlanCode::free());
    }

    #[test]
    fn catalogue_without_free_plan_is_refused() {
        let text = SAMPLE.replace("plan_free]", "plan_other]");
        assert!(Catalogue::from_toml(&text).is_err());
    }

    #[test]
    fn shipped_catalogue_matches_the_spec() {
        let c = Catalogue::from_toml(include_str!("../../config/plans.toml")).unwrap();
        let inc = |code: &str| {
            c.get(&PlanCode::new(code))
                .unwrap()
                .included(&Metric::api_call())
        };
        assert_eq!(inc("plan_free"), 1_000);
        assert_eq!(inc("plan_starter_m"), 10_000);
        assert_eq!(inc("plan_pro_m"), 100_000);
        assert_eq!(inc("plan_scale_m"), 1_000_000);
        assert_eq!(
            c.get(&PlanCode::new("plan_starter_m")).unwrap().trial_days,
            14
        );
    }
}
