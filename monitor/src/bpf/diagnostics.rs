//! The kernel programs' log: aya-log records of rare conditions (`monitor_common::diagnostics`),
//! read from their ring buffer when the agent asks, never waited on.

use std::sync::{Arc, Mutex, PoisonError};

use aya::Ebpf;
use aya_log::EbpfLogger;

/// The ring buffer and the messages read from it so far.
pub struct KernelLog {
    reader: EbpfLogger<Collected>,
    messages: Collected,
}

impl KernelLog {
    /// Takes the log's ring buffer out of the loaded object.
    pub fn open(ebpf: &mut Ebpf) -> Result<Self, aya_log::Error> {
        let messages = Collected::default();
        let reader = EbpfLogger::init_with_logger(ebpf, messages.clone())?;
        Ok(Self { reader, messages })
    }

    /// The messages logged since the last call.
    pub fn drain(&mut self) -> Vec<String> {
        self.reader.flush();
        std::mem::take(
            &mut *self
                .messages
                .0
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
        )
    }
}

/// A `log::Log` that keeps each record's text, for the agent to report where it reports other
/// problems (the process-wide logger may be the terminal the live view draws on).
#[derive(Clone, Default)]
struct Collected(Arc<Mutex<Vec<String>>>);

impl log::Log for Collected {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }

    fn log(&self, record: &log::Record<'_>) {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(record.args().to_string());
    }

    fn flush(&self) {}
}
