//! Every table's lifecycle: a row is kept inside its retention and purged after it. Rows
//! are made by the real flow (all three services, real PostgreSQL), then back-dated by
//! their age column to just inside or just past the retention the services' settings
//! give, and the services' own purges (their `retentions()`) run once: time is
//! injected, never slept.

// The harness and helpers of a test fail the test by panicking, like the tests themselves.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use platform::{
    db::Database,
    proto::booking::v1 as pb,
    purge::{Retention, purge_all},
};
use std::time::Duration;
use support::{
    eventually,
    stack::{Options, Stack, create_request, edit_request, slot},
};
use tonic::Code;

/// An hour, in seconds: how far inside or past its retention a row is put.
const HOUR: f64 = 3_600.0;

/// Runs `tables`' purges once on `url` (as [`platform::purge::PurgeWorker`] does each
/// pass); the rows purged per table.
async fn purge_once(url: &str, tables: Vec<Retention>) -> Vec<u64> {
    let db = Database::connect_lazy(url, 1).expect("pool");
    purge_all(&db.raw_client().await.expect("client"), &tables).await.expect("purge")
}

/// Seconds of `keep` plus `offset` (negative: inside the retention).
fn ago(keep: u64, offset: f64) -> f64 {
    keep as f64 + offset
}

/// Creates a booking of `party` guests `days` ahead; its id.
async fn create(stack: &Stack, days: u64, party: i32) -> String {
    let booking = stack
        .booking()
        .create_booking(create_request(slot(days, 19), party))
        .await
        .expect("create")
        .into_inner()
        .booking
        .expect("booking");
    booking.id
}

/// Waits until every queue about `ids` settled, release tasks included.
async fn settle(stack: &Stack, ids: &[&str]) {
    stack.settle(ids).await;
    let db = stack.db.client().await;
    eventually(Duration::from_secs(20), "release tasks done", || {
        let db = &db;
        async move {
            let open: i64 = db
                .query_one("SELECT count(*) FROM booking.release_tasks WHERE state = 'OPEN'", &[])
                .await
                .expect("count")
                .get(0);
            (open == 0).then_some(())
        }
    })
    .await;
}

/// Rows of `table` about booking `id` (its `booking_id` column).
async fn rows(stack: &Stack, table: &str, id: &str) -> i64 {
    stack.count(&format!("SELECT count(*) FROM {table} WHERE booking_id::text = '{id}'")).await
}

/// Sets `column` of `table`'s rows about booking `id` to `secs` seconds ago.
async fn back_date(stack: &Stack, table: &str, column: &str, id: &str, secs: f64) {
    let db = stack.db.client().await;
    let sql =
        format!("UPDATE {table} SET {column} = now() - $1::float8 * interval '1 second' WHERE booking_id::text = $2");
    let updated = db.execute(&sql, &[&secs, &id]).await.expect("back-date");
    assert!(updated > 0, "{table} has rows about {id} to back-date");
}

#[tokio::test]
async fn finished_emails_jobs_and_release_tasks_are_kept_for_their_retention_then_purged() {
    // In the background, so every booking goes through a reassign job.
    let options = Options { tables: vec![("t1", 4), ("t2", 4)], inline_assign: false, ..Default::default() };
    let stack = Stack::start(options).await;
    let mut client = stack.booking();
    let edited = create(&stack, 1, 2).await;
    let (cancelled, cancelled_earlier) = (create(&stack, 2, 2).await, create(&stack, 3, 2).await);
    settle(&stack, &[&edited, &cancelled, &cancelled_earlier]).await;
    let mut edit = edit_request(&edited);
    edit.party_size = Some(3);
    client.edit_booking(edit).await.expect("edit");
    for id in [&cancelled, &cancelled_earlier] {
        let cancel = pb::CancelBookingRequest { booking_id: id.clone(), ..Default::default() };
        client.cancel_booking(cancel).await.expect("cancel");
    }
    settle(&stack, &[&edited, &cancelled, &cancelled_earlier]).await;

    let settings = stack.booking_settings();
    let queues = [
        ("booking.outbox", "finished_at", settings.outbox_retention_s),
        ("booking.reassign_jobs", "closed_at", settings.reassign_job_retention_s),
        ("booking.release_tasks", "finished_at", settings.release_task_retention_s),
    ];
    // Per queue: the booking whose rows stay inside the retention; the others' go past it.
    let inside = [&edited, &edited, &cancelled];
    let mut before = Vec::new();
    for ((table, column, keep), kept) in queues.iter().zip(inside) {
        for id in [&edited, &cancelled, &cancelled_earlier] {
            let n = rows(&stack, table, id).await;
            if id == kept || *table != "booking.release_tasks" || id == &cancelled_earlier {
                assert!(n > 0, "{table} has rows about {id}");
                let offset = if id == kept { -HOUR } else { HOUR };
                back_date(&stack, table, column, id, ago(*keep, offset)).await;
            }
            before.push(n);
        }
    }
    let history = stack.count("SELECT count(*) FROM booking.history").await;

    let purged = purge_once(&stack.db.url, settings.retentions()).await;
    assert!(purged.iter().sum::<u64>() > 0, "something purged: {purged:?}");
    let mut counts = before.into_iter();
    for ((table, _, _), kept) in queues.iter().zip(inside) {
        for id in [&edited, &cancelled, &cancelled_earlier] {
            let (was, now) = (counts.next().unwrap(), rows(&stack, table, id).await);
            let expected = if id == kept { was } else { 0 };
            assert_eq!(now, expected, "{table} rows about {id}: {was} before the purge");
        }
    }
    // The history is the audit log: kept (no retention set), as are the bookings.
    assert_eq!(stack.count("SELECT count(*) FROM booking.history").await, history);
    assert_eq!(stack.count("SELECT count(*) FROM booking.bookings").await, 3);
    // Nothing left to purge on a second pass.
    assert!(purge_once(&stack.db.url, settings.retentions()).await.iter().all(|n| *n == 0));
}

#[tokio::test]
async fn a_history_retention_removes_an_ended_booking_with_its_rows_unless_work_is_pending() {
    let stack = Stack::start(Options { tables: vec![("t1", 4), ("t2", 4)], ..Default::default() }).await;
    let mut client = stack.booking();
    let (kept, gone, pending) = (create(&stack, 1, 2).await, create(&stack, 2, 2).await, create(&stack, 3, 2).await);
    settle(&stack, &[&kept, &gone, &pending]).await;
    let mut settings = stack.booking_settings();
    let keep = 90 * 86_400;
    settings.history_retention_s = Some(keep);

    // Each slot ends just inside or just past the retention (counted from its end).
    let db = stack.db.client().await;
    for (id, offset) in [(&kept, -HOUR), (&gone, HOUR), (&pending, HOUR)] {
        let moved = db
            .execute(
                "UPDATE booking.bookings SET start_time = now() - $1::float8 * interval '1 second' \
                   - duration_s * interval '1 second' WHERE id::text = $2",
                &[&ago(keep, offset), id],
            )
            .await
            .expect("move the slot");
        assert_eq!(moved, 1);
    }
    // An email still queued (due tomorrow) about one of them: work is pending, it stays.
    db.execute(
        "UPDATE booking.outbox SET state = 'QUEUED', finished_at = NULL, due_at = now() + interval '1 day' \
         WHERE booking_id::text = $1",
        &[&pending],
    )
    .await
    .expect("queue an email again");
    let tables = ["booking.history", "booking.outbox", "booking.changes"];
    let mut before = Vec::new();
    for id in [&kept, &gone, &pending] {
        for table in tables {
            let n = rows(&stack, table, id).await;
            assert!(n > 0, "{table} has rows about {id}");
            before.push(n);
        }
    }

    purge_once(&stack.db.url, settings.retentions()).await;
    let mut counts = before.into_iter();
    for id in [&kept, &gone, &pending] {
        for table in tables {
            let (was, now) = (counts.next().unwrap(), rows(&stack, table, id).await);
            assert_eq!(now, if id == &gone { 0 } else { was }, "{table} rows about {id}");
        }
    }
    let ids = |id: &String| format!("SELECT count(*) FROM booking.bookings WHERE id::text = '{id}'");
    assert_eq!(
        (stack.count(&ids(&kept)).await, stack.count(&ids(&gone)).await, stack.count(&ids(&pending)).await),
        (1, 0, 1)
    );
    let asked = client.get_booking(pb::GetBookingRequest { booking_id: gone.clone() }).await;
    assert_eq!(asked.expect_err("a removed booking").code(), Code::NotFound);
    // Without the retention nothing goes.
    let mut default = stack.booking_settings();
    default.history_retention_s = None;
    purge_once(&stack.db.url, default.retentions()).await;
    assert_eq!(stack.count(&ids(&kept)).await, 1);
}

#[tokio::test]
async fn reservations_assignments_and_finished_jobs_go_a_retention_after_their_slot_ended() {
    let options = Options { tables: vec![("t1", 4), ("t2", 4)], inline_assign: false, ..Default::default() };
    let stack = Stack::start(options).await;
    let (kept, gone, later) = (create(&stack, 1, 2).await, create(&stack, 2, 2).await, create(&stack, 3, 2).await);
    settle(&stack, &[&kept, &gone, &later]).await;
    for id in [&kept, &gone, &later] {
        assert!(rows(&stack, "assign.reservations", id).await > 0, "{id} holds a table");
        let finished = stack
            .count(&format!(
                "SELECT count(*) FROM assign.jobs WHERE booking_id::text = '{id}' AND finished_at IS NOT NULL"
            ))
            .await;
        assert_eq!(finished, 1, "{id}'s job finished");
    }
    let settings = assign_svc::Settings::for_database(&stack.db.url);
    let (slots, jobs) = (settings.assignment_retention_s as f64, settings.job_retention_s as f64);

    // One slot ended just inside the retention, one just past it (neither overlaps).
    let db = stack.db.client().await;
    for (id, from, to) in [(&kept, slots + HOUR / 2.0, slots - HOUR), (&gone, slots + 3.0 * HOUR, slots + HOUR)] {
        for table in ["assign.reservations", "assign.bookings"] {
            let sql = format!(
                "UPDATE {table} SET during = tstzrange(now() - $1::float8 * interval '1 second', \
                   now() - $2::float8 * interval '1 second') WHERE booking_id::text = $3"
            );
            assert!(db.execute(&sql, &[&from, &to, id]).await.expect("move the slot") > 0);
        }
    }
    // Jobs: one finished just inside its retention, one just past it (its slot is ahead).
    back_date(&stack, "assign.jobs", "finished_at", &kept, jobs - HOUR).await;
    back_date(&stack, "assign.jobs", "finished_at", &later, jobs + HOUR).await;

    purge_once(&stack.db.url, settings.retentions()).await;
    let expect = [
        ("assign.reservations", [true, false, true]),
        ("assign.bookings", [true, false, true]),
        ("assign.jobs", [true, false, false]),
    ];
    for (table, present) in expect {
        for (id, present) in [&kept, &gone, &later].into_iter().zip(present) {
            assert_eq!(rows(&stack, table, id).await > 0, present, "{table} rows about {id}");
        }
    }
}

#[tokio::test]
async fn final_deliveries_are_kept_for_their_retention_then_purged() {
    let stack = Stack::start(Options { tables: vec![("t1", 4), ("t2", 4)], ..Default::default() }).await;
    let (kept, gone) = (create(&stack, 1, 2).await, create(&stack, 2, 2).await);
    settle(&stack, &[&kept, &gone]).await;
    let settings = notify_svc::Settings::for_database(&stack.db.url);
    let keep = settings.delivery_retention_s;
    // Well past booking-svc's time to repeat a SendOnce: its outbox keeps finished rows
    // for less, and only a queued row is ever sent again.
    assert!(keep >= 4 * stack.booking_settings().outbox_retention_s);
    back_date(&stack, "notify.deliveries", "requested_at", &kept, ago(keep, -HOUR)).await;
    back_date(&stack, "notify.deliveries", "requested_at", &gone, ago(keep, HOUR)).await;
    let before = rows(&stack, "notify.deliveries", &kept).await;

    let purged = purge_once(&stack.db.url, settings.retentions()).await;
    assert_eq!(purged.len(), 1);
    assert!(purged[0] > 0);
    assert_eq!(rows(&stack, "notify.deliveries", &kept).await, before);
    assert_eq!(rows(&stack, "notify.deliveries", &gone).await, 0);
}

#[test]
fn every_retention_is_in_help_with_its_variable_and_default() {
    use clap::CommandFactory;
    let help = |mut command: clap::Command| command.render_long_help().to_string();
    let booking = help(booking_svc::Settings::command());
    for (variable, default) in [
        ("IDEMPOTENCY_RETENTION_S", Some("604800")),
        ("OUTBOX_RETENTION_S", Some("259200")),
        ("REASSIGN_JOB_RETENTION_S", Some("259200")),
        ("RELEASE_TASK_RETENTION_S", Some("259200")),
        ("HISTORY_RETENTION_S", None),
    ] {
        assert!(booking.contains(&format!("env: {variable}")), "booking-svc --help misses {variable}:\n{booking}");
        if let Some(default) = default {
            assert!(booking.contains(&format!("[default: {default}]")), "{variable}'s default");
        }
    }
    let assign = help(assign_svc::Settings::command());
    for variable in ["ASSIGNMENT_RETENTION_S", "JOB_RETENTION_S"] {
        assert!(assign.contains(&format!("env: {variable}")), "assign-svc --help misses {variable}:\n{assign}");
    }
    let notify = help(notify_svc::Settings::command());
    assert!(notify.contains("env: DELIVERY_RETENTION_S") && notify.contains("[default: 2592000]"), "{notify}");
    // And the README's settings tables list each of them.
    let readme = std::fs::read_to_string(support::workspace_root().join("README.md")).expect("README.md");
    for variable in [
        "IDEMPOTENCY_RETENTION_S",
        "OUTBOX_RETENTION_S",
        "REASSIGN_JOB_RETENTION_S",
        "RELEASE_TASK_RETENTION_S",
        "HISTORY_RETENTION_S",
        "ASSIGNMENT_RETENTION_S",
        "JOB_RETENTION_S",
        "DELIVERY_RETENTION_S",
    ] {
        assert!(readme.contains(&format!("`{variable}`")), "README.md misses {variable}");
    }
}
