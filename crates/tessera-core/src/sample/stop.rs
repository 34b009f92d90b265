//! `StopStrings`: cuts a stream of text pieces at the first stop string.
//!
//! Each [`StopStrings::push`] returns the text that is safe to show now. Text
//! that could still turn into a stop string (a suffix that is a prefix of
//! one) is held back until the next piece decides it; [`StopStrings::finish`]
//! hands over what is held when the stream ends. When a stop string appears,
//! the text before it is returned and the stop string itself never is.
//! Pieces are `&str`, so they hold whole characters; a stop string may still
//! be split across pieces anywhere between two characters, and held-back
//! text is always cut on a character boundary.

use super::SampleError;

/// What one [`StopStrings::push`] lets through.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StopOutput {
    /// Text to emit now.
    pub text: String,
    /// A stop string was found: generation should end. Once set, later
    /// pushes return no text and `stopped` stays true.
    pub stopped: bool,
}

/// The streaming stop-string matcher.
#[derive(Debug, Clone)]
pub struct StopStrings {
    stops: Vec<String>,
    /// Longest stop string, in bytes.
    max_len: usize,
    /// Text not yet emitted (a possible start of a stop string).
    held: String,
    stopped: bool,
}

impl StopStrings {
    /// A matcher for `stops`; an empty stop string is refused (it would
    /// match before any text). An empty list never stops.
    pub fn new(stops: Vec<String>) -> Result<Self, SampleError> {
        if let Some(index) = stops.iter().position(String::is_empty) {
            return Err(SampleError::EmptyStopString { index });
        }
        let max_len = stops.iter().map(String::len).max().unwrap_or(0);
        Ok(Self {
            stops,
            max_len,
            held: String::new(),
            stopped: false,
        })
    }

    /// Whether a stop string has been seen.
    pub fn is_stopped(&self) -> bool {
        self.stopped
    }

    /// Feeds the next piece of generated text.
    pub fn push(&mut self, piece: &str) -> StopOutput {
        if self.stopped {
            return StopOutput {
                text: String::new(),
                stopped: true,
            };
        }
        self.held.push_str(piece);
        // The earliest stop string to start wins.
        let hit = self.stops.iter().filter_map(|s| self.held.find(s)).min();
        if let Some(at) = hit {
            self.held.truncate(at);
            self.stopped = true;
            return StopOutput {
                text: std::mem::take(&mut self.held),
                stopped: true,
            };
        }
        let keep_from = self.partial_match_start();
        let text = self.held.drain(..keep_from).collect();
        StopOutput {
            text,
            stopped: false,
        }
    }

    /// Start of the longest suffix of `held` that begins some stop string
    /// (`held.len()` when none does). Only suffixes shorter than the longest
    /// stop string can, and only character boundaries are tried.
    fn partial_match_start(&self) -> usize {
        let len = self.held.len();
        let lowest = len.saturating_sub(self.max_len.saturating_sub(1));
        (lowest..len)
            .filter(|&i| self.held.is_char_boundary(i))
            .find(|&i| {
                let tail = &self.held[i..];
                self.stops.iter().any(|s| s.starts_with(tail))
            })
            .unwrap_or(len)
    }

    /// Ends the stream: returns the held-back text (nothing after a stop).
    pub fn finish(&mut self) -> String {
        std::mem::take(&mut self.held)
    }
}
