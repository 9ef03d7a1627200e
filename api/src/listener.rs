//! The HTTP listener: our own accept loop in front of hyper, with the connection limits
//! `axum::serve` cannot express (issue #13, ADR "connection limits").
//!
//! `axum::serve` gives a connection unlimited time to send its request head and to sit idle
//! between requests, has no cap per client address, and answers a failed `accept` (EMFILE when
//! the process is out of file descriptors) with an ERROR line and a one-second sleep, forever. A
//! client dribbling one header byte every two seconds on 1,100 connections therefore held every
//! descriptor of a server under `ulimit -n 1024` and starved everyone else.
//!
//! Here every connection runs against a deadline kept by [`ConnectionClock`]:
//! - from accept, or from the first byte of a later request, the **request head** must be
//!   complete within `header_read_timeout` (bytes arriving slowly do not extend it);
//! - between requests, a keep-alive connection may stay **idle** for `idle_timeout`;
//! - while a request is in flight no deadline runs: the request's own deadline
//!   (`limits::deadline`) bounds the handler. In flight means from the complete head until hyper
//!   drops the response body, which it does once the body's last frame is *queued* in its write
//!   buffer, not once it has reached the socket: the idle timer may start while the tail of a
//!   response (at most hyper's buffer) is still being flushed, so a client that stops reading
//!   the end of its response is closed at the idle timeout.
//!
//! A connection past its deadline is dropped, which closes the socket; hyper's own
//! `header_read_timeout` is left off because it also restarts after every response and would
//! make idle keep-alive connections close at the header bound.
//!
//! Each address (an IPv4 address, an IPv6 /64) may hold `max_per_ip` connections; one more is
//! closed as soon as it is accepted, without reading or writing anything (see [`PerIp`]).
//!
//! All addresses together may hold `max_connections` (by default what `ulimit -n` leaves after
//! the database pools and a reserve: [`connection_cap`]). At the cap the loop stops accepting
//! until a connection closes; new connections wait in the kernel's listen backlog, holding no
//! descriptor of ours. Descriptors therefore never run out because of clients, and the
//! database pools, the LISTEN reconnect and key reloads can always open theirs.
//!
//! Failed accepts that are not a single connection's problem back off (10 ms doubling to 1 s).
//! Reaching the cap, refusals over the per-address cap and failed accepts are each logged at
//! WARN at most once a minute, with the count since the last warning ([`Occasional`]).
//!
//! Connection tasks live in a `JoinSet` owned by [`serve`]: shutdown is graceful (when the token
//! is cancelled the loop stops accepting, idle connections close, in-flight requests are
//! answered, and [`serve`] returns once every connection is gone), and dropping the `serve`
//! future (an aborted task) drops every connection with it.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::num::NonZeroU32;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Request, Response};
use hyper::body::{Frame, Incoming, SizeHint};
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

/// How long connections may take and how many one address may hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// Time allowed to receive a complete request head, from accept or from the first byte of a
    /// later request on the same connection.
    pub header_read_timeout: Duration,
    /// Time a keep-alive connection may wait for its next request.
    pub idle_timeout: Duration,
    /// Concurrent connections per client address (IPv4 address, IPv6 /64).
    pub max_per_ip: NonZeroU32,
    /// Concurrent client connections in all. `None` in a configuration: derived from
    /// `RLIMIT_NOFILE` when the server starts ([`connection_cap`]); `serve` itself reads `None`
    /// as no cap but the descriptors.
    pub max_connections: Option<NonZeroU32>,
}

impl Default for ConnectionLimits {
    /// The defaults of `ledger serve`: 10 s for a request head (a real client sends it in one
    /// packet), 60 s idle (below the 75 s at which issue #13 saw connections still open, and
    /// below the 90 s reqwest keeps pooled connections, so clients rarely reuse a closed one
    /// late), 256 connections per address (many browsers or SDK instances behind one NAT; a
    /// reverse proxy needs more), and as many connections in all as the open-file limit leaves.
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            max_per_ip: const { NonZeroU32::new(256).unwrap() },
            max_connections: None,
        }
    }
}

/// Descriptors kept free for the server itself, besides the two database pools: the listening
/// socket, stdio, the runtime's epoll and wake-up descriptors, the signal pipe, the files of the
/// data directory (key reload reads a few at a time), a database connection being replaced
/// while the old socket closes, a DNS lookup. These take about a dozen at once; 64 leaves room
/// for what a library or a later feature opens without anyone recomputing this.
pub const RESERVED_DESCRIPTORS: u64 = 64;

/// The total connection cap: `requested` (`--max-connections`) or, without one, what the soft
/// `RLIMIT_NOFILE` leaves after `reserved` descriptors (the database pools and
/// [`RESERVED_DESCRIPTORS`]).
///
/// # Errors
/// When `requested` exceeds what the limit leaves, or the limit leaves nothing: a cap above it
/// would bring back the out-of-descriptors failures it exists to prevent, so the server refuses
/// to start rather than clamp silently.
pub fn connection_cap(requested: Option<NonZeroU32>, reserved: u64) -> anyhow::Result<NonZeroU32> {
    cap_under(requested, nofile_soft_limit(), reserved)
}

/// The soft limit on open descriptors (`ulimit -n`); `u64::MAX` when unlimited.
fn nofile_soft_limit() -> u64 {
    rustix::process::getrlimit(rustix::process::Resource::Nofile)
        .current
        .unwrap_or(u64::MAX)
}

/// [`connection_cap`] under a soft limit of `nofile`.
fn cap_under(
    requested: Option<NonZeroU32>,
    nofile: u64,
    reserved: u64,
) -> anyhow::Result<NonZeroU32> {
    let room = nofile.saturating_sub(reserved);
    let Some(allowed) = NonZeroU32::new(u32::try_from(room).unwrap_or(u32::MAX)) else {
        anyhow::bail!(
            "the open-file limit (ulimit -n) is {nofile}, which leaves no descriptors for client \
             connections after the {reserved} kept for the database pools and the server's own \
             files; raise it above {reserved} (LimitNOFILE= under systemd)"
        );
    };
    match requested {
        None => Ok(allowed),
        Some(n) if n <= allowed => Ok(n),
        Some(n) => anyhow::bail!(
            "--max-connections {n} does not fit the open-file limit: ulimit -n is {nofile} and \
             {reserved} descriptors are kept for the database pools and the server's own files, \
             so at most {allowed} client connections can be open; lower --max-connections (or \
             leave it out to use {allowed}) or raise ulimit -n (LimitNOFILE= under systemd)"
        ),
    }
}

/// Serves `router` on `listener` under `limits` until `shutdown` is cancelled and every
/// connection has closed. Requests carry `ConnectInfo<SocketAddr>` (the rate limit keys on it),
/// as with `into_make_service_with_connect_info`.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ConnectionLimits,
    shutdown: CancellationToken,
) {
    let per_ip = Arc::new(PerIp::new(limits.max_per_ip));
    let total = Arc::new(Semaphore::new(
        limits
            .max_connections
            .map_or(Semaphore::MAX_PERMITS, |n| n.get() as usize),
    ));
    let mut at_cap = Occasional::default();
    let mut refusals = Occasional::default();
    let mut errors = AcceptErrors::default();
    let mut connections = JoinSet::new();
    loop {
        // Tasks that ended gave their permit back already; this only forgets them.
        while connections.try_join_next().is_some() {}
        // A place for one more connection before accepting it: at the cap the loop waits, and
        // new connections wait in the listen backlog, holding none of our descriptors.
        let permit = match total.clone().try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => {
                if let Some(times) = at_cap.occurred(Instant::now()) {
                    tracing::warn!(
                        max_connections = limits.max_connections.map(NonZeroU32::get),
                        times,
                        "connection cap reached (--max-connections): not accepting until a \
                         connection closes; next warning in a minute at the earliest"
                    );
                }
                tokio::select! {
                    () = shutdown.cancelled() => break,
                    permit = total.clone().acquire_owned() => {
                        permit.expect("the semaphore is never closed")
                    }
                }
            }
        };
        let accepted = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => {
                errors.succeeded();
                accepted
            }
            Err(e) => {
                let Some(pause) = errors.failed(&e, Instant::now()) else {
                    continue;
                };
                tokio::select! {
                    () = shutdown.cancelled() => break,
                    () = tokio::time::sleep(pause) => continue,
                }
            }
        };
        let Some(slot) = per_ip.admit(peer.ip()) else {
            if let Some(refused) = refusals.occurred(Instant::now()) {
                tracing::warn!(
                    client = %peer.ip(),
                    max_per_ip = limits.max_per_ip.get(),
                    refused,
                    "closed connections over the per-address limit (--max-connections-per-ip); \
                     next warning in a minute at the earliest"
                );
            }
            // Dropping the stream closes it at once: writing an answer would first mean reading
            // the request (or the client may see a reset instead), holding the descriptor the
            // cap exists to save.
            drop(stream);
            continue;
        };
        let connection = Connection {
            router: router.clone(),
            peer,
            limits,
            shutdown: shutdown.clone(),
            _slot: slot,
            _permit: permit,
        };
        connections.spawn(connection.run(stream));
    }
    drop(listener);
    while connections.join_next().await.is_some() {}
}

/// One accepted connection and what it holds until it closes.
struct Connection {
    router: Router,
    peer: SocketAddr,
    limits: ConnectionLimits,
    shutdown: CancellationToken,
    _slot: Slot,
    _permit: OwnedSemaphorePermit,
}

impl Connection {
    async fn run(self, stream: TcpStream) {
        let clock = Arc::new(ConnectionClock::new(self.limits, Instant::now()));
        let io = TokioIo::new(Watched {
            inner: stream,
            clock: clock.clone(),
        });
        let service = Tracked {
            router: self.router,
            peer: self.peer,
            clock: clock.clone(),
        };
        let mut builder = http1::Builder::new();
        // Our clock keeps the header deadline; hyper's would also cut idle keep-alive
        // connections at the header bound (it restarts after every response).
        builder.header_read_timeout(None);
        // A request head may use 16 KiB of buffer (hyper's default is about 400 KiB): a thousand
        // connections sending large unfinished heads pinned half a gigabyte. Heads are small
        // here (a bearer token, an App GUID); the body limit is separate.
        builder.max_buf_size(16 * 1024);
        let conn = builder.serve_connection(io, service);
        tokio::pin!(conn);
        let mut draining = false;
        loop {
            let deadline = clock.deadline();
            let expiry = async {
                match deadline {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                served = conn.as_mut() => {
                    if let Err(e) = served {
                        tracing::debug!(peer = %self.peer, error = %e, "connection ended with an error");
                    }
                    return;
                }
                () = expiry => {
                    if let Some(why) = clock.expired(Instant::now()) {
                        tracing::debug!(peer = %self.peer, "closing the connection: {why}");
                        return;
                    }
                }
                // A new deadline: the first byte of a head arrived, or a response's last frame
                // was queued.
                () = clock.moved.notified() => {}
                () = self.shutdown.cancelled(), if !draining => {
                    draining = true;
                    // Idle connections close now; a request in flight is answered first.
                    conn.as_mut().graceful_shutdown();
                }
            }
        }
    }
}

/// The deadline of one connection, moved by what hyper reads and serves.
struct ConnectionClock {
    limits: ConnectionLimits,
    /// True between requests, read without locking on every read of the socket.
    idle: AtomicBool,
    state: Mutex<ClockState>,
    /// Woken when a deadline is set that the connection task may not be waiting for yet.
    moved: Notify,
}

#[derive(Debug)]
struct ClockState {
    in_flight: usize,
    phase: Phase,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Receiving a request head, which must be complete by then.
    Head(Instant),
    /// Waiting for the next request until then.
    Idle(Instant),
    /// A request is being answered: no deadline.
    Busy,
}

impl ConnectionClock {
    fn new(limits: ConnectionLimits, accepted: Instant) -> Self {
        Self {
            limits,
            idle: AtomicBool::new(false),
            state: Mutex::new(ClockState {
                in_flight: 0,
                phase: Phase::Head(accepted + limits.header_read_timeout),
            }),
            moved: Notify::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ClockState> {
        // Every update leaves the state whole, so a panic elsewhere cannot leave it torn.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn deadline(&self) -> Option<Instant> {
        match self.lock().phase {
            Phase::Head(at) | Phase::Idle(at) => Some(at),
            Phase::Busy => None,
        }
    }

    /// Why the connection must close, if its deadline has passed.
    fn expired(&self, now: Instant) -> Option<&'static str> {
        match self.lock().phase {
            Phase::Head(at) if now >= at => Some("request head not received in time"),
            Phase::Idle(at) if now >= at => Some("idle past the idle timeout"),
            _ => None,
        }
    }

    /// Bytes arrived: on an idle connection they begin a request head, whose deadline starts now.
    fn bytes_read(&self, now: Instant) {
        if !self.idle.swap(false, Ordering::AcqRel) {
            return;
        }
        let mut state = self.lock();
        if let Phase::Idle(_) = state.phase {
            state.phase = Phase::Head(now + self.limits.header_read_timeout);
            drop(state);
            self.moved.notify_one();
        }
    }

    /// hyper has the complete head and calls the application.
    fn request_started(&self) {
        self.idle.store(false, Ordering::Release);
        let mut state = self.lock();
        state.in_flight += 1;
        state.phase = Phase::Busy;
    }

    /// hyper dropped the response body, its last frame queued for writing (or the request was
    /// abandoned): the connection waits for the next request.
    /// (Bytes of a pipelined next request that hyper already buffered count as idle time, not
    /// head time; the idle timeout still bounds them.)
    fn request_finished(&self, now: Instant) {
        let mut state = self.lock();
        state.in_flight = state.in_flight.saturating_sub(1);
        if state.in_flight == 0 {
            state.phase = Phase::Idle(now + self.limits.idle_timeout);
            self.idle.store(true, Ordering::Release);
            drop(state);
            // The connection task may be waiting without a deadline (it looked while busy).
            self.moved.notify_one();
        }
    }
}

/// The socket, telling the clock when bytes arrive.
struct Watched {
    inner: TcpStream,
    clock: Arc<ConnectionClock>,
}

impl AsyncRead for Watched {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let read = Pin::new(&mut this.inner).poll_read(cx, buf);
        if matches!(read, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            this.clock.bytes_read(Instant::now());
        }
        read
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// The router as hyper's service: adds the peer address and marks the request in flight until
/// hyper drops its response body (after queueing the last frame, maybe before flushing it).
struct Tracked {
    router: Router,
    peer: SocketAddr,
    clock: Arc<ConnectionClock>,
}

impl hyper::service::Service<Request<Incoming>> for Tracked {
    type Response = Response<TrackedBody>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn call(&self, mut req: Request<Incoming>) -> Self::Future {
        self.clock.request_started();
        let in_flight = InFlight(self.clock.clone());
        req.extensions_mut().insert(ConnectInfo(self.peer));
        let answer = self.router.clone().oneshot(req);
        Box::pin(async move {
            let response = answer.await?;
            Ok(response.map(|inner| TrackedBody {
                inner,
                _in_flight: in_flight,
            }))
        })
    }
}

/// Ends a request's in-flight time when dropped: with its response body once its last frame is
/// queued, or with the request's future when the connection goes first.
struct InFlight(Arc<ConnectionClock>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.request_finished(Instant::now());
    }
}

/// A response body that keeps its request in flight until hyper drops it.
struct TrackedBody {
    inner: Body,
    _in_flight: InFlight,
}

impl hyper::body::Body for TrackedBody {
    type Data = axum::body::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.get_mut().inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        // Exact hints become Content-Length.
        self.inner.size_hint()
    }
}

/// Open connections per client address.
struct PerIp {
    max: u32,
    open: Mutex<HashMap<IpAddr, u32>>,
}

/// The address a connection counts against: IPv4 addresses (also when mapped into IPv6) one by
/// one, IPv6 by /64, the block a single host or home network usually receives whole.
pub(crate) fn client_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let prefix = u128::from(v6) & !(u128::from(u64::MAX));
            IpAddr::V6(Ipv6Addr::from(prefix))
        }
        v4 => v4,
    }
}

impl PerIp {
    fn new(max: NonZeroU32) -> Self {
        Self {
            max: max.get(),
            open: Mutex::new(HashMap::new()),
        }
    }

    /// A slot for one more connection from `ip`, or `None` when it holds the maximum.
    fn admit(self: &Arc<Self>, ip: IpAddr) -> Option<Slot> {
        let key = client_key(ip);
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        let count = open.entry(key).or_insert(0);
        if *count >= self.max {
            return None;
        }
        *count += 1;
        Some(Slot {
            table: self.clone(),
            key,
        })
    }
}

/// One admitted connection; gives its place back when the connection closes.
struct Slot {
    table: Arc<PerIp>,
    key: IpAddr,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut open = self
            .table
            .open
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(count) = open.get_mut(&self.key) {
            *count -= 1;
            if *count == 0 {
                // Addresses without connections are forgotten: the table stays as small as the
                // set of connected clients.
                open.remove(&self.key);
            }
        }
    }
}

/// How often a repeated condition is logged at most.
const WARN_EVERY: Duration = Duration::from_secs(60);

/// A condition logged at WARN at most once a minute, with how often it occurred since the last
/// warning: clients (or an outage) decide how often it occurs, not the log's reader.
#[derive(Debug, Default)]
struct Occasional {
    since_warning: u64,
    last_warning: Option<Instant>,
}

impl Occasional {
    /// Counts one occurrence at `now`; when a warning is due, the count it reports (this one
    /// included), which starts over.
    fn occurred(&mut self, now: Instant) -> Option<u64> {
        self.since_warning += 1;
        if self
            .last_warning
            .is_some_and(|last| now.duration_since(last) < WARN_EVERY)
        {
            return None;
        }
        self.last_warning = Some(now);
        Some(std::mem::take(&mut self.since_warning))
    }
}

/// Backoff and logging for failed accepts.
#[derive(Debug)]
struct AcceptErrors {
    pause: Duration,
    warnings: Occasional,
}

impl Default for AcceptErrors {
    fn default() -> Self {
        Self {
            pause: Self::FIRST_PAUSE,
            warnings: Occasional::default(),
        }
    }
}

impl AcceptErrors {
    const FIRST_PAUSE: Duration = Duration::from_millis(10);
    const MAX_PAUSE: Duration = Duration::from_secs(1);

    /// A connection was accepted: the next failure starts a fresh backoff.
    fn succeeded(&mut self) {
        self.pause = Self::FIRST_PAUSE;
    }

    /// How long to pause after `e`: `None` to accept again at once, when only that connection
    /// failed (reset or aborted before we took it); otherwise the process or system is short of
    /// something (EMFILE, ENFILE, ENOBUFS, ENOMEM) that only closing connections gives back, and
    /// retrying at once would spin.
    fn failed(&mut self, e: &io::Error, now: Instant) -> Option<Duration> {
        if is_connection_error(e) {
            return None;
        }
        if let Some(failures) = self.warnings.occurred(now) {
            tracing::warn!(
                error = %e,
                failures,
                "cannot accept connections; backing off (up to 1 s between attempts), \
                 next warning in a minute at the earliest"
            );
        }
        let pause = self.pause;
        self.pause = (self.pause * 2).min(Self::MAX_PAUSE);
        Some(pause)
    }
}

/// Failures of one incoming connection that `accept(2)` reports; the next accept may succeed.
fn is_connection_error(e: &io::Error) -> bool {
    use io::ErrorKind::{
        ConnectionAborted, ConnectionRefused, ConnectionReset, HostUnreachable, Interrupted,
        NetworkDown, NetworkUnreachable,
    };
    matches!(
        e.kind(),
        ConnectionAborted
            | ConnectionRefused
            | ConnectionReset
            | Interrupted
            | HostUnreachable
            | NetworkDown
            | NetworkUnreachable
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(header: u64, idle: u64) -> ConnectionLimits {
        ConnectionLimits {
            header_read_timeout: Duration::from_secs(header),
            idle_timeout: Duration::from_secs(idle),
            max_per_ip: NonZeroU32::new(2).unwrap(),
            max_connections: None,
        }
    }

    #[test]
    fn a_head_is_timed_from_accept_then_from_its_first_byte_never_from_later_bytes() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let clock = ConnectionClock::new(limits(10, 60), t0);
        assert_eq!(clock.deadline(), Some(t0 + s(10)));
        // Bytes of the first head do not extend its deadline.
        clock.bytes_read(t0 + s(5));
        assert_eq!(clock.deadline(), Some(t0 + s(10)));
        assert!(clock.expired(t0 + s(10)).is_some());

        clock.request_started();
        assert_eq!(
            clock.deadline(),
            None,
            "no deadline while a request is answered"
        );
        assert!(clock.expired(t0 + s(1000)).is_none());
        clock.request_finished(t0 + s(20));
        assert_eq!(clock.deadline(), Some(t0 + s(80)), "idle timeout");
        // The next request's first byte starts its own head deadline…
        clock.bytes_read(t0 + s(30));
        assert_eq!(clock.deadline(), Some(t0 + s(40)));
        // …which later bytes do not move.
        clock.bytes_read(t0 + s(39));
        assert_eq!(clock.deadline(), Some(t0 + s(40)));
        assert_eq!(
            clock.expired(t0 + s(40)),
            Some("request head not received in time")
        );
    }

    #[test]
    fn the_cap_counts_ipv4_addresses_and_ipv6_slash_64s_and_frees_closed_slots() {
        let table = Arc::new(PerIp::new(NonZeroU32::new(2).unwrap()));
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let a_mapped: IpAddr = "::ffff:192.0.2.1".parse().unwrap();
        let first = table.admit(a).unwrap();
        let _second = table.admit(a_mapped).unwrap();
        assert!(table.admit(a).is_none(), "a third from the same address");
        assert!(table.admit("192.0.2.2".parse().unwrap()).is_some());
        drop(first);
        assert!(
            table.admit(a).is_some(),
            "a closed connection frees its slot"
        );

        let v6a: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let v6b: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        let v6c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        let _x = table.admit(v6a).unwrap();
        let _y = table.admit(v6b).unwrap();
        assert!(table.admit(v6a).is_none(), "one /64 shares the cap");
        assert!(table.admit(v6c).is_some(), "another /64 has its own");
    }

    #[test]
    fn the_table_forgets_addresses_without_connections() {
        let table = Arc::new(PerIp::new(NonZeroU32::new(3).unwrap()));
        let slots: Vec<Slot> = (1..=50u8)
            .filter_map(|i| table.admit(IpAddr::from([198, 51, 100, i])))
            .collect();
        assert_eq!(table.open.lock().unwrap().len(), 50);
        drop(slots);
        assert!(table.open.lock().unwrap().is_empty());
    }

    #[test]
    fn failed_accepts_back_off_exponentially_and_warn_once_a_minute() {
        let t0 = Instant::now();
        let emfile = io::Error::from_raw_os_error(24);
        let mut errors = AcceptErrors::default();
        let pauses: Vec<Duration> = (0..10)
            .map(|i| {
                errors
                    .failed(&emfile, t0 + Duration::from_millis(i))
                    .unwrap()
            })
            .collect();
        assert_eq!(pauses[0], Duration::from_millis(10));
        assert_eq!(pauses[1], Duration::from_millis(20));
        assert_eq!(pauses[9], Duration::from_secs(1), "capped at 1 s");
        assert_eq!(
            errors.warnings.last_warning,
            Some(t0),
            "only the first one warned"
        );
        assert_eq!(
            errors.warnings.since_warning, 9,
            "the rest are counted for the next"
        );

        errors.succeeded();
        let pause = errors.failed(&emfile, t0 + Duration::from_secs(61));
        assert_eq!(pause, Some(Duration::from_millis(10)), "a fresh backoff");
        assert_eq!(
            errors.warnings.last_warning,
            Some(t0 + Duration::from_secs(61))
        );
        assert_eq!(errors.warnings.since_warning, 0);

        let reset = io::Error::from(io::ErrorKind::ConnectionAborted);
        assert_eq!(errors.failed(&reset, t0), None, "one connection's failure");
    }

    #[test]
    fn a_warning_is_due_at_most_once_a_minute_and_reports_the_count_since_the_last() {
        let t0 = Instant::now();
        let mut warnings = Occasional::default();
        assert_eq!(warnings.occurred(t0), Some(1), "the first occurrence warns");
        for i in 1..=4 {
            assert_eq!(warnings.occurred(t0 + Duration::from_secs(i)), None);
        }
        assert_eq!(
            warnings.occurred(t0 + WARN_EVERY),
            Some(5),
            "a minute later, with the four since and this one"
        );
        assert_eq!(warnings.occurred(t0 + WARN_EVERY), None);
    }

    #[test]
    fn the_total_cap_is_what_the_open_file_limit_leaves_and_refuses_more() {
        let n = |v| NonZeroU32::new(v).unwrap();
        assert_eq!(cap_under(None, 1024, 90).unwrap(), n(934));
        assert_eq!(cap_under(Some(n(500)), 1024, 90).unwrap(), n(500));
        assert_eq!(cap_under(Some(n(934)), 1024, 90).unwrap(), n(934));
        let over = cap_under(Some(n(935)), 1024, 90).unwrap_err().to_string();
        assert!(
            over.contains("--max-connections 935 does not fit")
                && over.contains("ulimit -n is 1024")
                && over.contains("at most 934"),
            "{over}"
        );
        let none = cap_under(None, 90, 90).unwrap_err().to_string();
        assert!(none.contains("raise it above 90"), "{none}");
        assert_eq!(cap_under(None, u64::MAX, 90).unwrap(), n(u32::MAX));
    }

    /// A served loopback listener: its address and the task running `serve`.
    async fn serving(limits: ConnectionLimits) -> (SocketAddr, tokio::task::JoinHandle<()>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let router = Router::new().route("/", axum::routing::get(|| async { "ok" }));
        let task = tokio::spawn(serve(listener, router, limits, CancellationToken::new()));
        (addr, task)
    }

    /// A keep-alive connection that has been answered once (so the server has accepted it).
    async fn answered(addr: SocketAddr) -> TcpStream {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream
            .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let mut buf = [0u8; 256];
        let n = stream.read(&mut buf).await.unwrap();
        assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
        stream
    }

    #[tokio::test]
    async fn aborting_serve_drops_its_connections() {
        use tokio::io::AsyncReadExt;
        let (addr, task) = serving(ConnectionLimits::default()).await;
        let mut stream = answered(addr).await;
        task.abort();
        let _ = task.await;
        // Idle for 60 s otherwise: only the aborted loop can have closed it.
        let mut buf = [0u8; 16];
        let read = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buf)).await;
        assert!(
            matches!(read, Ok(Ok(0) | Err(_))),
            "a connection outlived its aborted serve: {read:?}"
        );
    }

    #[tokio::test]
    async fn at_the_total_cap_the_next_connection_waits_until_one_closes() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let limits = ConnectionLimits {
            max_connections: NonZeroU32::new(2),
            ..ConnectionLimits::default()
        };
        let (addr, task) = serving(limits).await;
        let first = answered(addr).await;
        let _second = answered(addr).await;
        // The handshake completes in the kernel's backlog; nobody reads the request.
        let mut third = TcpStream::connect(addr).await.unwrap();
        third
            .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let mut buf = [0u8; 256];
        let early = tokio::time::timeout(Duration::from_millis(500), third.read(&mut buf)).await;
        assert!(early.is_err(), "served over the cap: {early:?}");
        drop(first);
        let n = tokio::time::timeout(Duration::from_secs(10), third.read(&mut buf))
            .await
            .expect("served once a connection closed")
            .unwrap();
        assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
        task.abort();
    }
}
