//! [`Generation`]: a handler's end of a job — the events of its slot read
//! as [`Step`]s, under the request's deadline. Dropping it (the client went
//! away, the handler returned) cancels the job.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use crate::error::ApiError;
use crate::job::{CancelFlag, Event, Finish, Outcome};
use crate::openai::TokenLogprob;

/// What the next event of a job says.
#[derive(Debug)]
pub enum Step {
    /// More text (possibly empty) and the token's log-probabilities.
    Text {
        /// The text.
        text: String,
        /// The token's log-probabilities, when asked for.
        logprob: Option<TokenLogprob>,
    },
    /// The end: why, and the counts.
    End(Outcome),
    /// It failed, timed out or was cancelled by a shutdown.
    Error(ApiError),
}

/// A whole answer.
#[derive(Debug, Default)]
pub struct Whole {
    /// The text.
    pub text: String,
    /// Per token: its log-probabilities and the byte offset of its text.
    pub logprobs: Vec<(TokenLogprob, usize)>,
}

/// The events of one job.
#[derive(Debug)]
pub struct Generation {
    rx: mpsc::UnboundedReceiver<Event>,
    cancel: CancelFlag,
    deadline: Option<tokio::time::Instant>,
    timeout: Option<Duration>,
    draining: Arc<AtomicBool>,
}

impl Drop for Generation {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

impl Generation {
    /// A job's receiving end.
    pub fn new(
        rx: mpsc::UnboundedReceiver<Event>,
        cancel: CancelFlag,
        deadline: Option<tokio::time::Instant>,
        timeout: Option<Duration>,
        draining: Arc<AtomicBool>,
    ) -> Generation {
        Generation {
            rx,
            cancel,
            deadline,
            timeout,
            draining,
        }
    }

    fn stopped(&self) -> ApiError {
        if self.draining.load(Ordering::Relaxed) {
            ApiError::unavailable("the server is shutting down: the request was cancelled")
        } else {
            ApiError::internal("the request was cancelled")
        }
    }

    /// The next step; after an `End` or an `Error`, don't call again.
    pub async fn next(&mut self) -> Step {
        let event = match self.deadline {
            Some(d) => match tokio::time::timeout_at(d, self.rx.recv()).await {
                Ok(e) => e,
                Err(_) => {
                    self.cancel.cancel();
                    let secs = self.timeout.map_or(0.0, |t| t.as_secs_f64());
                    return Step::Error(ApiError::timeout(secs));
                }
            },
            None => self.rx.recv().await,
        };
        match event {
            Some(Event::Token { text, logprob }) => Step::Text { text, logprob },
            Some(Event::Done(o)) if o.finish == Finish::Cancelled => Step::Error(self.stopped()),
            Some(Event::Done(o)) => Step::End(o),
            Some(Event::Failed(e)) => Step::Error(e),
            // The job was dropped from the queue (shutdown).
            None => Step::Error(self.stopped()),
        }
    }

    /// Reads the rest of the job, `first` being the step already read.
    pub async fn collect(mut self, first: Step) -> Result<(Whole, Outcome), ApiError> {
        let mut whole = Whole::default();
        let mut step = first;
        loop {
            match step {
                Step::Text { text, logprob } => {
                    if let Some(lp) = logprob {
                        whole.logprobs.push((lp, whole.text.len()));
                    }
                    whole.text.push_str(&text);
                }
                Step::End(o) => return Ok((whole, o)),
                Step::Error(e) => return Err(e),
            }
            step = self.next().await;
        }
    }
}
