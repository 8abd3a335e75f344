//! Mail covers: the check of a cover record at collection (R12-R18), the
//! chain of continuous covers, and the per-order keys that seal their records.

use serde_json::Value;

use postvault_crypto::{DataKey, KeyKind};
use postvault_policy::contract::{COVER_ORDER_FIELD, COVER_PARTY_FIELDS};
use postvault_policy::disclosure::{
    self, CoverChain, DAY_MS, Instrument, InstrumentKind, PriorCover,
};
use postvault_store::{DisclosureRow, SubjectRef};

use crate::error::VaultError;
use crate::vault::Vault;

use super::*;

impl Vault {
    /// Checks a mail-cover record at collection (R12-R18): it names, in
    /// `order_id`, an approved cover of the line's subject that is running
    /// now and was not destroyed, and it is not correspondence with the
    /// subject's known attorney (233.3(g)(3)). Returns the order's key
    /// number, under which the record is sealed.
    pub(crate) fn check_cover_record(
        &self,
        line_no: u64,
        subject: &SubjectRef,
        cat: &postvault_policy::Category,
        fields: &crate::minimize::Minimized,
    ) -> Result<u32, crate::LineError> {
        let err = |code: &str, field: &str, rule: &str, message: &str| crate::LineError {
            line: line_no,
            code: code.into(),
            field: Some(field.into()),
            rule: Some(rule.into()),
            message: message.into(),
        };
        let field = |name: &str| {
            cat.field(name)
                .and_then(|(ix, _)| crate::minimize::field_value(fields, ix))
                .and_then(Value::as_str)
                .unwrap_or("")
        };
        let no_cover = || {
            err(
                "no_active_cover",
                COVER_ORDER_FIELD,
                "R14",
                "`order_id` names no mail cover of this subject that is approved and running now: recording needs an order in force (39 CFR 233.3(g)(4)-(5))",
            )
        };
        let now = self.clock.now_ms();
        let row = self
            .store
            .disclosure(field(COVER_ORDER_FIELD))
            .ok()
            .flatten()
            .filter(|r| {
                r.kind == InstrumentKind::MailCover.as_str()
                    && (r.status == status::APPROVED || r.status == status::FETCHED)
                    && r.subjects.contains(subject)
                    && r.data_from.is_some_and(|t| t <= now)
                    && r.data_until.is_some_and(|t| now < t)
            })
            .ok_or_else(no_cover)?;
        let key_id = u32::try_from(row.seq).map_err(|_| no_cover())?;
        if !matches!(self.cover_key(row.seq), Ok(Some(_))) {
            return Err(no_cover());
        }
        // An order whose instrument the vault keeps but cannot open is no
        // order to record under: the attorney check below must run.
        let inst = self.open_instrument(&row).map_err(|_| no_cover())?;
        if inst.is_none() && !row.sealed.is_empty() {
            return Err(no_cover());
        }
        if let Some(att) = inst.as_ref().and_then(|i| i.known_attorney.as_ref()) {
            // Compared as skeletons: spacing, punctuation, postal
            // abbreviations, look-alike, full-width and invisible characters
            // do not get past it.
            let names = |text: &str| crate::fold::names_party(text, &att.name, &att.address);
            let [sender, return_address] = COVER_PARTY_FIELDS;
            if names(field(sender)) || names(field(return_address)) {
                return Err(err(
                    "attorney_correspondence",
                    "sender_as_shown",
                    "R15",
                    "correspondence between the subject and the subject's known attorney is never recorded (39 CFR 233.3(g)(3))",
                ));
            }
        }
        Ok(key_id)
    }

    /// The run of `requester`'s earlier covers of `subject` that `inst`
    /// continues, from the ledger (requests not refused, submitted before
    /// `before_seq` when given), and the request it directly extends. The
    /// requester's own covers make the run a refusal may speak of: another
    /// agency's (possibly secret) cover never shows through one. `None`
    /// takes every requester's covers, for what only the office is told.
    pub(crate) fn cover_chain_of(
        &self,
        requester: Option<&str>,
        subject: Option<&SubjectRef>,
        inst: &Instrument,
        before_seq: Option<u64>,
    ) -> Result<(Option<CoverChain>, Option<String>), VaultError> {
        let (Some(subject), Some(start)) = (subject, inst.start) else {
            return Ok((None, None));
        };
        let rows: Vec<DisclosureRow> = self
            .store
            .disclosures()?
            .into_iter()
            .filter(|d| {
                requester.is_none_or(|r| d.requester == r)
                    && d.kind == InstrumentKind::MailCover.as_str()
                    && d.status != status::REFUSED
                    && (d.decided_at.is_some()
                        || d.status == status::PENDING
                        || d.status == status::HELD)
                    && d.subjects.first() == Some(subject)
                    && before_seq.is_none_or(|s| d.seq < s)
            })
            .collect();
        let orders: Vec<(&str, PriorCover)> = rows
            .iter()
            .filter_map(|d| {
                let (from, until) = (d.data_from?, d.data_until?);
                Some((
                    d.id.as_str(),
                    PriorCover {
                        start_ms: from,
                        // An order ended early ran until then.
                        end_ms: d.ended_at.map_or(until, |e| e.min(until)),
                    },
                ))
            })
            .collect();
        let priors: Vec<PriorCover> = orders.iter().map(|(_, p)| *p).collect();
        let (chain, direct) = disclosure::cover_chain(&priors, start.0);
        Ok((
            Some(chain),
            direct
                .and_then(|i| orders.get(i))
                .map(|(id, _)| (*id).to_string()),
        ))
    }

    pub(super) fn create_cover_key(&self, seq: u64) -> Result<(), VaultError> {
        let name = cover_secret(seq);
        let w = self
            .master
            .new_wrapped(&self.rng, KeyKind::Data, name.as_bytes())?;
        match self.keys.put_secret(&name, &w) {
            Ok(()) | Err(postvault_store::StoreError::SecretExists(_)) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// The order key of mail cover `seq`, unless it was destroyed.
    pub(crate) fn cover_key(&self, seq: u64) -> Result<Option<DataKey>, VaultError> {
        let name = cover_secret(seq);
        match self.keys.secret(&name)? {
            Some(w) => Ok(Some(self.master.data_key(&w, name.as_bytes())?)),
            None => Ok(None),
        }
    }

    /// The categories a cover's destruction leaves name: the pack's
    /// mail-cover record category (`[engine] mail_cover_record_category`),
    /// or none.
    pub(crate) fn cover_categories(&self) -> Vec<String> {
        self.pack
            .taxonomy()
            .engine()
            .mail_cover_record_category()
            .map(str::to_string)
            .into_iter()
            .collect()
    }
}

pub(crate) fn cover_secret(seq: u64) -> String {
    format!("cover:{seq}")
}

/// When a cover's requester loses access to its records.
pub(super) fn cover_access_until(r: &DisclosureRow) -> i64 {
    let end = match (r.data_until, r.ended_at) {
        (Some(a), Some(b)) => a.min(b),
        (a, b) => a.or(b).unwrap_or(i64::MAX),
    };
    end.saturating_add(COVER_ACCESS_DAYS_AFTER_END * DAY_MS)
}

pub(super) trait EndedCover {
    /// A cover ended early (not destroyed) keeps what it recorded for its
    /// requester, as one that ran its course does (R18).
    fn fetches_possible_after_end(&self) -> bool;
}

impl EndedCover for DisclosureRow {
    fn fetches_possible_after_end(&self) -> bool {
        self.end_reason.as_deref() != Some(EndReason::ImproperlyOrdered.as_str())
    }
}
