//! The coordinator against in-memory I/O: what it writes, the markers it asks for, and a
//! rebuild from what it wrote.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use bytes::Bytes;
use futures::FutureExt;
use futures_lite::future::block_on;

use super::*;

#[derive(Default)]
struct Fake {
    written: RefCell<Vec<(i32, Bytes)>>,
    markers: RefCell<Vec<MarkerWrite>>,
    /// Partitions that refuse markers for now.
    refuse: RefCell<Vec<(String, i32)>>,
    next_id: Cell<i64>,
    /// The coordinator's time, moved by the tests.
    clock: Rc<crate::io::ManualClock>,
}

fn config() -> TxnConfig {
    TxnConfig {
        partitions: 50,
        max_timeout_ms: 60_000,
        id_expiration_ms: 604_800_000,
        abort_check_ms: 0,
        expire_check_ms: 3_600_000,
    }
}

fn coordinator(fake: &Rc<Fake>) -> Coordinator {
    let (a, b, c) = (fake.clone(), fake.clone(), fake.clone());
    let io = Io {
        persist: Rc::new(move |partition, batch| {
            a.written.borrow_mut().push((partition, batch));
            async { Ok(()) }.boxed_local()
        }),
        new_producer_id: Rc::new(move || {
            let id = b.next_id.get();
            b.next_id.set(id + 1);
            async move { Ok(1000 + id) }.boxed_local()
        }),
        write_markers: Rc::new(move |markers: MarkerWrite| {
            let refused: Vec<(String, i32)> = markers
                .partitions
                .iter()
                .filter(|p| c.refuse.borrow().contains(p))
                .cloned()
                .collect();
            c.markers.borrow_mut().push(markers);
            async move { refused }.boxed_local()
        }),
        clock: fake.clock.clone(),
    };
    Coordinator::new(config(), io)
}

/// The states written, in order, decoded.
fn states(fake: &Fake) -> Vec<(String, Option<TxnRecord>)> {
    fake.written
        .borrow()
        .iter()
        .map(|(_, bytes)| {
            let view = crate::model::BatchView::validate(bytes).unwrap().0;
            let record = crate::model::records::decode(&view, usize::MAX)
                .unwrap()
                .remove(0);
            (
                records::decode_key(record.key.unwrap()).unwrap().unwrap(),
                record.value.map(|v| TxnRecord::decode(v).unwrap()),
            )
        })
        .collect()
}

fn replayed(fake: &Rc<Fake>) -> Coordinator {
    let c = coordinator(fake);
    c.load(
        states(fake)
            .into_iter()
            .map(|(id, r)| (records::encode_key(&id), r.map(|r| TxnRecord::encode(&r)))),
    );
    c
}

fn tp(topic: &str, partition: i32) -> (String, i32) {
    (topic.to_string(), partition)
}

#[test]
fn a_commit_writes_its_decision_then_markers_then_completion() {
    block_on(async {
        let fake = Rc::new(Fake::default());
        let c = coordinator(&fake);
        assert_eq!(
            c.init_producer_id("t", 1_000, None).await,
            Err(TxnError::Loading)
        );
        c.load(Vec::new());
        assert_eq!(
            c.init_producer_id("t", 120_000, None).await,
            Err(TxnError::InvalidTimeout)
        );
        let (pid, epoch) = c.init_producer_id("t", 10_000, None).await.unwrap();
        assert_eq!((pid, epoch), (1000, 0));
        c.add_partitions("t", pid, 0, vec![tp("a", 1)])
            .await
            .unwrap();
        c.add_partitions("t", pid, 0, vec![tp("a", 0), tp("a", 1)])
            .await
            .unwrap();
        assert_eq!(
            c.verify_partitions("t", pid, 0, &[tp("a", 0), tp("b", 0)]),
            Ok(vec![true, false])
        );
        assert_eq!(
            c.add_partitions("t", pid + 1, 0, vec![tp("a", 0)]).await,
            Err(TxnError::UnknownProducerId)
        );
        c.end_txn("t", pid, 0, true).await.unwrap();
        {
            let markers = fake.markers.borrow();
            assert_eq!(markers.len(), 1);
            assert!(markers[0].commit);
            assert_eq!(markers[0].partitions, vec![tp("a", 0), tp("a", 1)]);
        }
        let written: Vec<TxnState> = states(&fake)
            .into_iter()
            .map(|(_, r)| r.unwrap().state)
            .collect();
        assert_eq!(
            written,
            vec![
                TxnState::Empty,
                TxnState::Ongoing,
                TxnState::Ongoing,
                TxnState::PrepareCommit,
                TxnState::CompleteCommit
            ]
        );
        // A retried EndTxn is answered; the other outcome is not.
        assert_eq!(c.end_txn("t", pid, 0, true).await, Ok(()));
        assert_eq!(
            c.end_txn("t", pid, 0, false).await,
            Err(TxnError::InvalidState)
        );
        let described = replayed(&fake).describe("t").unwrap();
        assert_eq!(described.state, TxnState::CompleteCommit);
        assert_eq!(described.producer_id, pid);
        assert_eq!(c.list(&[TxnState::CompleteCommit], &[], -1).len(), 1);
        assert!(c.list(&[TxnState::Ongoing], &[], -1).is_empty());
    });
}

#[test]
fn a_second_producer_fences_the_first_and_aborts_its_transaction() {
    block_on(async {
        let fake = Rc::new(Fake::default());
        let c = coordinator(&fake);
        c.load(Vec::new());
        let (pid, e0) = c.init_producer_id("t", 10_000, None).await.unwrap();
        c.add_partitions("t", pid, e0, vec![tp("a", 0)])
            .await
            .unwrap();
        let (pid2, e2) = c.init_producer_id("t", 10_000, None).await.unwrap();
        assert_eq!(pid2, pid);
        assert_eq!(e2, e0 + 2, "one bump to abort, one for the new producer");
        {
            let markers = fake.markers.borrow();
            assert!(!markers[0].commit);
            assert_eq!(markers[0].producer_epoch, e0 + 1);
        }
        for result in [
            c.add_partitions("t", pid, e0, vec![tp("a", 0)]).await,
            c.end_txn("t", pid, e0, true).await,
            c.init_producer_id("t", 10_000, Some((pid, e0)))
                .await
                .map(|_| ()),
        ] {
            assert_eq!(result, Err(TxnError::Fenced));
        }
        // KIP-360: the new producer retrying its own bump gets the same epoch back.
        assert_eq!(
            c.init_producer_id("t", 10_000, Some((pid, e2 - 1))).await,
            Ok((pid, e2))
        );
    });
}

#[test]
fn a_transaction_past_its_timeout_is_aborted_and_its_epoch_fenced() {
    block_on(async {
        let fake = Rc::new(Fake::default());
        let c = coordinator(&fake);
        c.load(Vec::new());
        let (pid, e0) = c.init_producer_id("t", 1, None).await.unwrap();
        c.add_partitions("t", pid, e0, vec![tp("a", 0)])
            .await
            .unwrap();
        fake.clock.advance(std::time::Duration::from_millis(5));
        c.tick(fake.clock.now()).await;
        assert_eq!(c.describe("t").unwrap().state, TxnState::CompleteAbort);
        assert_eq!(fake.markers.borrow()[0].producer_epoch, e0 + 1);
        assert_eq!(c.end_txn("t", pid, e0, true).await, Err(TxnError::Fenced));
        // The fenced producer may recover with its last epoch (KIP-360).
        assert_eq!(
            c.init_producer_id("t", 1_000, Some((pid, e0))).await,
            Ok((pid, e0 + 2))
        );
    });
}

#[test]
fn markers_that_fail_are_retried_and_the_next_transaction_waits() {
    block_on(async {
        let fake = Rc::new(Fake::default());
        let c = coordinator(&fake);
        c.load(Vec::new());
        let (pid, e) = c.init_producer_id("t", 10_000, None).await.unwrap();
        c.add_partitions("t", pid, e, vec![tp("a", 0), tp("b", 0)])
            .await
            .unwrap();
        fake.refuse.borrow_mut().push(tp("b", 0));
        assert_eq!(c.end_txn("t", pid, e, true).await, Ok(()), "decided");
        assert_eq!(c.describe("t").unwrap().state, TxnState::PrepareCommit);
        assert_eq!(
            c.add_partitions("t", pid, e, vec![tp("a", 0)]).await,
            Err(TxnError::Concurrent)
        );
        // A restart now finishes the decision too.
        let after_restart = replayed(&fake);
        fake.refuse.borrow_mut().clear();
        c.tick(fake.clock.now()).await;
        assert_eq!(c.describe("t").unwrap().state, TxnState::CompleteCommit);
        {
            let markers = fake.markers.borrow();
            assert_eq!(markers.last().unwrap().partitions, vec![tp("b", 0)]);
        }
        after_restart.tick(fake.clock.now()).await;
        assert_eq!(
            after_restart.describe("t").unwrap().state,
            TxnState::CompleteCommit
        );
        c.add_partitions("t", pid, e, vec![tp("a", 0)])
            .await
            .unwrap();
    });
}
