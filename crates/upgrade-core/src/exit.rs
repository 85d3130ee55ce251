//! The toolkit's exit codes, in one place: every command, report and flow outcome maps to
//! these.
//!
//! | code | meaning |
//! |---|---|
//! | [`OK`] 0 | done; no blockers or warnings |
//! | [`FAILED`] 1 | the operation failed; everything it applied was rolled back (or nothing was changed) |
//! | [`INVALID`] 2 | bad input: flags, files, tools or cluster context; nothing was changed |
//! | [`WARNINGS`] 3 | done, with warnings |
//! | [`BLOCKED`] 4 | blockers found; nothing was changed |
//! | [`UNFINISHED`] 5 | failed and stopped with a recorded way back (a step that cannot be undone, or a rollback that failed): resume it or `upgrade-rollback` |
//! | [`STOPPED`] 130 | stopped on request (Ctrl-C, a lost upgrade lock); what was applied was rolled back as far as possible |

/// Done; no blockers or warnings.
pub const OK: u8 = 0;
/// The operation failed; everything it applied was rolled back (or nothing was changed).
pub const FAILED: u8 = 1;
/// Bad input; nothing was changed.
pub const INVALID: u8 = 2;
/// Done, with warnings.
pub const WARNINGS: u8 = 3;
/// Blockers found; nothing was changed.
pub const BLOCKED: u8 = 4;
/// Failed and stopped with a recorded way back; a person resumes or rolls back.
pub const UNFINISHED: u8 = 5;
/// Stopped on request (128 + SIGINT, as shells report an interrupted command).
pub const STOPPED: u8 = 130;
