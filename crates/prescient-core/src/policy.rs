use serde::{Deserialize, Serialize};

/// What one workload is promised for one resource.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ResourcePolicy {
    /// The allocation never goes below this (in the resource's unit).
    pub guarantee: f64,
    /// The allocation never goes above this; `None` for no cap.
    pub limit: Option<f64>,
    /// Priority class: higher classes reach their SLO before lower ones do.
    pub priority: u32,
    /// Weight within the class: the value of a unit of satisfied demand.
    pub weight: f64,
    /// The share of predicted demand to cover, in (0, 1): 0.95 covers 95%.
    pub slo_quantile: f64,
    /// What changing the allocation costs, in units of satisfied demand: the
    /// solver moves an allocation only when the gain is larger.
    pub change_cost: f64,
    /// Whether what the workload does not use may be lent to others.
    pub lendable: bool,
}

impl Default for ResourcePolicy {
    fn default() -> Self {
        ResourcePolicy {
            guarantee: 0.0,
            limit: None,
            priority: 0,
            weight: 1.0,
            slo_quantile: 0.95,
            change_cost: 0.0,
            lendable: true,
        }
    }
}

/// A policy that cannot be honoured as written.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PolicyError {
    /// A guarantee that is negative or not a number.
    #[error("guarantee {0} must be a finite number >= 0")]
    BadGuarantee(f64),
    /// A limit below the guarantee.
    #[error("limit {limit} is below the guarantee {guarantee}")]
    LimitBelowGuarantee {
        /// The guarantee.
        guarantee: f64,
        /// The limit.
        limit: f64,
    },
    /// An SLO quantile outside (0, 1).
    #[error("SLO quantile {0} must be inside (0, 1), e.g. 0.95")]
    BadSloQuantile(f64),
    /// A weight that is not positive.
    #[error("weight {0} must be a finite number > 0")]
    BadWeight(f64),
    /// A negative change cost.
    #[error("change cost {0} must be a finite number >= 0")]
    BadChangeCost(f64),
}

impl ResourcePolicy {
    /// Checks that the policy can be honoured on its own (capacity aside).
    pub fn validate(&self) -> Result<(), PolicyError> {
        if !(self.guarantee.is_finite() && self.guarantee >= 0.0) {
            return Err(PolicyError::BadGuarantee(self.guarantee));
        }
        if let Some(limit) = self.limit
            && (limit.is_nan() || limit < self.guarantee)
        {
            return Err(PolicyError::LimitBelowGuarantee {
                guarantee: self.guarantee,
                limit,
            });
        }
        if !(self.slo_quantile > 0.0 && self.slo_quantile < 1.0) {
            return Err(PolicyError::BadSloQuantile(self.slo_quantile));
        }
        if !(self.weight.is_finite() && self.weight > 0.0) {
            return Err(PolicyError::BadWeight(self.weight));
        }
        if !(self.change_cost.is_finite() && self.change_cost >= 0.0) {
            return Err(PolicyError::BadChangeCost(self.change_cost));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_valid() {
        ResourcePolicy::default().validate().unwrap();
    }

    #[test]
    fn each_bad_field_is_named() {
        let p = ResourcePolicy {
            guarantee: 2.0,
            limit: Some(1.0),
            ..Default::default()
        };
        assert_eq!(
            p.validate().unwrap_err().to_string(),
            "limit 1 is below the guarantee 2"
        );
        let p = ResourcePolicy {
            slo_quantile: 1.0,
            ..Default::default()
        };
        assert!(matches!(p.validate(), Err(PolicyError::BadSloQuantile(_))));
        let p = ResourcePolicy {
            guarantee: -1.0,
            ..Default::default()
        };
        assert!(matches!(p.validate(), Err(PolicyError::BadGuarantee(_))));
        let p = ResourcePolicy {
            weight: 0.0,
            ..Default::default()
        };
        assert!(matches!(p.validate(), Err(PolicyError::BadWeight(_))));
    }
}
