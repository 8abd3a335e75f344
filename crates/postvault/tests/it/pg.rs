//! The scenarios again, on PostgreSQL: the tests share a throwaway cluster
//! (`initdb`/`pg_ctl` as the `postgres` user, a free port) while any of
//! them runs, each scenario in schemas of its own; the last one to finish
//! stops it. A cluster that cannot start fails the test.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use postvault::Vault;
use postvault_store::testing::{Faults, Faulty};
use postvault_store_pg::{ClusterOptions, PgKeyStore, PgOptions, PgStore, TempCluster};

use crate::{
    Backend, collect, disclosure, invariants, log, officer, oracles, policy, portal, read,
    reliability, rights, stats,
};

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
    portal::access_codes => access_codes_on,
    portal::erasure_requests => erasure_requests_on,
    stats::refusals_spend_nothing_and_read_nothing
        => refusals_spend_nothing_and_read_nothing_on,
    stats::budget_runs_out_and_renews => budget_runs_out_and_renews_on,
    stats::concurrent_queries_never_overspend => concurrent_queries_never_overspend_on,
    collect::every_rejection_names_line_field_and_rule
        => every_rejection_names_line_field_and_rule_on,
    collect::role_must_be_allowed_to_collect_for_the_purpose
        => role_must_be_allowed_to_collect_for_the_purpose_on,
    collect::invalid_utf8_and_oversized_lines_are_rejected_alone
        => invalid_utf8_and_oversized_lines_are_rejected_alone_on,
    collect::batches_keep_line_order_across_workers_and_blank_input_writes_nothing
        => batches_keep_line_order_across_workers_and_blank_input_writes_nothing_on,
    collect::simulated_mail_cover_items_need_an_order_in_force
        => simulated_mail_cover_items_need_an_order_in_force_on,
    collect::simulated_marketing_opt_ins_need_the_persons_consent
        => simulated_marketing_opt_ins_need_the_persons_consent_on,
    oracles::collection_never_creates_changes_or_revives_consent
        => collection_never_creates_changes_or_revives_consent_on,
    oracles::consent_to_a_prohibited_or_unneeded_purpose_is_refused
        => consent_to_a_prohibited_or_unneeded_purpose_is_refused_on,
    oracles::denial_reasons_do_not_depend_on_the_person
        => denial_reasons_do_not_depend_on_the_person_on,
    oracles::subject_ids_with_invisible_characters_are_refused_everywhere
        => subject_ids_with_invisible_characters_are_refused_everywhere_on,
    read::ip_addresses_and_cards_are_minimized
        => ip_addresses_and_cards_are_minimized_on,
    rights::a_hold_lapses_at_its_expiry
        => a_hold_lapses_at_its_expiry_on,
    rights::consent_takes_effect_on_the_next_read
        => consent_takes_effect_on_the_next_read_on,
    rights::a_refusal_under_a_delayed_hold_is_not_shown_to_the_person
        => a_refusal_under_a_delayed_hold_is_not_shown_to_the_person_on,
    rights::concurrent_one_person_erasures_each_get_their_own_answer
        => concurrent_one_person_erasures_each_get_their_own_answer_on,
    rights::a_delayed_hold_placed_as_an_erasure_starts_is_not_shown_to_the_person
        => a_delayed_hold_placed_as_an_erasure_starts_is_not_shown_to_the_person_on,
    rights::the_persons_own_erasure_under_a_delayed_hold_waits_without_naming_it
        => the_persons_own_erasure_under_a_delayed_hold_waits_without_naming_it_on,
    rights::records_a_delayed_hold_keeps_past_retention_are_not_shown_to_the_person
        => records_a_delayed_hold_keeps_past_retention_are_not_shown_to_the_person_on,
    rights::what_a_known_hold_kept_since_its_placement_is_shown_while_it_stands
        => what_a_known_hold_kept_since_its_placement_is_shown_while_it_stands_on,
    log::the_log_is_served_as_c2sp_tiles
        => the_log_is_served_as_c2sp_tiles_on,
    disclosure::red_team_no_data_leaves_for_anyone_not_named_or_beyond_what_was_approved
        => red_team_no_data_leaves_for_anyone_not_named_or_beyond_what_was_approved_on,
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
    oracles::a_protected_persons_submission_answers_like_anyone_elses
        => a_protected_persons_submission_answers_like_anyone_elses_on,
    oracles::steps_by_a_principal_who_may_not_act_answer_alike_for_real_and_made_up_ids
        => steps_by_a_principal_who_may_not_act_answer_alike_for_real_and_made_up_ids_on,
    oracles::a_document_is_used_once_whoever_presents_it_and_however_it_is_spelled
        => a_document_is_used_once_whoever_presents_it_and_however_it_is_spelled_on,
    oracles::quotas_count_people_across_requests_and_principals
        => quotas_count_people_across_requests_and_principals_on,
    oracles::mail_cover_extensions_are_counted_from_the_ledger
        => mail_cover_extensions_are_counted_from_the_ledger_on,
    oracles::a_short_pause_does_not_restart_the_mail_cover_count
        => a_short_pause_does_not_restart_the_mail_cover_count_on,
    officer::the_officer_sees_every_field_beside_the_checks
        => the_officer_sees_every_field_beside_the_checks_on,
    officer::a_cover_extension_is_linked_to_its_order_in_the_ledger
        => a_cover_extension_is_linked_to_its_order_in_the_ledger_on,
    policy::a_pack_change_waits_for_its_notice_when_it_widens
        => a_pack_change_waits_for_its_notice_when_it_widens_on,

    reliability::collection_under_a_batch_id_is_idempotent
        => collection_under_a_batch_id_is_idempotent_on,
    reliability::an_external_master_key_seals_the_key_store_and_rotates_atomically
        => an_external_master_key_seals_the_key_store_and_rotates_atomically_on,
}

/// Two nodes on one database: while node A signs a checkpoint, node B
/// appends and signs a larger one. A must not take B's for a rolled-back
/// log, and the two checkpoints must be consistent.
#[test]
fn a_node_does_not_take_a_larger_checkpoint_of_another_node_for_a_rollback() {
    use base64::Engine as _;
    static N: AtomicUsize = AtomicUsize::new(0);
    let cluster = TempCluster::shared(ClusterOptions::default())
        .unwrap_or_else(|e| panic!("the PostgreSQL scenarios need a server: {e}"));
    let url = cluster.url("postgres");
    let schema = format!("race{}", N.fetch_add(1, Ordering::SeqCst));
    let b = Backend::Postgres {
        url: url.clone(),
        schema: schema.clone(),
    };
    let dir = tempfile::tempdir().unwrap();
    let c = crate::clock();
    let node_b = Arc::new(crate::vault_on(&b, dir.path(), &c));
    crate::collect(&node_b, "ingest", &crate::person("s1", "m"));
    let po = PgOptions {
        schema: schema.clone(),
        keys_schema: format!("{schema}_keys"),
        ..PgOptions::default()
    };
    let faults = Faults::new();
    let store = Faulty::new(PgStore::open(&url, &po).unwrap(), &faults);
    let node_a = Vault::open_with(
        Path::new(&url),
        Box::new(store),
        Box::new(PgKeyStore::open(&url, &po).unwrap()),
        crate::opts(&c),
    )
    .unwrap();
    let sorting = node_a.principal("sorting").unwrap();
    node_a.read(&sorting, "s1", "delivery").unwrap();
    let ran = Arc::new(AtomicUsize::new(0));
    let (other, done) = (node_b.clone(), ran.clone());
    // Node B acts just before node A reads the latest checkpoint.
    faults.before("latest_checkpoint", move || {
        let p = other.principal("sorting").unwrap();
        for _ in 0..3 {
            other.read(&p, "s1", "delivery").unwrap();
        }
        other.checkpoint().unwrap();
        done.fetch_add(1, Ordering::SeqCst);
    });
    let a_note = node_a.checkpoint().unwrap();
    assert_eq!(ran.load(Ordering::SeqCst), 1, "node B signed in between");
    let key = node_a.log_verifier_key();
    let cps: Vec<_> = node_a
        .store()
        .checkpoints()
        .unwrap()
        .into_iter()
        .map(|(_, n)| n)
        .chain([a_note])
        .map(|n| postvault_log::open_checkpoint(&n, &key).unwrap())
        .collect();
    // A found B's checkpoint covering the whole log and signed nothing new.
    assert_eq!(cps.len(), 2);
    assert_eq!(cps[1].size, node_a.store().log_size().unwrap());
    let b64 = base64::engine::general_purpose::STANDARD;
    for x in &cps {
        for y in &cps {
            if x.size == y.size {
                assert_eq!(x.root, y.root);
            } else if x.size < y.size {
                let p = node_a.prove_consistency(x.size, y.size).unwrap();
                let path: Vec<[u8; 32]> = p
                    .hashes
                    .iter()
                    .map(|h| b64.decode(h).unwrap().try_into().unwrap())
                    .collect();
                postvault_log::verify_consistency(x.size, y.size, &x.root, &y.root, &path).unwrap();
            }
        }
    }
}

/// Two nodes on one database read and sign at once, many times over: every
/// checkpoint either signed is kept, each extends the one before (the key
/// store's state is swapped under its row lock), and the log verifies.
#[test]
fn two_nodes_signing_at_once_never_sign_a_fork() {
    static N: AtomicUsize = AtomicUsize::new(0);
    let cluster = TempCluster::shared(ClusterOptions::default())
        .unwrap_or_else(|e| panic!("the PostgreSQL scenarios need a server: {e}"));
    let b = Backend::Postgres {
        url: cluster.url("postgres"),
        schema: format!("fork{}", N.fetch_add(1, Ordering::SeqCst)),
    };
    let dir = tempfile::tempdir().unwrap();
    let c = crate::clock();
    let a = Arc::new(crate::vault_on(&b, dir.path(), &c));
    crate::collect(&a, "ingest", &crate::person("s1", "m"));
    let other = Arc::new(b.open(dir.path(), crate::opts(&c)).unwrap());
    let signed: Vec<Vec<String>> = std::thread::scope(|s| {
        let hs: Vec<_> = [a.clone(), other.clone()]
            .into_iter()
            .map(|v| {
                s.spawn(move || {
                    let p = v.principal("sorting").unwrap();
                    let mut notes = Vec::new();
                    for _ in 0..15 {
                        v.read(&p, "s1", "delivery").unwrap();
                        notes.push(v.checkpoint().unwrap());
                    }
                    notes
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let key = a.log_verifier_key();
    let kept = a.store().checkpoints().unwrap();
    let state = b.keys(dir.path()).log_state().unwrap().unwrap();
    assert_eq!(
        state.signed as usize,
        kept.len(),
        "every signed checkpoint is kept"
    );
    // Every note a node was handed is a kept one.
    for n in signed.iter().flatten() {
        assert!(
            kept.iter().any(|(_, k)| k == n),
            "a note handed out is not kept"
        );
    }
    let cps: Vec<_> = kept
        .iter()
        .map(|(_, n)| postvault_log::open_checkpoint(n, &key).unwrap())
        .collect();
    for w in cps.windows(2) {
        assert!(w[0].size < w[1].size);
        let p = a.prove_consistency(w[0].size, w[1].size).unwrap();
        let path: Vec<[u8; 32]> = p
            .hashes
            .iter()
            .map(|h| {
                use base64::Engine as _;
                base64::engine::general_purpose::STANDARD
                    .decode(h)
                    .unwrap()
                    .try_into()
                    .unwrap()
            })
            .collect();
        postvault_log::verify_consistency(w[0].size, w[1].size, &w[0].root, &w[1].root, &path)
            .unwrap();
    }
    assert!(
        a.verify_log(&postvault::VerifyOptions::default())
            .unwrap()
            .ok
    );
}
