//! A minimal QMP client: enough to ask QEMU which thread runs which vCPU, whether the machine is
//! running, and to read a word of guest memory.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};

use crate::Error;

pub(crate) struct Qmp {
    socket: String,
    reader: BufReader<UnixStream>,
    writer: UnixStream,
}

impl Qmp {
    /// Connects and leaves the capabilities-negotiation mode. QEMU serves one QMP client per
    /// socket at a time, so callers keep connections short.
    pub(crate) fn connect(path: &Path) -> Result<Self, Error> {
        let socket = path.display().to_string();
        let fail = |reason: String| Error::Qmp {
            socket: socket.clone(),
            reason,
        };
        let stream = UnixStream::connect(path).map_err(|e| fail(format!("connect: {e}")))?;
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .map_err(|e| fail(e.to_string()))?;
        let writer = stream.try_clone().map_err(|e| fail(e.to_string()))?;
        let mut qmp = Self {
            socket: socket.clone(),
            reader: BufReader::new(stream),
            writer,
        };
        let greeting = qmp.read_message()?;
        if greeting.get("QMP").is_none() {
            return Err(fail(format!("unexpected greeting {greeting}")));
        }
        qmp.execute("qmp_capabilities", None)?;
        Ok(qmp)
    }

    fn error(&self, reason: String) -> Error {
        Error::Qmp {
            socket: self.socket.clone(),
            reason,
        }
    }

    fn read_message(&mut self) -> Result<Value, Error> {
        let mut line = String::new();
        match self.reader.read_line(&mut line) {
            Ok(0) => Err(self.error("QEMU closed the connection".into())),
            Ok(_) => serde_json::from_str(&line)
                .map_err(|e| self.error(format!("bad JSON {line:?}: {e}"))),
            Err(e) => Err(self.error(format!("read: {e}"))),
        }
    }

    /// Runs one command and returns its `return` value.
    pub(crate) fn execute(
        &mut self,
        command: &str,
        arguments: Option<Value>,
    ) -> Result<Value, Error> {
        let mut request = json!({ "execute": command });
        if let Some(arguments) = arguments {
            request["arguments"] = arguments;
        }
        let mut line = request.to_string();
        line.push('\n');
        self.writer
            .write_all(line.as_bytes())
            .map_err(|e| self.error(format!("write: {e}")))?;
        loop {
            let mut reply = self.read_message()?;
            // Asynchronous events (RESUME, STOP, …) can arrive before the reply.
            if reply.get("event").is_some() {
                continue;
            }
            if let Some(value) = reply.get_mut("return") {
                return Ok(value.take());
            }
            return Err(self.error(format!("{command} failed: {reply}")));
        }
    }

    /// `(cpu-index, thread-id)` of every vCPU, from `query-cpus-fast`.
    pub(crate) fn vcpu_threads(&mut self) -> Result<Vec<(u32, u32)>, Error> {
        let reply = self.execute("query-cpus-fast", None)?;
        let cpus = reply
            .as_array()
            .ok_or_else(|| self.error(format!("query-cpus-fast returned {reply}")))?;
        cpus.iter()
            .map(|cpu| {
                let field = |name: &str| {
                    cpu.get(name)
                        .and_then(Value::as_u64)
                        .and_then(|v| u32::try_from(v).ok())
                };
                match (field("cpu-index"), field("thread-id")) {
                    (Some(index), Some(tid)) => Ok((index, tid)),
                    _ => Err(self.error(format!("query-cpus-fast entry without ids: {cpu}"))),
                }
            })
            .collect()
    }

    /// Whether the machine is running (not paused, not shut down).
    pub(crate) fn is_running(&mut self) -> Result<bool, Error> {
        let status = self.execute("query-status", None)?;
        Ok(status.get("running").and_then(Value::as_bool) == Some(true))
    }

    /// Reads a 32-bit word of guest-physical memory (HMP `xp`, which QMP has no equivalent of).
    pub(crate) fn read_phys_u32(&mut self, address: u64) -> Result<u32, Error> {
        let reply = self.execute(
            "human-monitor-command",
            Some(json!({ "command-line": format!("xp /1wx {address:#x}") })),
        )?;
        let text = reply.as_str().unwrap_or_default();
        parse_xp_word(text).ok_or_else(|| self.error(format!("unexpected xp output {text:?}")))
    }
}

/// Parses `0000000000000500: 0x000000ec\r\n`.
fn parse_xp_word(text: &str) -> Option<u32> {
    let (_, value) = text.split_once(": ")?;
    u32::from_str_radix(value.trim().strip_prefix("0x")?, 16).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_xp_output() {
        assert_eq!(
            parse_xp_word("0000000000000500: 0x000000ec\r\n"),
            Some(0xec)
        );
        assert_eq!(parse_xp_word("garbage"), None);
    }
}
