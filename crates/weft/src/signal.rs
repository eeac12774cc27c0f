//! A cancellation token's future that is cheap to poll again and again: the token's own
//! future takes two locks per poll, this one a load of a flag that every watcher of the same
//! [`Signal`] shares (written once, when the token fires, so its cache line stays shared
//! and warm however many connections poll it). The token's future is polled with a waker
//! of our own, once to register and again only after that waker fired; the task's waker is
//! handed over again only when it changes. Used for the shutdown signals a server polls on
//! every wake of every connection.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

/// A cancellation token and the flag its watchers share: make one per token and a
/// [`Cancelled`] per task from it.
#[derive(Clone)]
pub(crate) struct Signal(Arc<Shared>);

struct Shared {
    token: CancellationToken,
    /// Set (by the first watcher woken) once the token is cancelled; never cleared.
    fired: AtomicBool,
}

impl Signal {
    pub(crate) fn new(token: CancellationToken) -> Self {
        Signal(Arc::new(Shared {
            token,
            fired: AtomicBool::new(false),
        }))
    }

    /// A future ready once the token is cancelled.
    pub(crate) fn cancelled(&self) -> Cancelled {
        let flag = Arc::new(Flag {
            signal: self.0.clone(),
            task: futures_util::task::AtomicWaker::new(),
        });
        Cancelled {
            inner: Box::pin(self.0.token.clone().cancelled_owned()),
            signal: self.0.clone(),
            flag,
            task: None,
        }
    }
}

impl std::fmt::Debug for Signal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signal")
            .field("fired", &self.0.fired.load(Ordering::Relaxed))
            .finish()
    }
}

/// Ready once the token is cancelled. Small (five words), so that its owner keeps it
/// inline: the check on every wake touches only it and the signal's shared flag.
pub(crate) struct Cancelled {
    inner: Pin<Box<WaitForCancellationFutureOwned>>,
    signal: Arc<Shared>,
    /// Our waker's state (a `Waker` made from it is the one the token's future holds).
    flag: Arc<Flag>,
    /// The task's waker as last given to `flag.task`: registered again only when the task
    /// polls with another one (in tokio, never for the same task).
    task: Option<Waker>,
}

/// The waker the token's future holds: marks the signal fired and wakes the task.
struct Flag {
    signal: Arc<Shared>,
    task: futures_util::task::AtomicWaker,
}

impl Wake for Flag {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        // The token's future wakes only when the token is cancelled.
        self.signal.fired.store(true, Ordering::Release);
        self.task.wake();
    }
}

impl std::fmt::Debug for Cancelled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cancelled").finish_non_exhaustive()
    }
}

impl Future for Cancelled {
    type Output = ();

    /// The common case, on every wake of the task: two pointer comparisons and a load of
    /// the shared flag, inlined into the caller.
    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        if let Some(task) = &this.task {
            if task.will_wake(cx.waker()) && !this.signal.fired.load(Ordering::Acquire) {
                return Poll::Pending;
            }
        }
        this.poll_token(cx)
    }
}

impl Cancelled {
    /// The first poll, a poll from another task, or the signal fired: hands the task's
    /// waker over and polls the token's own future (its locks).
    #[cold]
    fn poll_token(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if !self.task.as_ref().is_some_and(|t| t.will_wake(cx.waker())) {
            self.flag.task.register(cx.waker());
            self.task = Some(cx.waker().clone());
        }
        let own = Waker::from(self.flag.clone());
        self.inner.as_mut().poll(&mut Context::from_waker(&own))
    }

    /// The signal this future watches.
    pub(crate) fn signal(&self) -> Signal {
        Signal(self.signal.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    /// Counts its wake-ups.
    #[derive(Default)]
    struct Count(AtomicUsize);

    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn poll(c: &mut Cancelled, waker: &Waker) -> Poll<()> {
        Pin::new(c).poll(&mut Context::from_waker(waker))
    }

    #[test]
    fn pending_until_cancelled_then_woken_and_ready() {
        let token = CancellationToken::new();
        let mut c = Signal::new(token.clone()).cancelled();
        let count = Arc::new(Count::default());
        let waker = Waker::from(count.clone());
        assert!(poll(&mut c, &waker).is_pending());
        assert!(poll(&mut c, &waker).is_pending());
        assert_eq!(count.0.load(Ordering::SeqCst), 0);
        token.cancel();
        assert_eq!(count.0.load(Ordering::SeqCst), 1);
        assert!(poll(&mut c, &waker).is_ready());
    }

    #[test]
    fn a_new_task_waker_is_the_one_woken() {
        let token = CancellationToken::new();
        let mut c = Signal::new(token.clone()).cancelled();
        let first = Arc::new(Count::default());
        let second = Arc::new(Count::default());
        assert!(poll(&mut c, &Waker::from(first.clone())).is_pending());
        assert!(poll(&mut c, &Waker::from(second.clone())).is_pending());
        token.cancel();
        assert_eq!(first.0.load(Ordering::SeqCst), 0);
        assert_eq!(second.0.load(Ordering::SeqCst), 1);
        assert!(poll(&mut c, &Waker::from(second)).is_ready());
    }

    #[test]
    fn every_watcher_of_a_signal_is_woken_and_ready() {
        let token = CancellationToken::new();
        let signal = Signal::new(token.clone());
        let counts: Vec<Arc<Count>> = (0..3).map(|_| Arc::default()).collect();
        let mut watchers: Vec<Cancelled> = counts.iter().map(|_| signal.cancelled()).collect();
        for (c, n) in watchers.iter_mut().zip(&counts) {
            assert!(poll(c, &Waker::from(n.clone())).is_pending());
        }
        token.cancel();
        for (c, n) in watchers.iter_mut().zip(&counts) {
            assert_eq!(n.0.load(Ordering::SeqCst), 1);
            assert!(poll(c, &Waker::from(n.clone())).is_ready());
        }
        // One made after the cancellation is ready at once.
        let late = Arc::new(Count::default());
        assert!(poll(&mut signal.cancelled(), &Waker::from(late)).is_ready());
    }

    #[test]
    fn cancelled_before_the_first_poll_is_ready_at_once() {
        let token = CancellationToken::new();
        let mut c = Signal::new(token.clone()).cancelled();
        token.cancel();
        assert!(poll(&mut c, &Waker::from(Arc::new(Count::default()))).is_ready());
    }
}
