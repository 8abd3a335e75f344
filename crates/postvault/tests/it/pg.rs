//! The scenarios again, on PostgreSQL: the tests share a throwaway cluster
//! (`initdb`/`pg_ctl` as the `postgres` user, a free port) while any of
//! them runs, each scenario in schemas of its own; the last one to finish
//! stops it. A cluster that cannot start fails the test.

use std::sync::atomic::{AtomicUsize, Ordering};

use postvault_store_pg::{ClusterOptions, TempCluster};

use crate::{Backend, collect, disclosure, invariants, log, read, rights};

fn on_postgres(scenario: fn(&Backend)) {
    static N: AtomicUsize = AtomicUsize::new(0);
    let cluster = TempCluster::shared(ClusterOptions::default())
        .unwrap_or_else(|e| panic!("the PostgreSQL scenarios need a server: {e}"));
    scenario(&Backend::Postgres {
        url: cluster.url("postgres"),
        schema: format!("pv{}", N.fetch_add(1, Ordering::SeqCst)),
    });
}

macro_rules! on_postgres {
    ($($module:ident :: $test:ident => $scenario:ident),* $(,)?) => {
        $(
            #[test]
            fn $test() {
                on_postgres($module::$scenario);
            }
        )*
    };
}

on_postgres! {
    collect::lines_default_to_the_given_purpose_and_batches_commit
        => lines_default_to_the_given_purpose_and_batches_commit_on,
    collect::the_simulated_day_is_accepted_by_the_default_pack
        => the_simulated_day_is_accepted_by_the_default_pack_on,
    read::reads_return_only_what_the_purpose_may_see
        => reads_return_only_what_the_purpose_may_see_on,
    read::consent_opens_marketing_for_that_person_only
        => consent_opens_marketing_for_that_person_only_on,
    read::expired_records_are_never_returned => expired_records_are_never_returned_on,
    rights::a_hold_blocks_erasure_and_retention_until_released
        => a_hold_blocks_erasure_and_retention_until_released_on,
    rights::erasure_during_a_concurrent_ingest_leaves_no_unreadable_record
        => erasure_during_a_concurrent_ingest_leaves_no_unreadable_record_on,
    rights::the_subject_report_proves_every_leaf_with_the_log_verifier
        => the_subject_report_proves_every_leaf_with_the_log_verifier_on,
    rights::a_correction_keeps_history_and_lists_prior_recipients
        => a_correction_keeps_history_and_lists_prior_recipients_on,
    disclosure::every_instrument_kind_runs_the_whole_workflow
        => every_instrument_kind_runs_the_whole_workflow_on,
    disclosure::quotas_hold_requests_over_rolling_windows
        => quotas_hold_requests_over_rolling_windows_on,
    disclosure::a_delay_order_hides_the_disclosure_from_the_person_until_it_expires
        => a_delay_order_hides_the_disclosure_from_the_person_until_it_expires_on,
    log::every_leaf_is_provably_in_the_signed_tree => every_leaf_is_provably_in_the_signed_tree_on,
    log::checkpoints_are_signed_per_interval_not_per_read_and_stay_consistent_across_restarts
        => checkpoints_are_signed_per_interval_not_per_read_and_stay_consistent_across_restarts_on,
    log::a_person_finds_every_leaf_about_them_and_nobody_else_does
        => a_person_finds_every_leaf_about_them_and_nobody_else_does_on,
    invariants::invariant_3_one_leaf_per_decision => invariant_3_one_leaf_per_decision_on,
    invariants::invariant_4_unknown_and_invisible_subjects_answer_alike
        => invariant_4_unknown_and_invisible_subjects_answer_alike_on,
    invariants::invariant_7_exact_identifier_lookup_only
        => invariant_7_exact_identifier_lookup_only_on,
    invariants::reopened_vault_returns_every_acknowledged_record
        => reopened_vault_returns_every_acknowledged_record_on,
}
