//! Errors of the stream sources, each with what the user can do about it.

/// What went wrong in a stream source. `Display` is the primary message;
/// [`Error::detail`] and [`Error::hint`] follow PostgreSQL's error style.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Connect(#[from] tributary_nats::ConnectError),

    #[error("JetStream stream \"{stream}\" does not exist")]
    StreamMissing {
        stream: String,
        #[source]
        source: async_nats::jetstream::context::GetStreamError,
    },

    #[error("JetStream stream \"{stream}\" does not capture subject \"{subject}\"")]
    SubjectNotInStream { stream: String, subject: String },

    #[error("JetStream stream \"{stream}\" has interest retention")]
    InterestRetention { stream: String },

    #[error("durable consumer \"{consumer}\" filters \"{filter}\", not \"{subject}\"")]
    ConsumerMismatch {
        consumer: String,
        filter: String,
        subject: String,
    },

    #[error(
        "JetStream stream \"{stream}\" no longer holds the messages from sequence {next}: its \
         first message is {first}"
    )]
    MessagesGone {
        stream: String,
        next: u64,
        first: u64,
    },

    #[error("could not reach Kafka at {brokers}: {reason}")]
    KafkaUnreachable { brokers: String, reason: String },

    #[error("Kafka topic \"{topic}\" does not exist")]
    TopicMissing { topic: String },

    #[error(
        "batch {batch} cannot be read again: partition {partition} of topic \"{topic}\" no \
         longer holds its messages"
    )]
    BatchGone {
        topic: String,
        partition: i32,
        batch: u64,
    },

    #[error("Kafka request failed while {doing}: {reason}")]
    Kafka { doing: &'static str, reason: String },

    #[error("the state store failed")]
    Store(#[from] tributary_state::StateError),

    #[error("JetStream request failed while {doing}: {reason}")]
    JetStream { doing: &'static str, reason: String },

    #[error("message {seq} on subject \"{subject}\" is not a row of {table}: {reason}")]
    Poison {
        seq: u64,
        subject: String,
        table: String,
        reason: String,
    },

    #[error("could not write the dead-letter file {path}")]
    DeadLetter {
        path: String,
        #[source]
        source: std::io::Error,
    },

    #[error("the declared table cannot be read: {0}")]
    Declaration(String),
}

impl Error {
    /// The underlying cause, when the message does not carry it.
    pub fn detail(&self) -> Option<String> {
        match self {
            Error::StreamMissing { source, .. } => Some(source.to_string()),
            Error::DeadLetter { source, .. } => Some(source.to_string()),
            Error::Store(source) => Some(source.to_string()),
            _ => None,
        }
    }

    /// What to do about it.
    pub fn hint(&self) -> Option<String> {
        Some(match self {
            Error::Connect(_) => {
                "check url, credentials and TLS of this source, and that the server runs with -js"
                    .into()
            }
            Error::StreamMissing { .. } => {
                "create the stream (nats stream add), or name an existing one in `stream`".into()
            }
            Error::SubjectNotInStream { .. } => {
                "set `subject` to subjects the stream captures, or add them to the stream".into()
            }
            Error::InterestRetention { .. } => {
                "a stream with interest retention drops messages once no consumer wants them, \
                 and this source recreates its consumer after a crash: give the stream limits \
                 (the default) or workqueue retention"
                    .into()
            }
            Error::ConsumerMismatch { consumer, .. } => format!(
                "another reader uses consumer \"{consumer}\": set `consumer` to a name of this \
                 source's own, or delete that consumer if it is stale"
            ),
            Error::MessagesGone { .. } => {
                "the stream's limits (max_age, max_msgs, max_bytes) dropped messages this \
                 source had not read: raise them; to accept the loss and go on, remove this \
                 source's state (a new state directory)"
                    .into()
            }
            Error::JetStream { .. } => "check the NATS server's log and JetStream status".into(),
            Error::KafkaUnreachable { .. } => {
                "check brokers, and TLS/SASL in properties (or tls_ca, user, sasl_password_env)"
                    .into()
            }
            Error::TopicMissing { .. } => {
                "create the topic, or name an existing one in `topics`".into()
            }
            Error::Kafka { .. } => "check the brokers' logs".into(),
            Error::BatchGone { .. } => {
                "the topic's retention removed messages this source had read but not yet made \
                 durable everywhere: raise retention.ms; to accept the loss, start with a new \
                 state_dir (the topics are read again from their start)"
                    .into()
            }
            Error::Store(_) => "check that state_dir is writable and not full".into(),
            Error::Poison { .. } => {
                "fix the message's producer; to set such messages aside and go on, set on_error \
                 = \"dead_letter\" on this source (they go to its dead-letter file)"
                    .into()
            }
            Error::DeadLetter { .. } => {
                "check dead_letter_path: its directory must be writable".into()
            }
            Error::Declaration(_) => "check `columns` and `key` of this source".into(),
        })
    }
}

impl tributary_core::source::Diagnose for Error {
    fn detail(&self) -> Option<String> {
        Error::detail(self)
    }

    fn hint(&self) -> Option<String> {
        Error::hint(self)
    }
}

pub(crate) fn jetstream(doing: &'static str, error: impl std::fmt::Display) -> Error {
    Error::JetStream {
        doing,
        reason: error.to_string(),
    }
}
