//! What the store keeps for aggregate statistics: the privacy-budget
//! ledger's rows and spends (see [`crate::StatsStore`]).
//!
//! Like the rest of the store these rows hold principal names, purposes,
//! periods, amounts and times; never a personal-data value.

/// What one query asks to spend.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BudgetSpend {
    pub principal: String,
    pub purpose: String,
    /// The period the spend counts in, e.g. `day:2026-12-03`.
    pub period: String,
    /// Micro-epsilon this query spends.
    pub amount: u64,
    /// Micro-epsilon the period allows in all.
    pub limit: u64,
    /// Unix milliseconds.
    pub at: i64,
}

/// What the ledger decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BudgetOutcome {
    /// Spent; this much remains in the period.
    Spent { remaining: u64 },
    /// Nothing spent: the query would go over; this much remains.
    Exhausted { remaining: u64 },
}

/// One principal's spending for one purpose in one period.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BudgetRow {
    pub principal: String,
    pub purpose: String,
    pub period: String,
    /// Micro-epsilon spent.
    pub spent: u64,
    /// Queries answered.
    pub queries: u64,
    /// Queries refused as over budget.
    pub refused: u64,
    /// Unix milliseconds of the last query.
    pub updated_at: i64,
}

/// Builds the query's leaf from the ledger's decision, given its index.
pub type BudgetLeafFn<'a> = dyn FnMut(&BudgetOutcome, u64) -> Vec<u8> + 'a;

/// The decision of the ledger on `spend`, given what was spent before.
pub fn decide(spend: &BudgetSpend, spent: u64) -> BudgetOutcome {
    let remaining = spend.limit.saturating_sub(spent);
    if spend.amount <= remaining {
        BudgetOutcome::Spent {
            remaining: remaining - spend.amount,
        }
    } else {
        BudgetOutcome::Exhausted { remaining }
    }
}
