//! The conformance suite every [`Store`] and [`KeyStore`] backend must pass.
//! Each check takes a fresh, empty store and panics on a violation; a
//! backend's tests call [`run_all`] (and [`run_all_keys`]) with a factory.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::{
    AccountingRow, ConsentRow, DisclosureRow, DisclosureStep, Held, HoldRow, KeyStore, LookupRow,
    PrincipalRow, ReadScope, RecordRow, Store, StoreError, SubjectData, SubjectKeys, SubjectRef,
    SubmitQuery, WriteBatch,
};

mod keys;
mod leaf_index;
mod ledger;
mod log;
mod ops;
mod records;
mod rights;
mod stats;

pub use keys::{
    log_state_swaps_only_from_the_state_expected, rewrap_changes_every_key_in_one_transaction,
    secrets_are_destroyed_only_under_their_guard,
    secrets_are_listed_raced_and_destroyed_in_batches, secrets_are_write_once,
    secrets_can_be_destroyed, subject_keys_are_destroyed_only_as_read,
    subject_keys_are_found_many_at_once, subject_keys_are_kept_once,
};
pub use leaf_index::{
    leaf_index_files_each_tagged_leaf_once, refiled_leaves_clear_far_filings_and_forged_seals,
    refiled_leaves_fill_their_slots_in_order,
};
pub use ledger::{
    disclosure_steps_read_write_and_account_atomically,
    disclosures_count_quotas_and_reuse_in_their_transaction,
    submissions_read_the_protective_category_they_are_given,
};
pub use log::{
    checkpoints_are_kept_by_size, cosignatures_are_kept_per_checkpoint_and_cosigner,
    log_hashes_advance_only_from_their_size, proof_tiles_are_kept_with_their_hashes,
};
pub use ops::{
    intents_are_written_ahead_counted_and_completed_once,
    key_usage_and_record_subjects_count_what_keys_seal, meta_round_trips, principals_are_unique,
    principals_rotate_and_revoke,
    runs_commit_progress_with_their_batches_and_refuse_a_second_writer,
};
pub use records::{
    consents_keep_the_latest, failed_batch_leaves_nothing, leaves_are_dense_and_ordered,
    lookups_find_subjects, reads_with_a_second_leaf_append_it_right_after,
    scoped_reads_touch_only_what_they_may, unknown_subject_still_leaves_a_leaf,
    unlogged_reads_are_accounted_only_while_nothing_changed, write_then_read_accounts_each,
};
pub use rights::{
    corrections_keep_history_once, erased_rows_are_dead_until_purged,
    erasure_and_purge_counts_leave_mail_cover_records_out,
    erasure_deletes_rows_spares_holds_and_fences_writes,
    erasure_finishes_completes_and_purges_in_one_transaction,
    erasure_tells_holds_under_a_delay_order,
    person_reads_tell_since_when_a_hold_they_may_know_of_is_in_force,
    rekey_replaces_ciphertext_in_place, sweeps_delete_only_what_expired_and_is_not_held,
};
pub use stats::{
    budget_spends_check_and_account_atomically, category_records_come_person_by_person,
    concurrent_spends_never_overspend, scan_blocks_stand_for_rows_until_they_change,
};

pub(super) fn record(subject: u8, n: u8, category: &str) -> RecordRow {
    RecordRow {
        id: [n; 16],
        subject: [subject; 16],
        category: category.into(),
        purpose: "delivery".into(),
        source: "svc".into(),
        collected_at: 1_000 + i64::from(n),
        expires_at: 9_000,
        key_id: 0,
        sealed: vec![n, subject, 0xAA],
        superseded_by: None,
    }
}

pub(super) fn leaf_body(idx: u64, i: usize) -> crate::Leaf {
    format!("leaf {idx} #{i}").into_bytes().into()
}

/// Runs every data-store check, each on a fresh store from `fresh`.
pub fn run_all(fresh: &dyn Fn() -> Box<dyn Store>) {
    write_then_read_accounts_each(&*fresh());
    unknown_subject_still_leaves_a_leaf(&*fresh());
    failed_batch_leaves_nothing(&*fresh());
    consents_keep_the_latest(&*fresh());
    lookups_find_subjects(&*fresh());
    principals_are_unique(&*fresh());
    principals_rotate_and_revoke(&*fresh());
    scoped_reads_touch_only_what_they_may(&*fresh());
    unlogged_reads_are_accounted_only_while_nothing_changed(&*fresh());
    reads_with_a_second_leaf_append_it_right_after(&*fresh());
    leaves_are_dense_and_ordered(&*fresh());
    meta_round_trips(&*fresh());
    log_hashes_advance_only_from_their_size(&*fresh());
    proof_tiles_are_kept_with_their_hashes(&*fresh());
    leaf_index_files_each_tagged_leaf_once(&*fresh());
    refiled_leaves_fill_their_slots_in_order(&*fresh());
    refiled_leaves_clear_far_filings_and_forged_seals(&*fresh());
    checkpoints_are_kept_by_size(&*fresh());
    cosignatures_are_kept_per_checkpoint_and_cosigner(&*fresh());
    disclosures_count_quotas_and_reuse_in_their_transaction(&*fresh());
    submissions_read_the_protective_category_they_are_given(&*fresh());
    disclosure_steps_read_write_and_account_atomically(&*fresh());
    erasure_deletes_rows_spares_holds_and_fences_writes(&*fresh());
    erasure_tells_holds_under_a_delay_order(&*fresh());
    person_reads_tell_since_when_a_hold_they_may_know_of_is_in_force(&*fresh());
    erasure_finishes_completes_and_purges_in_one_transaction(&*fresh());
    erased_rows_are_dead_until_purged(&*fresh());
    erasure_and_purge_counts_leave_mail_cover_records_out(&*fresh());
    sweeps_delete_only_what_expired_and_is_not_held(&*fresh());
    rekey_replaces_ciphertext_in_place(&*fresh());
    corrections_keep_history_once(&*fresh());
    runs_commit_progress_with_their_batches_and_refuse_a_second_writer(&*fresh());
    intents_are_written_ahead_counted_and_completed_once(&*fresh());
    key_usage_and_record_subjects_count_what_keys_seal(&*fresh());
    budget_spends_check_and_account_atomically(&*fresh());
    concurrent_spends_never_overspend(&*fresh());
    category_records_come_person_by_person(&*fresh());
    scan_blocks_stand_for_rows_until_they_change(&*fresh());
}

/// Runs every key-store check on a fresh key store from `fresh`.
pub fn run_all_keys(fresh: &dyn Fn() -> Box<dyn KeyStore>) {
    subject_keys_are_kept_once(&*fresh());
    subject_keys_are_found_many_at_once(&*fresh());
    secrets_are_write_once(&*fresh());
    secrets_can_be_destroyed(&*fresh());
    secrets_are_listed_raced_and_destroyed_in_batches(&*fresh());
    subject_keys_are_destroyed_only_as_read(&*fresh());
    secrets_are_destroyed_only_under_their_guard(&*fresh());
    rewrap_changes_every_key_in_one_transaction(&*fresh());

    log_state_swaps_only_from_the_state_expected(&*fresh());
}
