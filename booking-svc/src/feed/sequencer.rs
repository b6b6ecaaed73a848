//! The sequencer: decides how far the feed's positions are final, so it publishes them in order.
//!
//! Positions come from a sequence, and the transactions holding them commit in any order:
//! a reader that published every committed position above the last one it published would
//! skip a smaller position committing later. The sequencer publishes a position only once
//! every smaller one is final, committed and read, or never to be committed.
//!
//! A missing position below one already read is held by a transaction that took a
//! transaction id before taking the position (the writers write the booking's row first),
//! so before the snapshot in which the larger one was read. Each pass takes a fence (a
//! transaction id taken after its snapshot): once the oldest running transaction id
//! (`xmin`) reaches the fence, every transaction that could hold a missing position below
//! what the pass read has ended. The next pass, under a newer snapshot, then sees each of
//! them committed or never will. Pure: the reader feeds it what each pass saw.

use std::collections::VecDeque;

/// Most pending waits kept; beyond that the oldest are merged into newer ones (safe: a
/// newer wait covers more positions with a later fence, it only resolves later).
const MAX_WAITS: usize = 64;

/// The positions below `upto` are final once `xmin` reaches `fence`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Wait {
    upto: i64,
    fence: i64,
}

/// Where the feed stands: every position below [`Sequencer::next`] is published or will
/// never exist.
#[derive(Clone, Debug)]
pub struct Sequencer {
    next: i64,
    /// Every position below is final (at least `next`).
    final_below: i64,
    waits: VecDeque<Wait>,
}

impl Sequencer {
    /// A sequencer whose positions below `next` are all final (and need no publishing).
    pub fn new(next: i64) -> Self {
        Self { next, final_below: next, waits: VecDeque::new() }
    }

    /// The first position not yet published.
    pub fn next(&self) -> i64 {
        self.next
    }

    /// Whether a missing position holds back positions already read (the reader then
    /// passes again soon, even with no wake-up: the transactions it waits for may never
    /// announce their end).
    pub fn is_waiting(&self) -> bool {
        !self.waits.is_empty()
    }

    /// Takes what one pass saw: the committed positions from [`Sequencer::next`] on, in
    /// order (`read`; `complete` when the pass read every one there was, not a page of
    /// them), the snapshot's `xmin` and the pass's `fence`. Returns how many of `read`, from
    /// the first, are published now (in that order).
    pub fn advance(&mut self, read: &[i64], xmin: i64, fence: i64, complete: bool) -> usize {
        while let Some(wait) = self.waits.front().copied() {
            if wait.fence > xmin {
                break;
            }
            self.final_below = self.final_below.max(wait.upto);
            self.waits.pop_front();
        }
        let mut published = 0;
        for &position in read {
            if position < self.next {
                // Not read from `next` on: a caller's bug; publish nothing more of it.
                debug_assert!(false, "position {position} read below the next one, {}", self.next);
                break;
            }
            if position >= self.final_below {
                // Every missing position below `final_below` is gone for good.
                self.next = self.next.max(self.final_below);
                if position != self.next {
                    break;
                }
            }
            self.next = position + 1;
            published += 1;
        }
        if published == read.len() {
            if complete {
                self.next = self.next.max(self.final_below);
            }
        } else if let Some(&last) = read.last() {
            self.wait_for(Wait { upto: last + 1, fence });
        }
        self.final_below = self.final_below.max(self.next);
        while self.waits.front().is_some_and(|w| w.upto <= self.final_below) {
            self.waits.pop_front();
        }
        published
    }

    fn wait_for(&mut self, wait: Wait) {
        if self.waits.back().is_some_and(|w| w.upto >= wait.upto) {
            // An earlier wait (with an older fence) covers as much.
            return;
        }
        self.waits.push_back(wait);
        while self.waits.len() > MAX_WAITS {
            // Merge the oldest into the next one, which covers more and resolves later.
            self.waits.pop_front();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::{BTreeMap, BTreeSet};

    #[test]
    fn contiguous_positions_publish_at_once() {
        let mut s = Sequencer::new(1);
        assert_eq!(s.advance(&[1, 2, 3], 100, 100, true), 3);
        assert_eq!(s.next(), 4);
        assert!(!s.is_waiting());
    }

    #[test]
    fn a_gap_holds_later_positions_until_its_holders_ended() {
        let mut s = Sequencer::new(1);
        // 2 is held by a transaction still running: 1 goes, 3 waits.
        assert_eq!(s.advance(&[1, 3], 90, 100, true), 1);
        assert_eq!(s.next(), 2);
        assert!(s.is_waiting());
        // Transactions older than the fence still run: nothing more.
        assert_eq!(s.advance(&[3], 99, 101, true), 0);
        // 2 committed, and everything before the fence ended: 2 then 3.
        assert_eq!(s.advance(&[2, 3], 100, 102, true), 2);
        assert_eq!(s.next(), 4);
        assert!(!s.is_waiting());
    }

    #[test]
    fn a_position_never_committed_is_skipped_once_final() {
        let mut s = Sequencer::new(1);
        assert_eq!(s.advance(&[2, 3], 50, 60, true), 0);
        assert_eq!(s.next(), 1);
        // The holder of 1 rolled back: once xmin passed the fence, 1 is skipped.
        assert_eq!(s.advance(&[2, 3], 61, 62, true), 2);
        assert_eq!(s.next(), 4);
        // Trailing missing positions below a resolved wait are skipped too.
        let mut s = Sequencer::new(1);
        assert_eq!(s.advance(&[5], 1, 10, true), 0);
        assert_eq!(s.advance(&[5], 10, 11, true), 1);
        assert_eq!(s.next(), 6);
        // Positions that were never written at all (a rolled-back tail) need no wait.
        let mut s = Sequencer::new(1);
        assert_eq!(s.advance(&[], 1, 10, true), 0);
        assert_eq!((s.next(), s.is_waiting()), (1, false));
    }

    #[test]
    fn a_page_publishes_without_jumping_past_what_it_did_not_read() {
        let mut s = Sequencer::new(1);
        assert_eq!(s.advance(&[2, 9], 1, 10, true), 0);
        // The wait resolved, but the page stops at 4: 5..=9 may still hold committed rows.
        assert_eq!(s.advance(&[2, 3, 4], 20, 21, false), 3);
        assert_eq!(s.next(), 5);
        assert_eq!(s.advance(&[6, 9], 20, 22, true), 2);
        assert_eq!(s.next(), 10);
    }

    /// One writing transaction of the model: it takes a transaction id, then positions,
    /// then commits or rolls back.
    #[derive(Clone, Debug)]
    struct Txn {
        xid: i64,
        positions: Vec<i64>,
        ended: bool,
        committed: bool,
    }

    /// PostgreSQL's visibility as far as the sequencer relies on it: transaction ids
    /// handed out in order; a snapshot's xmax is one past the latest ended id, its xmin the
    /// oldest running id below xmax (a running id above xmax is not counted: that is why
    /// the fence is needed).
    #[derive(Default)]
    struct Model {
        next_xid: i64,
        next_position: i64,
        latest_ended: i64,
        txns: Vec<Txn>,
        committed: BTreeSet<i64>,
    }

    impl Model {
        fn xid(&mut self) -> i64 {
            self.next_xid += 1;
            self.next_xid
        }

        fn end(&mut self, xid: i64) {
            self.latest_ended = self.latest_ended.max(xid);
        }

        fn xmin(&self) -> i64 {
            let xmax = self.latest_ended + 1;
            self.txns.iter().filter(|t| !t.ended && t.xid < xmax).map(|t| t.xid).min().unwrap_or(xmax)
        }

        /// One reader pass: the snapshot (committed positions from `from`, at most `limit`),
        /// its xmin, then a fence id taken and ended.
        fn pass(&mut self, from: i64, limit: usize) -> (Vec<i64>, i64, i64, bool) {
            let read: Vec<i64> = self.committed.range(from..).take(limit + 1).copied().collect();
            let complete = read.len() <= limit;
            let read = read.into_iter().take(limit).collect();
            let xmin = self.xmin();
            let fence = self.xid();
            self.end(fence);
            (read, xmin, fence, complete)
        }
    }

    #[derive(Clone, Debug)]
    enum Step {
        Begin,
        Take(usize),
        End(usize, bool),
        Pass(usize),
    }

    fn steps() -> impl Strategy<Value = Vec<Step>> {
        prop::collection::vec(
            prop_oneof![
                3 => Just(Step::Begin),
                4 => any::<usize>().prop_map(Step::Take),
                3 => (any::<usize>(), prop::bool::weighted(0.85)).prop_map(|(t, c)| Step::End(t, c)),
                3 => (1usize..6).prop_map(Step::Pass),
            ],
            1..120,
        )
    }

    proptest! {
        /// Whatever the interleaving of writers and passes, the feed publishes every committed
        /// position exactly once, in increasing order, never one that is not committed, and
        /// once all writers ended, everything.
        #[test]
        fn publishes_every_committed_position_once_in_order(steps in steps(), start in 0i64..3) {
            let mut model = Model { next_position: start, latest_ended: 0, ..Default::default() };
            let mut s = Sequencer::new(start + 1);
            let mut published: Vec<i64> = Vec::new();
            let run_pass = |model: &mut Model, s: &mut Sequencer, limit: usize, published: &mut Vec<i64>| {
                let (read, xmin, fence, complete) = model.pass(s.next(), limit);
                let n = s.advance(&read, xmin, fence, complete);
                published.extend(read[..n].iter().copied());
            };
            for step in steps {
                match step {
                    Step::Begin => {
                        let xid = model.xid();
                        model.txns.push(Txn { xid, positions: vec![], ended: false, committed: false });
                    }
                    Step::Take(t) => {
                        let running: Vec<usize> = (0..model.txns.len()).filter(|&i| !model.txns[i].ended).collect();
                        if let Some(&i) = running.get(t % running.len().max(1)) {
                            model.next_position += 1;
                            let position = model.next_position;
                            model.txns[i].positions.push(position);
                        }
                    }
                    Step::End(t, commit) => {
                        let running: Vec<usize> = (0..model.txns.len()).filter(|&i| !model.txns[i].ended).collect();
                        if let Some(&i) = running.get(t % running.len().max(1)) {
                            model.txns[i].ended = true;
                            model.txns[i].committed = commit;
                            if commit {
                                let positions = model.txns[i].positions.clone();
                                model.committed.extend(positions);
                            }
                            let xid = model.txns[i].xid;
                            model.end(xid);
                        }
                    }
                    Step::Pass(limit) => run_pass(&mut model, &mut s, limit, &mut published),
                }
                // Never a position that is not committed; strictly increasing.
                prop_assert!(published.iter().all(|p| model.committed.contains(p)));
                prop_assert!(published.windows(2).all(|w| w[0] < w[1]), "{published:?}");
            }
            // Every writer ends; a few passes publish the rest.
            for t in model.txns.iter_mut().filter(|t| !t.ended) {
                t.ended = true;
                t.committed = true;
                model.committed.extend(t.positions.iter().copied());
            }
            let last = model.next_xid;
            model.end(last);
            for _ in 0..(model.committed.len() + 3) {
                run_pass(&mut model, &mut s, 4, &mut published);
            }
            let expected: Vec<i64> = model.committed.iter().copied().collect();
            prop_assert_eq!(&published, &expected);
            prop_assert!(!s.is_waiting());
            // Past the last committed position; a rolled-back tail is skipped only once a
            // later position shows it was handed out.
            prop_assert!(s.next() > expected.last().copied().unwrap_or(start));
            prop_assert!(s.next() <= model.next_position + 1);
        }

        /// What was published before a resume is exactly a prefix of what is published
        /// after it: a new sequencer started after the last published position continues
        /// with no gap and no repeat (the cursor is that position).
        #[test]
        fn resuming_after_a_published_position_continues_the_same_sequence(cut in 0usize..40, positions in 1i64..60) {
            // Every seventh position was rolled back; all writers have ended.
            let committed: BTreeMap<i64, ()> = (1..=positions).filter(|p| p % 7 != 3).map(|p| (p, ())).collect();
            let all: Vec<i64> = committed.keys().copied().collect();
            let publish_all = |s: &mut Sequencer, read: &[i64]| {
                // The first pass finds the gaps, the next (past its fence) skips them.
                let n = s.advance(read, 1_000, 1_001, true);
                n + s.advance(&read[n..], 2_000, 2_001, true)
            };
            let mut s = Sequencer::new(1);
            prop_assert_eq!(publish_all(&mut s, &all), all.len());
            let cut = cut.min(all.len());
            let resume_after = if cut == 0 { 0 } else { all[cut - 1] };
            let mut resumed = Sequencer::new(resume_after + 1);
            let rest: Vec<i64> = all.iter().copied().filter(|&p| p > resume_after).collect();
            prop_assert_eq!(publish_all(&mut resumed, &rest), rest.len());
            prop_assert_eq!(resumed.next(), s.next());
            let mut joined: Vec<i64> = all[..cut].to_vec();
            joined.extend(rest);
            prop_assert_eq!(joined, all);
        }
    }
}
