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

/// What the wait reads and sets in a backend's group state.
pub trait GroupState {
    /// Every group up to this id has committed or failed.
    fn settled(&self) -> u64;
    /// Why group `group` failed (rolled back), if it did.
    fn failure(&self, group: u64) -> Option<&str>;
    /// The group a member is committing, if one is.
    fn committing(&mut self) -> &mut Option<u64>;
}

/// A backend's group state behind its lock, with the signal of settled
/// groups and the count of readers at the door.
pub struct GroupCommit<G> {
    state: Mutex<G>,
    /// Signalled whenever a group commits or fails.
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

    /// The state, locked for a reader that will join the open group: while
    /// it waits for the lock it is counted at the door, and a committer
    /// lets it in first.
    pub fn join(&self) -> MutexGuard<'_, G> {
        self.joining.fetch_add(1, Ordering::SeqCst);
        let g = self.lock();
        self.joining.fetch_sub(1, Ordering::SeqCst);
        g
    }

    /// Whether a reader would wait for the group now: its lock is held (a
    /// member at work, or a group committing) or readers wait at the door.
    /// A glance, not a promise: it may have changed when it answers.
    pub fn busy(&self) -> bool {
        self.joining.load(Ordering::SeqCst) > 0
            || match self.state.try_lock() {
                Ok(mut g) => g.committing().is_some(),
                // Recovered as `lock` recovers it.
                Err(std::sync::TryLockError::Poisoned(e)) => e.into_inner().committing().is_some(),
                Err(std::sync::TryLockError::WouldBlock) => true,
            }
    }

    /// Wakes the waiters: a group settled (committed or failed).
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
