//! What stops views from being declared or kept, with what to do about it.

use crate::sql::PlanError;

#[derive(Debug, thiserror::Error)]
pub enum ViewError {
    /// A view's SQL is refused.
    #[error("view \"{view}\": {source}")]
    Plan {
        view: String,
        #[source]
        source: PlanError,
    },
    /// Two views share a name.
    #[error("view \"{0}\" is declared twice")]
    Duplicate(String),
    /// A view reads a table whose rows cannot be told apart by a key, so a
    /// delete or update cannot be applied to the right row.
    #[error("view \"{view}\" reads {table}, which has no primary key")]
    NoKey { view: String, table: String },
    /// A changed row cannot enter the views.
    #[error("a change of {table} cannot enter the views: {reason}")]
    BadChange { table: String, reason: String },
    /// A sink follows a view that is not declared.
    #[error("no view is named \"{0}\"")]
    UnknownView(String),
    /// A changefeed cannot tell the view's rows apart.
    #[error("view \"{view}\" cannot be followed by key: {reason}")]
    ChangefeedKey { view: String, reason: String },
    /// The stored view rows cannot be read or written.
    #[error("the view rows in the state store cannot be used")]
    Store(#[from] tributary_state::StateError),
    /// A stored row does not decode (the store was written by another version).
    #[error("a stored view row of {table} is unreadable")]
    Corrupt {
        table: String,
        #[source]
        source: postcard::Error,
    },
}

impl ViewError {
    pub fn detail(&self) -> Option<String> {
        match self {
            ViewError::Plan { source, .. } => source.detail().map(str::to_owned),
            ViewError::Store(e) => Some(e.to_string()),
            ViewError::Corrupt { source, .. } => Some(source.to_string()),
            _ => None,
        }
    }

    pub fn hint(&self) -> Option<String> {
        match self {
            ViewError::Plan { source, .. } => source.hint().map(str::to_owned),
            ViewError::Duplicate(_) => Some("give each [[view]] its own name".into()),
            ViewError::NoKey { .. } => Some(
                "add a primary key to the table (or REPLICA IDENTITY USING INDEX on a unique index)"
                    .into(),
            ),
            ViewError::BadChange { .. } => Some(
                "the table changed in a way its views cannot follow; fix the table or the view, \
                 then restart"
                    .into(),
            ),
            ViewError::Corrupt { .. } => Some(
                "reset the source (its views are then rebuilt from a new snapshot)".into(),
            ),
            ViewError::UnknownView(_) => {
                Some("name a [[view]] of this config in the sink's `view`".into())
            }
            ViewError::ChangefeedKey { .. } => Some(
                "give the sink key = [\"column\", ...]: columns whose values no two rows of the \
                 view share (a GROUP BY view is keyed by its GROUP BY columns)"
                    .into(),
            ),
            ViewError::Store(_) => None,
        }
    }
}
