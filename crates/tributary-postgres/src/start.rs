//! What a start of the source does, decided from the slot and the
//! checkpoint alone (no I/O), so every path has a unit test.
//!
//! The inputs are whether the slot exists and whether the server invalidated
//! it, the checkpoint to resume from, the `snapshot` and `on_slot_lost`
//! settings, and whether this is the process's first start or a start over
//! after a lost connection.

use tributary_state::Checkpoint;

use crate::settings::{SlotLost, SnapshotMode};

/// The slot as the server reports it at start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SlotAtStart {
    Missing,
    Usable,
    /// Invalidated by the server (`wal_status = 'lost'`).
    Lost,
}

/// What to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StartPlan {
    /// Snapshot on the slot this source has, after streaming it up to the
    /// new snapshot's point (see `source`).
    SnapshotOnKeptSlot,
    /// Snapshot on a new slot, dropping the existing (lost) one first.
    SnapshotOnNewSlot { drop_existing: bool },
    /// Create the slot and stream from its point, without a snapshot.
    StreamOnNewSlot,
    /// Stream on from the checkpoint (or the slot's position without one).
    Resume,
    /// Stop: the slot was invalidated, and changes are gone.
    FailSlotInvalidated,
    /// Stop: the slot this source streamed from is gone.
    FailSlotMissing,
}

/// The plan, and what to tell the user about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct StartDecision {
    pub(crate) plan: StartPlan,
    /// The slot was lost and `on_slot_lost = "resnapshot"` applies.
    pub(crate) resnapshot: bool,
    /// An earlier snapshot was cut off; it restarts from the beginning.
    pub(crate) interrupted: bool,
}

pub(crate) fn plan_start(
    slot: SlotAtStart,
    resume: Option<Checkpoint>,
    mode: SnapshotMode,
    on_slot_lost: SlotLost,
    first: bool,
) -> StartDecision {
    let snapshot_done = resume.is_some_and(|c| c.snapshot_complete);
    let lost = match slot {
        SlotAtStart::Lost => true,
        SlotAtStart::Usable => false,
        // A source that has a checkpoint had a slot.
        SlotAtStart::Missing => resume.is_some(),
    };
    let resnapshot = lost && on_slot_lost == SlotLost::Resnapshot;
    let need_snapshot = resnapshot
        || match mode {
            // At every start of the process, not again when a run starts
            // over after its snapshot was read.
            SnapshotMode::Always => first || !snapshot_done,
            SnapshotMode::Initial => !snapshot_done,
            SnapshotMode::Never => false,
        };
    let plan = match (need_snapshot, slot, resume) {
        (true, SlotAtStart::Usable, _) => StartPlan::SnapshotOnKeptSlot,
        (true, SlotAtStart::Lost, _) => StartPlan::SnapshotOnNewSlot {
            drop_existing: true,
        },
        (true, SlotAtStart::Missing, _) => StartPlan::SnapshotOnNewSlot {
            drop_existing: false,
        },
        (false, SlotAtStart::Lost, _) => StartPlan::FailSlotInvalidated,
        (false, SlotAtStart::Missing, Some(_)) => StartPlan::FailSlotMissing,
        (false, SlotAtStart::Missing, None) => StartPlan::StreamOnNewSlot,
        (false, SlotAtStart::Usable, _) => StartPlan::Resume,
    };
    StartDecision {
        plan,
        resnapshot,
        interrupted: need_snapshot && resume.is_some() && !snapshot_done && !resnapshot,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use SlotAtStart::{Lost, Missing, Usable};
    use StartPlan::*;

    fn cp(snapshot_complete: bool) -> Option<Checkpoint> {
        Some(Checkpoint {
            position: tributary_core::Position::new(100),
            snapshot_complete,
            last_commit: Some(tributary_core::Position::new(90)),
        })
    }

    #[test]
    fn every_start_path() {
        use SlotLost::{Fail, Resnapshot};
        use SnapshotMode::{Always, Initial, Never};
        let new = SnapshotOnNewSlot {
            drop_existing: false,
        };
        let replace = SnapshotOnNewSlot {
            drop_existing: true,
        };
        // (slot, checkpoint, snapshot, on_slot_lost, first start) → (plan, resnapshot, interrupted)
        #[rustfmt::skip]
        let cases = [
            // The very first run.
            (Missing, None,      Initial, Fail,       true,  new,                 false, false),
            (Missing, None,      Always,  Fail,       true,  new,                 false, false),
            (Missing, None,      Never,   Fail,       true,  StreamOnNewSlot,     false, false),
            // A normal restart.
            (Usable,  cp(true),  Initial, Fail,       true,  Resume,              false, false),
            (Usable,  cp(true),  Never,   Fail,       true,  Resume,              false, false),
            // `always`: a snapshot at every process start, not on a start over.
            (Usable,  cp(true),  Always,  Fail,       true,  SnapshotOnKeptSlot,  false, false),
            (Usable,  cp(true),  Always,  Fail,       false, Resume,              false, false),
            // An interrupted snapshot is taken again on the kept slot.
            (Usable,  cp(false), Initial, Fail,       true,  SnapshotOnKeptSlot,  false, true),
            (Usable,  cp(false), Always,  Fail,       false, SnapshotOnKeptSlot,  false, true),
            // A slot without a checkpoint (state_dir lost): snapshot on it.
            (Usable,  None,      Initial, Fail,       true,  SnapshotOnKeptSlot,  false, false),
            (Usable,  None,      Never,   Fail,       true,  Resume,              false, false),
            // The slot was invalidated.
            (Lost,    cp(true),  Initial, Fail,       true,  FailSlotInvalidated, false, false),
            (Lost,    cp(true),  Never,   Fail,       true,  FailSlotInvalidated, false, false),
            (Lost,    None,      Never,   Fail,       true,  FailSlotInvalidated, false, false),
            (Lost,    cp(true),  Initial, Resnapshot, true,  replace,             true,  false),
            (Lost,    cp(true),  Never,   Resnapshot, true,  replace,             true,  false),
            (Lost,    cp(false), Initial, Fail,       true,  replace,             false, true),
            // The slot was dropped after streaming began.
            (Missing, cp(true),  Initial, Fail,       true,  FailSlotMissing,     false, false),
            (Missing, cp(true),  Never,   Fail,       true,  FailSlotMissing,     false, false),
            (Missing, cp(true),  Initial, Resnapshot, true,  new,                 true,  false),
            (Missing, cp(false), Initial, Fail,       true,  new,                 false, true),
        ];
        for (i, &(slot, resume, mode, on_lost, first, plan, resnapshot, interrupted)) in
            cases.iter().enumerate()
        {
            assert_eq!(
                plan_start(slot, resume, mode, on_lost, first),
                StartDecision {
                    plan,
                    resnapshot,
                    interrupted
                },
                "case {i}: {slot:?} {resume:?} {mode:?} {on_lost:?} first={first}"
            );
        }
    }
}
