//! Reading stored values back into domain types.
//!
//! A stored value that does not parse is a bug or a manual edit: it becomes
//! [`Error::Stored`], never a panic.

use crate::{
    domain::{Slot, TableId},
    error::Error,
};
use std::time::SystemTime;

/// A stored value parsed by its domain constructor; `what` names it in the error.
pub(super) fn stored<T>(what: &str, parsed: Result<T, String>) -> Result<T, Error> {
    parsed.map_err(|reason| Error::Stored(format!("{what}: {reason}")))
}

/// A stored time range as a slot.
pub(super) fn slot_of(start: SystemTime, end: SystemTime) -> Result<Slot, Error> {
    Slot::from_bounds(start, end).ok_or_else(|| Error::Stored("empty time range".into()))
}

/// Stored table ids.
pub(super) fn table_ids_of(ids: Vec<String>) -> Result<Vec<TableId>, Error> {
    ids.iter().map(|id| stored("table id", TableId::parse(id))).collect()
}
