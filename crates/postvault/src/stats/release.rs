//! The noise: OpenDP measurements chosen from the pack's bounds, never our
//! own sampling.
//!
//! - Every key public (the days of the window, an enum's values): the
//!   bounded counts or sums of all keys, missing ones as 0, go through
//!   `make_laplace` (discrete Laplace on integers) under the L1 distance:
//!   pure epsilon-DP.
//! - Some key not public (a ZIP3, an operation code): the bounded counts of
//!   the keys present go through `make_laplace_threshold`, which adds
//!   discrete Laplace noise and keeps a key only if its noisy count reaches
//!   a threshold, under the L0-L1-Linf distance: approximate (epsilon,
//!   delta)-DP, delta being the chance that a key only one person's records
//!   hold is released at all.
//!
//! The scale is set from epsilon and the person's largest contribution,
//! then checked with the measurement's own privacy map: a query never spends
//! more than the epsilon it was charged.

use std::collections::HashMap;

use opendp::accuracy::discrete_laplacian_scale_to_accuracy;
use opendp::core::Measurement;
use opendp::domains::{AtomDomain, MapDomain, VectorDomain};
use opendp::measurements::{make_laplace, make_laplace_threshold};
use opendp::measures::{Approximate, MaxDivergence};
use opendp::metrics::{AbsoluteDistance, L0PInfDistance, L1Distance};

use crate::VaultError;

/// The confidence of the accuracy statement.
pub const CONFIDENCE: f64 = 0.95;

/// What a release spent and how exact it is.
#[derive(Clone, Debug, PartialEq)]
pub struct Released {
    pub values: Vec<(String, i64)>,
    pub epsilon: f64,
    pub delta: f64,
    pub scale: f64,
    /// The smallest noisy value a non-public key needs to be released.
    pub threshold: Option<i64>,
    /// Half-width of the 95% interval of each released value's noise.
    pub accuracy: f64,
}

fn dp(e: opendp::error::Error) -> VaultError {
    VaultError::Refused {
        code: "dp_error",
        message: format!(
            "the differential-privacy library refused the release: {}",
            e.variant
        ),
    }
}

/// A scale for which `map(scale) <= epsilon`, starting from `d_in / epsilon`.
fn fit_scale(
    d_in: f64,
    epsilon: f64,
    map: impl Fn(f64) -> Result<f64, VaultError>,
) -> Result<f64, VaultError> {
    let mut scale = d_in / epsilon;
    for _ in 0..8 {
        if map(scale)? <= epsilon {
            return Ok(scale);
        }
        scale *= 1.0 + 1e-9;
    }
    Err(VaultError::Refused {
        code: "dp_error",
        message: "no noise scale meets the epsilon asked".into(),
    })
}

/// The measurement of a release whose keys are all public, made before
/// the query spends anything (so a measurement OpenDP refuses spends
/// nothing), then [`Public::release`]d over the scan's values.
pub struct Public {
    m: Measurement<VectorDomain<AtomDomain<i64>>, L1Distance<i64>, MaxDivergence, Vec<i64>>,
    spent: f64,
    scale: f64,
    accuracy: f64,
}

impl Public {
    /// `sensitivity` is the most one person moves all values together (L1).
    pub fn prepare(sensitivity: i64, epsilon: f64) -> Result<Public, VaultError> {
        let make = |scale: f64| {
            make_laplace::<_, _, MaxDivergence>(
                VectorDomain::new(AtomDomain::<i64>::default()),
                L1Distance::<i64>::default(),
                scale,
                None,
            )
            .map_err(dp)
        };
        let scale = fit_scale(sensitivity as f64, epsilon, |s| {
            make(s)?.map(&sensitivity).map_err(dp)
        })?;
        let m = make(scale)?;
        let spent = m.map(&sensitivity).map_err(dp)?;
        Ok(Public {
            m,
            spent,
            scale,
            accuracy: accuracy(scale)?,
        })
    }

    /// Noisy values of `keys`: `exact` holds the bounded values of the
    /// keys present; the others are 0.
    pub fn release(
        &self,
        keys: &[String],
        exact: &HashMap<String, i64>,
    ) -> Result<Released, VaultError> {
        let input: Vec<i64> = keys
            .iter()
            .map(|k| exact.get(k).copied().unwrap_or(0))
            .collect();
        let noisy = self.m.invoke(&input).map_err(dp)?;
        Ok(Released {
            values: keys.iter().cloned().zip(noisy).collect(),
            epsilon: self.spent,
            delta: 0.0,
            scale: self.scale,
            threshold: None,
            accuracy: self.accuracy,
        })
    }
}

/// Noisy values of `keys` (all public): [`Public::prepare`], then
/// [`Public::release`].
#[cfg(test)]
pub fn public_keys(
    keys: &[String],
    exact: &HashMap<String, i64>,
    sensitivity: i64,
    epsilon: f64,
) -> Result<Released, VaultError> {
    Public::prepare(sensitivity, epsilon)?.release(keys, exact)
}

/// Discrete Laplace noise and a threshold over counts by key.
type ThresholdMeasurement = Measurement<
    MapDomain<AtomDomain<String>, AtomDomain<i64>>,
    L0PInfDistance<1, AbsoluteDistance<i64>>,
    Approximate<MaxDivergence>,
    HashMap<String, i64>,
>;

/// The measurement of a release with keys that are not public, made
/// before the query spends anything; then [`Private::release`]d.
pub struct Private {
    m: ThresholdMeasurement,
    spent: (f64, f64),
    scale: f64,
    threshold: i64,
    accuracy: f64,
}

impl Private {
    /// A threshold set so a key held by one person's records is released
    /// with probability at most `delta`. A person touches at most
    /// `max_records` keys, adds at most `max_records` in all and
    /// `per_group` to one key.
    pub fn prepare(
        max_records: u32,
        per_group: u32,
        epsilon: f64,
        delta: f64,
    ) -> Result<Private, VaultError> {
        let d_in: (u32, i64, i64) = (max_records, i64::from(max_records), i64::from(per_group));
        let make = |scale: f64, threshold: i64| {
            make_laplace_threshold::<_, _, Approximate<MaxDivergence>>(
                MapDomain::new(
                    AtomDomain::<String>::default(),
                    AtomDomain::<i64>::default(),
                ),
                L0PInfDistance(AbsoluteDistance::<i64>::default()),
                scale,
                threshold,
                None,
            )
            .map_err(dp)
        };
        let map = |scale: f64, threshold: i64| make(scale, threshold)?.map(&d_in).map_err(dp);
        // Epsilon does not depend on the threshold; delta falls as it grows.
        let scale = fit_scale(d_in.1 as f64, epsilon, |s| Ok(map(s, 1 << 40)?.0))?;
        // OpenDP asks for a threshold of at least the most one person adds
        // to a key.
        let (mut lo, mut hi) = (d_in.2 - 1, d_in.2);
        while map(scale, hi)?.1 > delta {
            lo = hi;
            hi = hi.checked_mul(2).ok_or_else(|| VaultError::Refused {
                code: "dp_error",
                message: "no threshold meets the delta asked".into(),
            })?;
        }
        // The smallest threshold in (lo, hi] that meets delta.
        while lo + 1 < hi {
            let mid = lo + (hi - lo) / 2;
            if map(scale, mid)?.1 > delta {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        let threshold = hi;
        let m = make(scale, threshold)?;
        let spent = m.map(&d_in).map_err(dp)?;
        Ok(Private {
            m,
            spent,
            scale,
            threshold,
            accuracy: accuracy(scale)?,
        })
    }

    /// Noisy counts of the keys present in `exact`, each released only if
    /// it reaches the threshold.
    pub fn release(&self, exact: HashMap<String, i64>) -> Result<Released, VaultError> {
        let noisy = self.m.invoke(&exact).map_err(dp)?;
        let mut values: Vec<(String, i64)> = noisy.into_iter().collect();
        values.sort();
        Ok(Released {
            values,
            epsilon: self.spent.0,
            delta: self.spent.1,
            scale: self.scale,
            threshold: Some(self.threshold),
            accuracy: self.accuracy,
        })
    }
}

/// Noisy counts of the keys present in `exact`: [`Private::prepare`], then
/// [`Private::release`].
#[cfg(test)]
pub fn private_keys(
    exact: HashMap<String, i64>,
    max_records: u32,
    per_group: u32,
    epsilon: f64,
    delta: f64,
) -> Result<Released, VaultError> {
    Private::prepare(max_records, per_group, epsilon, delta)?.release(exact)
}

fn accuracy(scale: f64) -> Result<f64, VaultError> {
    discrete_laplacian_scale_to_accuracy(scale, 1.0 - CONFIDENCE).map_err(dp)
}
