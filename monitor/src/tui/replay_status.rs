//! What a replay adds to the view (the recorded time, the position, the timeline, prompts),
//! kept apart from the replay itself so the view's state can hold it without depending on how a
//! recording is read.

/// What the replay adds to the view: drawn in the header, the footer and over the tables.
#[derive(Debug, Default)]
pub struct Status {
    /// End of the window shown (unix ns), "i of n", playing or paused, speed.
    pub time_ns: u64,
    /// Index of the window shown among the recording's windows.
    pub position: usize,
    pub window: (usize, usize),
    pub playing: bool,
    pub speed: f64,
    /// The events and marks of the replay, by time.
    pub events: Vec<Entry>,
    /// Damage the reader stepped over, as lines.
    pub problems: Vec<String>,
    /// Set when the window shown could not be read: why, and which window the tables show.
    pub unreadable: Option<String>,
    /// The answer to the last key, when it needs one (a time that did not parse, no next mark).
    pub message: Option<String>,
    /// What has been typed at the `g` prompt, while it is open.
    pub prompt: Option<String>,
    /// The selected line of the event list, while it is open.
    pub list: Option<usize>,
}

/// An event or mark on the replay's timeline.
#[derive(Debug)]
pub struct Entry {
    /// The window it falls in.
    pub window: usize,
    pub mark: bool,
    /// Its time and what happened, sanitized.
    pub line: String,
}

impl Status {
    /// The events of the window shown, marks first: they are what someone chose to note.
    #[must_use]
    pub fn current_events(&self) -> Vec<&str> {
        let mut here: Vec<&Entry> = self
            .events
            .iter()
            .filter(|e| e.window == self.position)
            .collect();
        here.sort_by_key(|e| !e.mark);
        here.into_iter().map(|e| e.line.as_str()).collect()
    }
}
