//! Background threads: work that can wait gives the cores to the work
//! callers wait on.

/// How much lower than the process a background thread runs (`nice`).
const BACKGROUND_NICE: i32 = 10;

/// Lowers the calling thread's CPU priority by [`BACKGROUND_NICE`]: for
/// threads whose work can wait (the store's checkpointer, which copies the
/// WAL into the database file; a collection's workers, which check and seal
/// batches ahead of the writer), so that when every thread wants a core the
/// ones a caller waits on (the writer committing batches, readers and
/// requests) get it first. On a machine with cores to spare it changes
/// nothing. Linux keeps a priority per thread, and `setpriority` of "this
/// process" there means the calling thread: no other thread changes. A
/// thread may always lower its own priority, so this needs no privilege;
/// it cannot raise it back without one, so it is only for threads that do
/// nothing else. Where it fails (another system, a sandbox that forbids
/// it), the thread keeps its priority: this is a preference, never a
/// reason to fail.
pub fn background_thread() {
    #[cfg(target_os = "linux")]
    {
        use rustix::process::{getpriority_process, setpriority_process};
        if let Ok(now) = getpriority_process(None) {
            let _ = setpriority_process(None, (now + BACKGROUND_NICE).min(19));
        }
    }
}

#[cfg(all(test, target_os = "linux"))]
#[allow(clippy::unwrap_used)]
mod tests {
    use rustix::process::getpriority_process;

    /// The calling thread runs lower; another thread of the process (here
    /// the test's own) does not.
    #[test]
    fn a_background_thread_runs_lower_and_only_it() {
        let before = getpriority_process(None).unwrap();
        let inside = std::thread::spawn(move || {
            let start = getpriority_process(None).unwrap();
            super::background_thread();
            (start, getpriority_process(None).unwrap())
        })
        .join()
        .unwrap();
        assert_eq!(inside.0, before);
        assert_eq!(inside.1, (before + super::BACKGROUND_NICE).min(19));
        assert!(inside.1 > before || before == 19);
        assert_eq!(getpriority_process(None).unwrap(), before);
    }
}
