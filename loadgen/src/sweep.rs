//! Offered rate stepped up until the broker saturates: each step is a short open-loop
//! produce run; the sweep stops after the first step where the achieved rate falls under
//! `saturation_ratio` of the offered rate, the p99 exceeds `p99_limit`, or errors appear
//! beyond 1% of the sends. The steps give the latency-versus-throughput curve, and the
//! best achieved rate before saturation is the broker's maximum throughput at these settings.

use std::time::Duration;

use anyhow::Result;
use serde::Serialize;

use crate::produce::{self, ProduceConfig, ProduceResult};
use crate::route::Target;

#[derive(Clone, Debug)]
pub struct SweepConfig {
    /// Settings of every step (its rate is replaced by the step's rate).
    pub base: ProduceConfig,
    pub start_rate_per_s: f64,
    /// Each step multiplies the rate by this.
    pub factor: f64,
    pub steps_max: usize,
    /// Achieved / offered under this means saturated.
    pub saturation_ratio: f64,
    pub p99_limit: Duration,
}

#[derive(Clone, Debug, Serialize)]
pub struct SweepResult {
    pub label: String,
    pub steps: Vec<ProduceResult>,
    /// Highest achieved rate over the steps that were not saturated (0 if none).
    pub max_unsaturated_msgs_per_s: f64,
    /// Highest achieved rate over all steps.
    pub max_achieved_msgs_per_s: f64,
    pub stop_reason: String,
}

/// Why a step counts as saturated, if it does.
pub fn saturation(step: &ProduceResult, cfg: &SweepConfig) -> Option<String> {
    let ratio = step.achieved_msgs_per_s / step.offered_msgs_per_s.max(1e-9);
    if ratio < cfg.saturation_ratio {
        return Some(format!(
            "achieved {:.0}/s is {:.0}% of offered {:.0}/s",
            step.achieved_msgs_per_s,
            ratio * 100.0,
            step.offered_msgs_per_s
        ));
    }
    let p99_limit_us = cfg.p99_limit.as_secs_f64() * 1e6;
    if step.latency.p99_us > p99_limit_us {
        return Some(format!(
            "p99 {:.0} µs over the {:.0} µs limit",
            step.latency.p99_us, p99_limit_us
        ));
    }
    if step.error_count() * 100 > step.sends_measured.max(1) {
        return Some(format!(
            "{} errors in {} sends",
            step.error_count(),
            step.sends_measured
        ));
    }
    None
}

/// Runs steps until saturation or `steps_max`; `on_step` sees each step as it finishes.
pub fn run(
    label: &str,
    cfg: &SweepConfig,
    targets: &[Target],
    mut on_step: impl FnMut(&ProduceResult),
) -> Result<SweepResult> {
    let mut steps = Vec::new();
    let mut rate = cfg.start_rate_per_s;
    let mut max_unsaturated: f64 = 0.0;
    let mut stop_reason = format!("reached {} steps", cfg.steps_max);
    for _ in 0..cfg.steps_max {
        let mut step_cfg = cfg.base.clone();
        step_cfg.rate_per_s = rate;
        let step = produce::run(&step_cfg, targets)?;
        on_step(&step);
        let saturated = saturation(&step, cfg);
        if saturated.is_none() {
            max_unsaturated = max_unsaturated.max(step.achieved_msgs_per_s);
        }
        steps.push(step);
        if let Some(reason) = saturated {
            stop_reason = format!("saturated at {rate:.0}/s offered: {reason}");
            break;
        }
        rate *= cfg.factor;
    }
    let max_achieved = steps
        .iter()
        .map(|s| s.achieved_msgs_per_s)
        .fold(0.0, f64::max);
    Ok(SweepResult {
        label: label.to_string(),
        steps,
        max_unsaturated_msgs_per_s: max_unsaturated,
        max_achieved_msgs_per_s: max_achieved,
        stop_reason,
    })
}
