//! The history checker (tests/common/history.rs) against one real node, and the checker's own
//! tests on hand-made histories.
//!
//! The node runs on the suite's store (`SPACECAST_TEST_STORE`: the embedded store, then CQL in
//! the suite's second pass). Concurrent REST and WebSocket senders write into several spaces
//! while WebSocket subscribers follow them; the node is killed with SIGKILL mid-run and started
//! again on its data dir, or frozen with SIGSTOP and thawed; then every acknowledged message must
//! be stored exactly once in one gapless order, and every subscriber, resuming with `since_seq`
//! across the fault, must have seen exactly that order. The same checker runs the three-node
//! cluster tests (tests/cluster.rs).

#[path = "common/cluster.rs"]
mod cluster;
mod common;
#[path = "common/history.rs"]
mod history;

use std::time::Duration;

use cluster::{Cluster, ClusterOpts};
use history::{History, Run, Workload, check, print_report, report, setup_spaces};

/// Acknowledged sends between faults: a few seconds of load on either store.
const ACKS: usize = 1_500;

/// Asserts that `h` breaks no guarantee, listing the first violations if it does.
fn assert_consistent(h: &History) {
    let v = check(h);
    assert!(
        v.is_empty(),
        "{} violations of the history's guarantees; the first ones:\n{:#?}",
        v.len(),
        &v[..v.len().min(20)]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_run_and_restart_loses_nothing_acknowledged() {
    let mut c = Cluster::start(ClusterOpts::single()).await;
    let w = Workload::default();
    let spaces = setup_spaces(&c.nodes[0].base, &w).await;
    let mut run = Run::start(&c.urls(), &spaces, &w);
    run.more_acks(ACKS, Duration::from_secs(60)).await;
    for round in 1..=2 {
        let killed = run.mark(&format!("kill -9 n0 ({round})"));
        c.kill9(0).await;
        run.failures_since(killed, 1, Duration::from_secs(30)).await;
        c.restart(0).await;
        run.mark("n0 restarted and ready");
        run.more_acks(ACKS, Duration::from_secs(60)).await;
    }

    let h = run.finish(&[0], Duration::from_secs(30)).await;
    let rep = report(&h);
    print_report("one node, kill -9 and restart", &h, &rep);
    assert_consistent(&h);
    // The kill really hit the run: sends failed, and every subscriber lost its connection and
    // resumed on the restarted node.
    assert!(rep.failed > 0, "sends failed while the node was down");
    assert!(
        h.views.iter().all(|v| v.nodes.len() >= 2),
        "every subscriber reconnected: {:?}",
        h.views.iter().map(|v| v.nodes.len()).collect::<Vec<_>>()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_node_thawed_keeps_every_guarantee() {
    let mut c = Cluster::start(ClusterOpts::single()).await;
    let w = Workload::default();
    let spaces = setup_spaces(&c.nodes[0].base, &w).await;
    let mut run = Run::start(&c.urls(), &spaces, &w);
    run.more_acks(ACKS, Duration::from_secs(60)).await;

    // Frozen with sends in flight until the clients give up on them (ambiguous outcomes: the
    // node may still commit them when it wakes up, at most once each).
    let paused = run.mark("SIGSTOP n0");
    c.pause(0);
    run.failures_since(paused, w.rest_senders, Duration::from_secs(30))
        .await;
    run.mark("SIGCONT n0");
    c.resume(0);
    run.more_acks(ACKS, Duration::from_secs(60)).await;

    let h = run.finish(&[0], Duration::from_secs(30)).await;
    let rep = report(&h);
    print_report("one node, SIGSTOP and SIGCONT", &h, &rep);
    assert_consistent(&h);
    assert!(
        rep.failures_by_kind.contains_key("timeout"),
        "sends to the frozen node timed out: {:?}",
        rep.failures_by_kind
    );
}

/// The checker on hand-made histories: each kind of broken guarantee is caught.
mod checker {
    use std::collections::HashMap;
    use std::time::Duration;

    use crate::history::{
        History, Listed, Outcome, Seen, SendRecord, Stored, SubscriberView, Via, Violation, check,
        report,
    };

    const S: &str = "space-a";

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn created(seq: u64, id: &str) -> Seen {
        Seen {
            space: S.into(),
            seq,
            event: "message_created".into(),
            message_id: Some(id.into()),
        }
    }

    fn send(k: u64, outcome: Outcome) -> SendRecord {
        SendRecord {
            space: S.into(),
            content: format!("c{k}"),
            conn: "rest-0".into(),
            order: k,
            node: 0,
            via: Via::Rest,
            start: ms(10 * k),
            end: ms(10 * k + 5),
            outcome,
        }
    }

    fn acked(k: u64, seq: u64) -> SendRecord {
        send(
            k,
            Outcome::Acked {
                id: format!("m{k}"),
                seq,
                content: format!("c{k}"),
            },
        )
    }

    fn failed() -> Outcome {
        Outcome::Failed {
            status: None,
            code: None,
            retry_after: false,
            detail: "connection lost".into(),
        }
    }

    fn listed(seq: u64, id: &str, content: &str) -> Listed {
        Listed {
            id: id.into(),
            seq,
            content: content.into(),
        }
    }

    /// Three acknowledged sends m1..m3 at seqs 1..3, stored, and one subscriber that saw them.
    fn clean() -> History {
        let log: Vec<Seen> = (1..=3).map(|k| created(k, &format!("m{k}"))).collect();
        History {
            spaces: vec![S.into()],
            sends: (1..=3).map(|k| acked(k, k)).collect(),
            views: vec![SubscriberView {
                name: "sub0".into(),
                events: log.clone(),
                nodes: vec![0],
            }],
            stored: vec![Stored {
                space: S.into(),
                node: 0,
                head: 3,
                log,
                listed: (1..=3)
                    .rev()
                    .map(|k| listed(k, &format!("m{k}"), &format!("c{k}")))
                    .collect(),
            }],
            targets: HashMap::from([(S.to_owned(), 3)]),
            faults: Vec::new(),
        }
    }

    /// Adds a message `id` with `content` at the next seq of the stored history (log and
    /// listing), as a node that committed it would.
    fn store(h: &mut History, id: &str, content: &str) {
        let r = &mut h.stored[0];
        r.head += 1;
        r.log.push(created(r.head, id));
        r.listed.insert(0, listed(r.head, id, content));
        h.targets.insert(S.into(), r.head);
    }

    fn violations(h: &History) -> Vec<Violation> {
        check(h)
    }

    #[test]
    fn a_consistent_history_passes() {
        assert_eq!(violations(&clean()), vec![]);
        // An ambiguous send stored once, and one not stored at all, are both fine.
        let mut h = clean();
        h.sends.push(send(4, failed()));
        h.sends.push(send(5, failed()));
        store(&mut h, "m4", "c4");
        h.views[0].events.push(created(4, "m4"));
        assert_eq!(violations(&h), vec![]);
    }

    #[test]
    fn a_duplicate_is_caught() {
        // A subscriber gets seq 2 twice.
        let mut h = clean();
        h.views[0].events.insert(2, created(2, "m2"));
        assert!(
            violations(&h).contains(&Violation::SubscriberDuplicate {
                subscriber: "sub0".into(),
                space: S.into(),
                seq: 2
            }),
            "{:?}",
            violations(&h)
        );

        // An ambiguous send (e.g. retried by a forwarding node) stored twice.
        let mut h = clean();
        h.sends.push(send(4, failed()));
        store(&mut h, "m4", "c4");
        store(&mut h, "m4-again", "c4");
        h.views[0]
            .events
            .extend(h.stored[0].log[3..].iter().cloned());
        assert!(violations(&h).iter().any(|v| matches!(
            v,
            Violation::StoredTwice { content, ids, .. } if content == "c4" && ids.len() == 2
        )));

        // The listing shows one message twice.
        let mut h = clean();
        let first = h.stored[0].listed[0].clone();
        h.stored[0].listed.insert(1, first);
        let v = violations(&h);
        assert!(
            v.iter()
                .any(|v| matches!(v, Violation::ListedTwice { id, .. } if id == "m3")),
            "{v:?}"
        );

        // One seq acknowledged for two messages (two owners at once).
        let mut h = clean();
        h.sends.push(acked(4, 3));
        let v = violations(&h);
        assert!(
            v.iter()
                .any(|v| matches!(v, Violation::SeqAckedTwice { seq: 3, .. })),
            "{v:?}"
        );
    }

    #[test]
    fn a_gap_is_caught() {
        // The log skips seq 2.
        let mut h = clean();
        h.stored[0].log.remove(1);
        let v = violations(&h);
        assert!(
            v.contains(&Violation::LogGap {
                space: S.into(),
                node: 0,
                expected: 2,
                found: Some(3)
            }),
            "{v:?}"
        );

        // The log ends before its head.
        let mut h = clean();
        h.stored[0].head = 4;
        assert!(violations(&h).contains(&Violation::LogGap {
            space: S.into(),
            node: 0,
            expected: 4,
            found: None
        }));

        // A subscriber misses seq 2.
        let mut h = clean();
        h.views[0].events.remove(1);
        assert!(violations(&h).contains(&Violation::SubscriberGap {
            subscriber: "sub0".into(),
            space: S.into(),
            expected: 2,
            got: 3
        }));

        // A subscriber stops short of the head.
        let mut h = clean();
        h.views[0].events.pop();
        assert!(violations(&h).contains(&Violation::SubscriberBehind {
            subscriber: "sub0".into(),
            space: S.into(),
            last: 2,
            head: 3
        }));
    }

    #[test]
    fn a_reorder_is_caught() {
        // A subscriber sees 1, 3, 2.
        let mut h = clean();
        h.views[0].events.swap(1, 2);
        assert!(violations(&h).contains(&Violation::SubscriberReorder {
            subscriber: "sub0".into(),
            space: S.into(),
            expected: 2,
            got: 3
        }));

        // The listing is out of seq order.
        let mut h = clean();
        h.stored[0].listed.swap(0, 1);
        assert!(
            violations(&h)
                .iter()
                .any(|v| matches!(v, Violation::ListedOrder { index: 1, .. }))
        );

        // m2 was sent after m1 was acknowledged, yet sequenced before it (and the connection's
        // order is broken too).
        let mut h = clean();
        for s in &mut h.sends {
            if let Outcome::Acked { seq, .. } = &mut s.outcome {
                *seq = match *seq {
                    1 => 2,
                    2 => 1,
                    x => x,
                };
            }
        }
        h.stored[0].log = vec![created(1, "m2"), created(2, "m1"), created(3, "m3")];
        h.stored[0].listed = vec![
            listed(3, "m3", "c3"),
            listed(2, "m1", "c1"),
            listed(1, "m2", "c2"),
        ];
        h.views[0].events = h.stored[0].log.clone();
        let v = violations(&h);
        assert!(
            v.contains(&Violation::RealTimeOrder {
                space: S.into(),
                earlier: ("m1".into(), 2),
                later: ("m2".into(), 1)
            }),
            "{v:?}"
        );
        assert!(
            v.iter()
                .any(|v| matches!(v, Violation::ConnectionOrder { conn, .. } if conn == "rest-0"))
        );
        // Nothing else is wrong with that history.
        assert_eq!(v.len(), 2, "{v:?}");
    }

    #[test]
    fn a_lost_ack_is_caught() {
        // m3 was acknowledged, but the store lost it (e.g. overwritten by a stale owner).
        let mut h = clean();
        h.stored[0].log.pop();
        h.stored[0].listed.remove(0);
        h.stored[0].head = 2;
        h.targets.insert(S.into(), 2);
        h.views[0].events.pop();
        let v = violations(&h);
        assert_eq!(
            v,
            vec![Violation::LostAck {
                space: S.into(),
                id: "m3".into(),
                seq: 3
            }]
        );

        // m3 acknowledged at seq 3 but stored at seq 4 (another message took its place).
        let mut h = clean();
        h.stored[0].log[2] = created(3, "intruder");
        h.stored[0].listed[0] = listed(3, "intruder", "c9");
        store(&mut h, "m3", "c3");
        let v = violations(&h);
        assert!(v.contains(&Violation::AckSeqMismatch {
            space: S.into(),
            id: "m3".into(),
            acked: 3,
            stored: 4
        }));
        assert!(
            v.iter()
                .any(|v| matches!(v, Violation::Phantom { id, .. } if id == "intruder"))
        );
    }

    #[test]
    fn what_history_does_not_have_is_caught() {
        // A rejected send that was stored anyway.
        let mut h = clean();
        h.sends.push(send(
            4,
            Outcome::Rejected {
                status: 403,
                code: "not_a_member".into(),
            },
        ));
        store(&mut h, "m4", "c4");
        h.views[0].events.push(created(4, "m4"));
        assert!(
            violations(&h)
                .iter()
                .any(|v| matches!(v, Violation::RejectedButStored { id, .. } if id == "m4"))
        );

        // A subscriber saw an event the log does not have at that seq (fan-out before the
        // write, then the write failed).
        let mut h = clean();
        h.views[0].events[2] = created(3, "ghost");
        assert!(violations(&h).contains(&Violation::SubscriberMismatch {
            subscriber: "sub0".into(),
            space: S.into(),
            seq: 3,
            saw: "message_created ghost".into(),
            stored: Some("message_created m3".into())
        }));

        // Two nodes serve different histories.
        let mut h = clean();
        let mut other = h.stored[0].clone();
        other.node = 1;
        other.log[1] = created(2, "m2-elsewhere");
        other.listed[1] = listed(2, "m2-elsewhere", "c2");
        h.stored.push(other);
        assert!(
            violations(&h)
                .iter()
                .any(|v| matches!(v, Violation::ReadsDisagree { nodes: (0, 1), .. }))
        );
    }

    #[test]
    fn the_report_measures_the_longest_outage() {
        let mut h = clean();
        // Acks end at 15, 25, 35 ms; then sends fail from 40 ms until an ack ends at 1040 ms.
        for (k, start) in [(4, 40), (5, 300), (6, 700)] {
            let mut s = send(k, failed());
            s.start = ms(start);
            s.end = ms(start + 100);
            h.sends.push(s);
        }
        let mut s = acked(7, 4);
        s.start = ms(1000);
        s.end = ms(1040);
        h.sends.push(s);
        let rep = report(&h);
        assert_eq!((rep.acked, rep.failed), (4, 3));
        let o = rep.longest().expect("an outage");
        assert_eq!(
            (o.from, o.to, o.failed_attempts),
            (ms(40), Some(ms(1040)), 3)
        );
        assert_eq!(o.length(rep.run_end), Duration::from_secs(1));
    }
}
