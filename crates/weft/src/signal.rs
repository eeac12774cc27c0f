//! A cancellation token's future that is cheap to poll again and again: the token's own
//! future takes two locks per poll, this one an atomic load. Its inner future is polled
//! with a waker of our own, once to register and again only after that waker fired.
//! Used for the shutdown signals a server polls on every wake of every connection.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

/// Ready once the token is cancelled.
pub(crate) struct Cancelled {
    inner: Pin<Box<WaitForCancellationFutureOwned>>,
    flag: Arc<Flag>,
    waker: Waker,
    registered: bool,
}

/// The waker the token's future holds: marks the signal fired and wakes the task.
struct Flag {
    fired: AtomicBool,
    task: futures_util::task::AtomicWaker,
}

impl Wake for Flag {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.fired.store(true, Ordering::Release);
        self.task.wake();
    }
}

impl Cancelled {
    pub(crate) fn new(token: CancellationToken) -> Self {
        let flag = Arc::new(Flag {
            fired: AtomicBool::new(false),
            task: futures_util::task::AtomicWaker::new(),
        });
        Cancelled {
            inner: Box::pin(token.cancelled_owned()),
            waker: Waker::from(flag.clone()),
            flag,
            registered: false,
        }
    }
}

impl std::fmt::Debug for Cancelled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cancelled").finish_non_exhaustive()
    }
}

impl Future for Cancelled {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        this.flag.task.register(cx.waker());
        if this.registered && !this.flag.fired.swap(false, Ordering::AcqRel) {
            return Poll::Pending;
        }
        let mut own = Context::from_waker(&this.waker);
        match this.inner.as_mut().poll(&mut own) {
            Poll::Ready(()) => Poll::Ready(()),
            Poll::Pending => {
                this.registered = true;
                Poll::Pending
            }
        }
    }
}
