//! How the blocking driver waits with a deadline on a transport: it sets the transport's
//! own timeouts (or non-blocking mode, to try once) before each read and write.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// How long one read or write may block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wait {
    /// Block until the operation can proceed.
    Forever,
    /// Block at most this long.
    For(Duration),
    /// Do not block: try once.
    Never,
}

impl Wait {
    /// The wait that ends at `deadline` (`None`: forever; already past: try once).
    pub fn until(deadline: Option<std::time::Instant>) -> Wait {
        match deadline {
            None => Wait::Forever,
            Some(d) => match d.checked_duration_since(std::time::Instant::now()) {
                Some(left) if !left.is_zero() => Wait::For(left),
                _ => Wait::Never,
            },
        }
    }
}

/// A byte stream the blocking driver can put deadlines on. Implemented for TCP and Unix
/// sockets; for a stream that cannot time out (a pipe, an in-memory buffer), wrap it in
/// [`NoDeadlines`], which only supports waiting forever.
pub trait Transport: Read + Write {
    /// Makes the next reads and writes wait as `wait` says. A timed-out read or write then
    /// fails with `WouldBlock` or `TimedOut`.
    fn set_wait(&mut self, wait: Wait) -> io::Result<()>;

    /// Ends the sending direction (for TCP, a FIN) once the connection is over. The default
    /// does nothing; the transport closes when it is dropped.
    fn close_write(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn set_socket_wait(
    wait: Wait,
    nonblocking: impl Fn(bool) -> io::Result<()>,
    timeouts: impl Fn(Option<Duration>) -> io::Result<()>,
) -> io::Result<()> {
    match wait {
        Wait::Never => nonblocking(true),
        Wait::Forever => {
            nonblocking(false)?;
            timeouts(None)
        }
        Wait::For(d) => {
            nonblocking(false)?;
            // A zero timeout means "none" to the OS: use the smallest real one instead.
            timeouts(Some(d.max(Duration::from_micros(1))))
        }
    }
}

/// `Transport` for a std socket type: its own timeouts and non-blocking mode.
macro_rules! socket_transport {
    ($(#[$attr:meta])* $ty:ty) => {
        $(#[$attr])*
        impl Transport for $ty {
            fn set_wait(&mut self, wait: Wait) -> io::Result<()> {
                set_socket_wait(
                    wait,
                    |b| self.set_nonblocking(b),
                    |d| {
                        self.set_read_timeout(d)?;
                        self.set_write_timeout(d)
                    },
                )
            }

            fn close_write(&mut self) -> io::Result<()> {
                self.shutdown(std::net::Shutdown::Write)
            }
        }
    };
}

socket_transport!(TcpStream);
socket_transport!(
    #[cfg(unix)]
    std::os::unix::net::UnixStream
);

impl<T: Transport + ?Sized> Transport for Box<T> {
    fn set_wait(&mut self, wait: Wait) -> io::Result<()> {
        (**self).set_wait(wait)
    }

    fn close_write(&mut self) -> io::Result<()> {
        (**self).close_write()
    }
}

/// A stream with no way to time out (pipes, stdin/stdout, in-memory buffers): calls with
/// no deadline work; a deadline is an `Unsupported` error.
#[derive(Debug)]
pub struct NoDeadlines<S>(pub S);

impl<S: Read> Read for NoDeadlines<S> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.read(buf)
    }
}

impl<S: Write> Write for NoDeadlines<S> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write(buf)
    }
    fn write_vectored(&mut self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        self.0.write_vectored(bufs)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

impl<S: Read + Write> Transport for NoDeadlines<S> {
    fn set_wait(&mut self, wait: Wait) -> io::Result<()> {
        match wait {
            Wait::Forever => Ok(()),
            _ => Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "this stream cannot time out: use no deadline",
            )),
        }
    }
}
