//! Writing to stdout and stderr without panicking.
//!
//! `println!` panics when stdout is a pipe whose reader has gone
//! (`postvault policy table | head`). Here a failed write is an error like
//! any other, and a closed pipe ends the command normally (exit 0, nothing
//! more printed): the reader asked for no more. The crate denies
//! `clippy::print_stdout` and `clippy::print_stderr`, so every write goes
//! through these macros.

use std::io::Write;

/// Writes to stdout; the caller propagates the error with `?`.
pub fn stdout(args: std::fmt::Arguments<'_>) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_fmt(args)?;
    out.flush()
}

/// Writes a message to stderr. A closed stderr loses the message, never
/// the command.
pub fn stderr(args: std::fmt::Arguments<'_>) {
    let _ = std::io::stderr().lock().write_fmt(args);
}

/// Whether `e` is, or was caused by, a write to a closed pipe.
pub fn broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .map(std::io::Error::kind)
            .or_else(|| {
                c.downcast_ref::<serde_json::Error>()
                    .and_then(serde_json::Error::io_error_kind)
            })
            == Some(std::io::ErrorKind::BrokenPipe)
    })
}

/// `print!` that returns the write error to the caller (with `?`).
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::output::stdout(format_args!($($arg)*))?
    };
}

/// `println!` that returns the write error to the caller (with `?`).
macro_rules! outln {
    () => {
        $crate::output::stdout(format_args!("\n"))?
    };
    ($($arg:tt)*) => {
        $crate::output::stdout(format_args!("{}\n", format_args!($($arg)*)))?
    };
}

/// `eprintln!` that never panics.
macro_rules! errln {
    () => {
        $crate::output::stderr(format_args!("\n"))
    };
    ($($arg:tt)*) => {
        $crate::output::stderr(format_args!("{}\n", format_args!($($arg)*)))
    };
}
