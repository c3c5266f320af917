use std::io;
use std::time::Duration;

/// Why a guest could not be built, started, observed or stopped.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("\"{tool}\" was not found on PATH: install the Debian package \"{package}\"")]
    MissingTool {
        tool: &'static str,
        package: &'static str,
    },

    #[error("invalid guest spec: {0}")]
    InvalidSpec(String),

    #[error("assembling \"{source_name}\" failed: `{command}` {status}:\n{output}")]
    Assemble {
        source_name: &'static str,
        command: String,
        status: String,
        output: String,
    },

    #[error("could not build minivmm with `{command}`: {reason}")]
    BuildMiniVmm { command: String, reason: String },

    #[error("could not start `{program}`: {source}")]
    Spawn {
        program: String,
        #[source]
        source: io::Error,
    },

    #[error("{program} (pid {pid}) ended {during} ({status}); its stderr:\n{stderr}")]
    Exited {
        program: String,
        pid: u32,
        status: String,
        during: &'static str,
        stderr: String,
    },

    #[error(
        "timed out after {timeout:?} waiting for {program} (pid {pid}): {waiting_for}; its stderr so far:\n{stderr}"
    )]
    Timeout {
        program: String,
        pid: u32,
        timeout: Duration,
        waiting_for: String,
        stderr: String,
    },

    #[error("the guest has already been stopped")]
    Stopped,

    #[error("QMP on \"{socket}\": {reason}")]
    Qmp { socket: String, reason: String },

    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: io::Error,
    },
}

impl Error {
    pub(crate) fn io(context: impl Into<String>, source: io::Error) -> Self {
        Self::Io {
            context: context.into(),
            source,
        }
    }
}
