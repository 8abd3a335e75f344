//! The group commit of targeted reads, shared by the backends.
//!
//! A read opens (or joins) the open group's transaction, does its part and
//! appends its leaf in it, then waits here until the group has committed:
//! it returns only once its leaf is durable. The first waiter commits the
//! group for everyone in it, after letting in the readers already at the
//! door (waiting for the lock), so concurrent reads share one commit. What
//! a commit is, is the backend's: [`GroupCommit::wait`] takes it as a
//! closure.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};

use crate::StoreError;

/// How long a long operation that runs alone lets the readers at the door
/// go first, at most ([`GroupCommit::lock_after_joiners`]).
pub const JOINERS_FIRST: std::time::Duration = std::time::Duration::from_millis(2);

/// What the wait reads and sets in a backend's group state.
pub trait GroupState {
    /// Every group up to this id has committed or failed.
    fn settled(&self) -> u64;
    /// Why group `group` failed (rolled back), if it did.
    fn failure(&self, group: u64) -> Option<&str>;
    /// The group a member is committing, if one is.
    fn committing(&mut self) -> &mut Option<u64>;
    /// Whether a member may join now: not while the backend lent its
    /// connection to an operation that runs alone (see
    /// [`GroupCommit::lock_available`]). By default always.
    fn available(&self) -> bool {
        true
    }
    /// Whether the connection is lent to the calling thread: it would wait
    /// for itself. By default never.
    fn lent_here(&self) -> bool {
        false
    }
}

/// A backend's group state behind its lock, with the signal of settled
/// groups and the count of readers at the door.
pub struct GroupCommit<G> {
    state: Mutex<G>,
    /// Signalled whenever a group commits or fails, or the backend's
    /// connection comes back.
    settled: Condvar,
    /// Readers waiting for the lock to join the open group.
    joining: AtomicUsize,
}

impl<G: GroupState> GroupCommit<G> {
    pub fn new(state: G) -> GroupCommit<G> {
        GroupCommit {
            state: Mutex::new(state),
            settled: Condvar::new(),
            joining: AtomicUsize::new(0),
        }
    }

    /// The state, locked. A panic while it was held cannot have left a
    /// half group (the backend rolls the reader's part back or fails the
    /// group first), so a poisoned lock is recovered.
    pub fn lock(&self) -> MutexGuard<'_, G> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The state, locked and available (see [`GroupState::available`]),
    /// for an operation that runs alone: the backend commits the open
    /// group, then lends its connection out and lets the lock go, so the
    /// members of the group it committed return at once instead of waiting
    /// for the lock until the operation ends.
    pub fn lock_available(&self) -> MutexGuard<'_, G> {
        self.wait_available(self.lock())
    }

    /// [`GroupCommit::lock_available`] for a long operation that runs again
    /// and again (a bulk load's batches, a sweep's): the readers at the
    /// door join the open group first. The lock is not fair, and a writer
    /// that takes it again as soon as it let it go would keep them waiting
    /// batch after batch (each tens of milliseconds). The wait for joiners
    /// to come in is bounded by [`JOINERS_FIRST`] (a joiner descheduled at
    /// the door waits for this operation); those that came in are waited
    /// for until their group has committed.
    pub fn lock_after_joiners(&self) -> MutexGuard<'_, G> {
        let mut g = self.lock_available();
        let deadline = std::time::Instant::now() + JOINERS_FIRST;
        while self.joining.load(Ordering::SeqCst) > 0 {
            let Some(left) = deadline.checked_duration_since(std::time::Instant::now()) else {
                break;
            };
            // The lock let go meanwhile: the joiners take it, do their
            // part and commit their group, which wakes this wait.
            g = self
                .settled
                .wait_timeout(g, left)
                .map_or_else(|e| e.into_inner().0, |(g, _)| g);
            g = self.wait_available(g);
        }
        g
    }

    /// `g`, once the backend's connection is back (see
    /// [`GroupState::available`]).
    /// A thread that holds the connection and asks for it again (a
    /// store call made inside an operation that runs alone) would wait for
    /// ever: it panics instead, loudly.
    fn wait_available<'a>(&'a self, mut g: MutexGuard<'a, G>) -> MutexGuard<'a, G> {
        while !g.available() {
            assert!(
                !g.lent_here(),
                "a thread asked for the store's connection while it holds it"
            );
            g = self.settled.wait(g).unwrap_or_else(|e| e.into_inner());
        }
        g
    }

    /// The state, locked for a reader that will join the open group, once
    /// the backend's connection is available: while it waits it is counted
    /// at the door, and a committer, or a long operation about to run
    /// alone, lets it in first.
    pub fn join(&self) -> MutexGuard<'_, G> {
        /// Counts a joiner at the door until it leaves, even by a panic.
        struct AtDoor<'a>(&'a AtomicUsize);
        impl Drop for AtDoor<'_> {
            fn drop(&mut self) {
                self.0.fetch_sub(1, Ordering::SeqCst);
            }
        }
        self.joining.fetch_add(1, Ordering::SeqCst);
        let _door = AtDoor(&self.joining);
        self.wait_available(self.lock())
    }

    /// Whether a reader would wait for the group now: its lock is held (a
    /// member at work, or a group committing) or readers wait at the door.
    /// A glance, not a promise: it may have changed when it answers.
    pub fn busy(&self) -> bool {
        let busy = |mut g: MutexGuard<'_, G>| g.committing().is_some() || !g.available();
        self.joining.load(Ordering::SeqCst) > 0
            || match self.state.try_lock() {
                Ok(g) => busy(g),
                // Recovered as `lock` recovers it.
                Err(std::sync::TryLockError::Poisoned(e)) => busy(e.into_inner()),
                Err(std::sync::TryLockError::WouldBlock) => true,
            }
    }

    /// Wakes the waiters: a group settled (committed or failed), or the
    /// backend's connection came back.
    pub fn notify(&self) {
        self.settled.notify_all();
    }

    /// Waits until group `my` has settled, committing it with `commit`
    /// when no other reader is; `Err(NotCommitted)` with the cause when the
    /// group failed.
    pub fn wait<'a>(
        &'a self,
        mut g: MutexGuard<'a, G>,
        my: u64,
        mut commit: impl FnMut(&mut G),
    ) -> Result<(), StoreError> {
        loop {
            if g.settled() >= my {
                return match g.failure(my) {
                    Some(why) => Err(StoreError::NotCommitted(why.to_string())),
                    None => Ok(()),
                };
            }
            if g.committing().is_some() {
                g = self.settled.wait(g).unwrap_or_else(|e| e.into_inner());
                continue;
            }
            // Commit this group; first let readers at the door join it.
            *g.committing() = Some(my);
            // Bounded: a joiner descheduled at the door joins the next group.
            let mut rounds = 0;
            while self.joining.load(Ordering::SeqCst) > 0 && g.settled() < my && rounds < 64 {
                drop(g);
                std::thread::yield_now();
                rounds += 1;
                g = self.lock();
            }
            if g.settled() < my {
                commit(&mut g);
            }
            *g.committing() = None;
            self.notify();
        }
    }
}
