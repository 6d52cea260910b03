//! Shutting down without losing answers. On SIGTERM (a rollout, a drained node) kubechat stops taking questions
//! (`/readyz` turns 503, new questions are refused with "restarting", Socket Mode and Matrix stop receiving), finishes
//! every answer in flight, and exits; an answer that cannot finish within `drain_seconds` gets a short note
//! where its answer would have gone ("kubechat restarted before it finished; ask again"), never silence, and its
//! audit line says `interrupted`.
//!
//! [`Drain`] is that state: front-ends run each answer with [`Drain::spawn`] (an HTTP answer without streaming holds a
//! [`Drain::token`] instead), ask [`Drain::is_closing`] before taking a question, and `App::serve` calls
//! [`Drain::drain`] on the signal.

use std::future::Future;
use std::time::Duration;

use tokio::sync::watch;
use tokio_util::task::TaskTracker;
use tokio_util::task::task_tracker::TaskTrackerToken;

/// How long the interrupted answers' notes may take to post, after the drain timeout.
pub const NOTE_TIME: Duration = Duration::from_secs(10);

/// What an asker is told when kubechat is shutting down and takes no new question.
pub const RESTARTING: &str = "kubechat is restarting and takes no new question here; ask again in a few seconds";

/// What an asker is told when kubechat shut down before their answer was finished.
pub const INTERRUPTED: &str = "kubechat restarted before it finished this answer; ask again";

pub struct Drain {
    closing: watch::Sender<bool>,
    expired: watch::Sender<bool>,
    tracker: TaskTracker,
    timeout: Duration,
}

impl Drain {
    pub fn new(timeout: Duration) -> Drain {
        Drain {
            closing: watch::Sender::new(false),
            expired: watch::Sender::new(false),
            tracker: TaskTracker::new(),
            timeout,
        }
    }

    /// Whether shutdown began: take no new question.
    pub fn is_closing(&self) -> bool {
        *self.closing.borrow()
    }

    /// Whether the drain timeout passed: the answers still running are being interrupted.
    pub fn is_expired(&self) -> bool {
        *self.expired.borrow()
    }

    /// Turns true when shutdown begins.
    pub fn subscribe_closing(&self) -> watch::Receiver<bool> {
        self.closing.subscribe()
    }

    /// Resolves when shutdown begins.
    pub async fn closed(&self) {
        let mut closing = self.closing.subscribe();
        let _ = closing.wait_for(|c| *c).await;
    }

    /// Counts as an answer in flight for as long as it is held (an HTTP answer streaming to its client).
    pub fn token(&self) -> TaskTrackerToken {
        self.tracker.token()
    }

    /// Runs `answer` to its end; past the drain timeout, drops it and runs `interrupted` (which tells the asker)
    /// instead.
    pub fn spawn<A, I, F>(&self, answer: A, interrupted: I)
    where
        A: Future<Output = ()> + Send + 'static,
        I: FnOnce() -> F + Send + 'static,
        F: Future<Output = ()> + Send + 'static,
    {
        let mut expired = self.expired.subscribe();
        self.tracker.spawn(async move {
            let expiry = async move {
                // The guard `wait_for` returns is not Send: let it go before the note is written.
                let _ = expired.wait_for(|e| *e).await.map(|_| ());
            };
            tokio::select! {
                () = answer => {}
                () = expiry => interrupted().await,
            }
        });
    }

    /// Shuts down: no new questions from now on; waits for the answers in flight for up to the drain timeout, then
    /// interrupts the rest and waits (at most [`NOTE_TIME`]) for their notes to be posted.
    pub async fn drain(&self) {
        self.closing.send_replace(true);
        self.tracker.close();
        let running = self.tracker.len();
        if running > 0 {
            tracing::info!(answers = running, timeout_s = self.timeout.as_secs(), "finishing the answers in flight");
        }
        if tokio::time::timeout(self.timeout, self.tracker.wait()).await.is_err() {
            tracing::warn!(
                answers = self.tracker.len(),
                "answers still running after {} s (drain_seconds); their askers are told to ask again",
                self.timeout.as_secs()
            );
            self.expired.send_replace(true);
            if tokio::time::timeout(NOTE_TIME, self.tracker.wait()).await.is_err() {
                tracing::warn!("some interrupted answers' notes could not be posted in time");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn answers_finish_within_the_timeout_and_the_rest_are_interrupted() {
        let drain = Drain::new(Duration::from_secs(30));
        let (finished, interrupted) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        for seconds in [5, 20, 300] {
            let (finished, interrupted) = (finished.clone(), interrupted.clone());
            drain.spawn(
                async move {
                    tokio::time::sleep(Duration::from_secs(seconds)).await;
                    finished.fetch_add(1, Ordering::SeqCst);
                },
                move || async move {
                    interrupted.fetch_add(1, Ordering::SeqCst);
                },
            );
        }
        let token = drain.token();
        assert!(!drain.is_closing());
        let started = tokio::time::Instant::now();
        let draining = async {
            drain.drain().await;
        };
        let release = async {
            tokio::time::sleep(Duration::from_secs(1)).await;
            assert!(drain.is_closing(), "closing at once");
            drop(token);
        };
        tokio::join!(draining, release);
        assert_eq!(started.elapsed().as_secs(), 30, "waits the whole timeout for the slow answer");
        assert_eq!((finished.load(Ordering::SeqCst), interrupted.load(Ordering::SeqCst)), (2, 1));
        assert!(drain.is_expired());
    }

    #[tokio::test(start_paused = true)]
    async fn with_nothing_in_flight_it_returns_at_once() {
        let drain = Drain::new(Duration::from_secs(30));
        let started = tokio::time::Instant::now();
        drain.drain().await;
        assert_eq!(started.elapsed(), Duration::ZERO);
        assert!(drain.is_closing() && !drain.is_expired());
    }
}
