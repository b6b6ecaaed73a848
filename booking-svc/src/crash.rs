//! The crash test hook, compiled only with the `crash-hook` feature.
//!
//! With the feature, `CRASH_AT=<point>` makes the process abort (like a SIGKILL, no
//! cleanup) the first time the flow reaches that point, so end-to-end tests can kill
//! booking-svc at each step and check that nothing is lost or sent twice after a restart.
//! It must never change behaviour when unset. Without the feature (every build but the
//! test harness's) there is no such setting, and reaching a point compiles to nothing.

/// A point of the flow where a test may crash the process.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "crash-hook", derive(clap::ValueEnum), value(rename_all = "snake_case"))]
pub enum CrashPoint {
    /// Create committed its apply transaction; no inline call yet.
    CreateAfterApply,
    /// Edit committed its apply transaction; no inline call yet.
    EditAfterApply,
    /// The inline Assign answered; its result is not recorded yet.
    EditAfterInlineAssign,
    /// The edit's result is recorded; the caller has no answer yet.
    EditAfterRecord,
    /// Cancel committed; the stream has not been told yet.
    CancelAfterApply,
    /// The outbox claimed an email; SendOnce not called yet.
    OutboxBeforeSend,
    /// SendOnce answered; the outbox row is not marked done yet.
    OutboxAfterSend,
    /// An ASSIGNED update arrived on the Reassign stream; not recorded yet.
    ReassignAfterUpdate,
    /// A background confirmation committed.
    ReassignAfterConfirm,
    /// Release answered; the release task is not marked done yet.
    ReleaseAfterCall,
}

/// Aborts the process at the configured point, if any (never without the feature).
#[derive(Clone, Copy, Debug, Default)]
pub struct CrashHook {
    #[cfg(feature = "crash-hook")]
    point: Option<CrashPoint>,
}

impl CrashHook {
    /// A hook for `point` (`None`: never crash).
    #[cfg(feature = "crash-hook")]
    pub fn new(point: Option<CrashPoint>) -> Self {
        Self { point }
    }

    /// Aborts when `point` is the configured one.
    #[cfg(feature = "crash-hook")]
    pub fn reached(&self, point: CrashPoint) {
        if self.point == Some(point) {
            eprintln!("CRASH_AT={point:?}: aborting (test hook)");
            std::process::abort();
        }
    }

    /// Does nothing: this build has no crash hook.
    #[cfg(not(feature = "crash-hook"))]
    #[inline(always)]
    pub fn reached(&self, _point: CrashPoint) {}
}
