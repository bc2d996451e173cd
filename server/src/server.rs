//! [`AIOServer`], its [`ServerHandle`], and the [`Handler`] every request goes to.
//!
//! `start` binds, spawns the worker pool, runs the event loop on the calling thread until a
//! shutdown, then joins the workers. Everything the loop and the workers share is in `Shared` (`shared.rs`).

use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use plugin_api::{Request, Response};

use crate::Limits;
use crate::bulkhead::Bulkheads;
use crate::clock::Clock;
use crate::control::{self, ControlMsg};
use crate::event_loop::{EventLoop, ReloadHook};
use crate::handler::Handler;
use crate::pool::Queue;
use crate::shared::{LoopStats, Shared};
use crate::watchdog::Watchdog;
use crate::workers::Workers;

/// How long shutdown waits, after the drain timeout, for workers that are not inside a handler.
const STOP_GRACE: Duration = Duration::from_millis(500);

/// An HTTP/1.1 server: one event loop thread and a pool of worker threads.
///
/// ```no_run
/// use mini_async_http::{AIOServer, ResponseBuilder};
///
/// let server = AIOServer::new(3, "127.0.0.1:7878", |_request| {
///     ResponseBuilder::empty_200().body(b"Hello").build().unwrap()
/// });
/// server.start().unwrap();
/// ```
pub struct AIOServer {
    workers: usize,
    addr: String,
    handler: Arc<dyn Handler>,
    limits: Limits,
    /// Run by the loop on `ControlMsg::Reload`; taken when the loop starts.
    reload: Mutex<Option<ReloadHook>>,
    /// A socket that already listens, used instead of binding `addr`; taken when the server starts.
    listener: Mutex<Option<std::net::TcpListener>>,
    /// The bulkheads the handler puts requests in.
    bulkheads: Arc<Bulkheads>,
    life: Arc<Lifecycle>,
}

impl AIOServer {
    /// A server with `workers` worker threads that will listen on `addr` (`"0.0.0.0:7878"`, or
    /// port 0 for any free port) and answer every request with `handler`.
    pub fn new<F>(workers: usize, addr: impl ToString, handler: F) -> AIOServer
    where
        F: Fn(&Request<'_>) -> Response + Send + Sync + 'static,
    {
        AIOServer::with_handler(workers, addr, Arc::new(handler))
    }

    /// Like [`new`](Self::new), for a handler that is already shared.
    pub fn with_handler(
        workers: usize,
        addr: impl ToString,
        handler: Arc<dyn Handler>,
    ) -> AIOServer {
        AIOServer {
            workers: workers.max(1),
            addr: addr.to_string(),
            handler,
            limits: Limits::default(),
            reload: Mutex::new(None),
            listener: Mutex::new(None),
            bulkheads: Arc::new(Bulkheads::new()),
            life: Arc::new(Lifecycle::default()),
        }
    }

    /// Uses `bulkheads`, the table the handler takes its bulkheads from, so that the watchdog
    /// sees them and their default limits follow the worker count.
    pub fn with_bulkheads(mut self, bulkheads: Arc<Bulkheads>) -> AIOServer {
        self.bulkheads = bulkheads;
        self
    }

    /// Serves on `listener`, a socket that already listens (one inherited from a parent process,
    /// say), instead of binding the address given to [`new`](Self::new).
    pub fn with_listener(self, listener: std::net::TcpListener) -> AIOServer {
        *self.listener.lock().unwrap_or_else(|e| e.into_inner()) = Some(listener);
        self
    }

    /// Replaces the default [`Limits`].
    pub fn with_limits(mut self, limits: Limits) -> AIOServer {
        self.limits = limits;
        self
    }

    /// Sets what the event loop does with [`ServerHandle::reload`]: the hook runs on the loop
    /// thread, so it must only hand the work to another thread.
    pub fn on_reload(self, hook: impl FnMut(u64) + Send + 'static) -> AIOServer {
        *self.reload.lock().unwrap_or_else(|e| e.into_inner()) = Some(Box::new(hook));
        self
    }

    /// A handle to wait for the server to be ready and to shut it down, from any thread.
    pub fn handle(&self) -> ServerHandle {
        ServerHandle {
            life: Arc::clone(&self.life),
        }
    }

    /// Binds, starts the workers and runs the event loop on this thread until
    /// [`ServerHandle::shutdown`]; then finishes the requests in flight and returns.
    ///
    /// # Errors
    /// The address does not resolve or cannot be bound (the error names it), the server was
    /// already started, or the poller fails. After a shutdown, an error of kind `TimedOut` says
    /// that handlers were still running when the drain timeout passed (and names them): the
    /// server returned without them.
    pub fn start(&self) -> io::Result<()> {
        {
            let mut phase = self.life.lock();
            match *phase {
                Phase::New => *phase = Phase::Starting { stop: false },
                Phase::ShutdownRequested => {
                    *phase = Phase::Stopped;
                    self.life.changed.notify_all();
                    return Ok(());
                }
                _ => return Err(io::Error::other("the server was already started")),
            }
        }
        let result = self.run();
        let mut phase = self.life.lock();
        *phase = match &result {
            Ok(()) => Phase::Stopped,
            Err(e) => Phase::Failed(e.to_string()),
        };
        self.life.changed.notify_all();
        result
    }

    fn run(&self) -> io::Result<()> {
        let given = self
            .listener
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        let listener = match given {
            Some(listener) => {
                listener.set_nonblocking(true)?;
                listener
            }
            None => bind(&self.addr)?,
        };
        let listener = mio::net::TcpListener::from_std(listener);
        let local = listener.local_addr()?;
        let (sender, receiver) = control::channel()?;
        let poll = mio::Poll::new()?;
        let shared = Arc::new(Shared {
            handler: Arc::clone(&self.handler),
            limits: ArcSwap::from_pointee(self.limits.clone()),
            clock: Clock::new(),
            queue: Queue::default(),
            control: sender,
            closed: Mutex::default(),
            registry: poll.registry().try_clone()?,
            draining: AtomicBool::new(false),
            stats: LoopStats::default(),
            bulkheads: Arc::clone(&self.bulkheads),
            workers: Workers::default(),
            workers_wanted: self.workers,
            buffered: Arc::default(),
        });
        self.bulkheads.set_workers(self.workers);
        let reload = self.reload.lock().unwrap_or_else(|e| e.into_inner()).take();
        let event_loop = EventLoop::new(poll, listener, receiver, Arc::clone(&shared), reload)?;
        for _ in 0..self.workers {
            if let Err(e) = shared.workers.spawn(&shared) {
                shared.queue.stop();
                return Err(e);
            }
        }
        let watchdog = match Watchdog::spawn(Arc::clone(&shared)) {
            Ok(w) => w,
            Err(e) => {
                shared.queue.stop();
                return Err(e);
            }
        };
        tracing::info!(addr = %local, workers = self.workers, "listening");
        {
            let mut phase = self.life.lock();
            if matches!(*phase, Phase::Starting { stop: true }) {
                // Shutdown was asked for while starting: the loop reads it first thing.
                shared.control.send(ControlMsg::Shutdown)?;
            }
            *phase = Phase::Running {
                addr: local,
                shared: Arc::clone(&shared),
            };
        }
        self.life.changed.notify_all();
        let result = event_loop.run();
        shared.queue.stop();
        let stuck = shared.workers.wait_stopped(STOP_GRACE);
        drop(watchdog);
        self.bulkheads.clear();
        result?;
        still_running(&shared, &stuck)?;
        tracing::info!(addr = %local, "stopped");
        Ok(())
    }
}

impl Drop for AIOServer {
    /// Shuts a running server down as [`ServerHandle::shutdown`] does. (A server that is running
    /// cannot be dropped by the thread that started it, but one shared with other threads can.)
    fn drop(&mut self) {
        let phase = self.life.lock();
        if matches!(*phase, Phase::Running { .. }) {
            drop(phase);
            self.handle().shutdown();
        }
    }
}

/// Controls a server from any thread. Cheap to clone.
#[derive(Clone)]
pub struct ServerHandle {
    life: Arc<Lifecycle>,
}

impl ServerHandle {
    /// Blocks until the server accepts connections, and returns the address it listens on.
    ///
    /// # Errors
    /// The server failed to start (the error says why), or stopped before it was ready.
    pub fn ready(&self) -> io::Result<SocketAddr> {
        let mut phase = self.life.lock();
        loop {
            match &*phase {
                Phase::Running { addr, .. } => return Ok(*addr),
                Phase::Failed(why) => return Err(io::Error::other(why.clone())),
                Phase::Stopped => return Err(io::Error::other("the server has stopped")),
                _ => {
                    phase = self
                        .life
                        .changed
                        .wait(phase)
                        .unwrap_or_else(|e| e.into_inner())
                }
            }
        }
    }

    /// Graceful shutdown: stop accepting, finish every request already received, close the idle
    /// connections, join the workers. Blocks until done. Do not call it from a handler (it would
    /// wait for itself): use [`begin_shutdown`](Self::begin_shutdown) there.
    pub fn shutdown(&self) {
        self.begin_shutdown();
        let mut phase = self.life.lock();
        while !matches!(*phase, Phase::Stopped | Phase::Failed(_) | Phase::New) {
            phase = self
                .life
                .changed
                .wait(phase)
                .unwrap_or_else(|e| e.into_inner());
        }
    }

    /// Starts a graceful shutdown and returns at once.
    pub fn begin_shutdown(&self) {
        let mut phase = self.life.lock();
        match &mut *phase {
            Phase::New => *phase = Phase::ShutdownRequested,
            Phase::Starting { stop } => *stop = true,
            Phase::Running { shared, .. } => {
                if let Err(e) = shared.control.send(ControlMsg::Shutdown) {
                    tracing::error!(error = %e, "could not reach the event loop to shut down");
                }
            }
            _ => {}
        }
    }

    /// The server's counters, while it runs.
    pub fn stats(&self) -> Option<ServerStats> {
        match &*self.life.lock() {
            Phase::Running { shared, .. } => Some(ServerStats {
                open_connections: shared.stats.open.load(Ordering::Relaxed),
                accepted_total: shared.stats.accepted.load(Ordering::Relaxed),
                queue_depth: shared.queue.len(),
                refused_busy_total: shared.stats.refused_busy.load(Ordering::Relaxed),
                lost_workers: shared.workers.lost(),
                needs_replacement: shared.workers.exhausted(shared.max_lost_workers()),
            }),
            _ => None,
        }
    }

    /// Replaces the limits of a running server. Connections pick them up on their next turn.
    ///
    /// # Errors
    /// The server is not running.
    pub fn set_limits(&self, limits: Limits) -> io::Result<()> {
        match &*self.life.lock() {
            Phase::Running { shared, .. } => {
                shared.limits.store(Arc::new(limits));
                Ok(())
            }
            _ => Err(io::Error::other("the server is not running")),
        }
    }

    /// Asks the event loop to run its reload hook with `tag` (see [`AIOServer::on_reload`]).
    ///
    /// # Errors
    /// The server is not running.
    pub fn reload(&self, tag: u64) -> io::Result<()> {
        match &*self.life.lock() {
            Phase::Running { shared, .. } => shared.control.send(ControlMsg::Reload(tag)),
            _ => Err(io::Error::other("the server is not running")),
        }
    }
}

/// Names the handler calls still running when the server stopped, one line each. Calls still in
/// time (their clients never got an answer) make the error `start` returns; threads written off
/// earlier (their clients got a 504) are only named.
fn still_running(shared: &Shared, stuck: &[Arc<crate::running::Record>]) -> io::Result<()> {
    let now = shared.clock.now();
    let mut unanswered = Vec::new();
    for record in stuck {
        let Some(call) = record.claim(None) else {
            let what = record.lost_what().unwrap_or_else(|| "a handler".into());
            tracing::warn!(
                "shutdown: {what} is still running after it was written off; stopping without it"
            );
            continue;
        };
        let plugin = shared.bulkheads.by_id(call.bulkhead);
        let plugin = plugin.as_ref().map_or("-", |b| b.name());
        let ran_ms = now.saturating_sub(call.started);
        tracing::error!(
            plugin,
            request = %call.request,
            ran_ms,
            "shutdown: the drain timeout passed with this request still running; stopping anyway"
        );
        unanswered.push(format!(
            "plugin {plugin}: {} (running for {ran_ms} ms)",
            call.request
        ));
        // Should the handler ever return, its worker drops the connection and ends.
        record.written_off(call.bulkhead, String::new());
    }
    if unanswered.is_empty() {
        return Ok(());
    }
    Err(io::Error::new(
        io::ErrorKind::TimedOut,
        format!(
            "stopped with {} request(s) still running: {}",
            unanswered.len(),
            unanswered.join("; ")
        ),
    ))
}

/// A snapshot of a running server's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ServerStats {
    /// Connections open now.
    pub open_connections: usize,
    /// Connections accepted since the start.
    pub accepted_total: u64,
    /// Connections waiting for a worker now.
    pub queue_depth: usize,
    /// Connections answered `503` because the queue was full.
    pub refused_busy_total: u64,
    /// Worker threads stuck in a handler past its deadline now.
    pub lost_workers: usize,
    /// More workers are stuck than `max_lost_workers`: the pool is short, and only a new process
    /// gets it back.
    pub needs_replacement: bool,
}

/// Where a server is in its life, for its handles.
#[derive(Default)]
struct Lifecycle {
    phase: Mutex<Phase>,
    changed: Condvar,
}

impl Lifecycle {
    fn lock(&self) -> std::sync::MutexGuard<'_, Phase> {
        self.phase.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[derive(Default)]
enum Phase {
    #[default]
    New,
    /// Shutdown was asked for before `start`: `start` returns at once.
    ShutdownRequested,
    /// Binding and spawning; `stop` when shutdown was asked for meanwhile.
    Starting {
        stop: bool,
    },
    Running {
        addr: SocketAddr,
        shared: Arc<Shared>,
    },
    Stopped,
    Failed(String),
}

/// Binds a non-blocking listener, with errors that name the address.
///
/// The backlog is 4096, so that a burst of connections waits in the kernel rather than being
/// refused. `TCP_NODELAY` is set on the listener: Linux hands it down to every accepted socket,
/// which saves a `setsockopt` per connection (elsewhere the loop sets it on each socket).
pub(crate) fn bind(addr: &str) -> io::Result<std::net::TcpListener> {
    bind_with(addr, false)
}

/// [`bind`], with `SO_REUSEPORT` when `reuse_port`: several processes (several hosts) may then
/// listen on the same port, and the kernel spreads new connections over them.
pub(crate) fn bind_with(addr: &str, reuse_port: bool) -> io::Result<std::net::TcpListener> {
    let named = |e: io::Error| io::Error::new(e.kind(), format!("cannot listen on {addr}: {e}"));
    let mut last = io::Error::new(
        io::ErrorKind::InvalidInput,
        "the address resolves to nothing",
    );
    for resolved in addr.to_socket_addrs().map_err(named)? {
        let listen = || -> io::Result<std::net::TcpListener> {
            let domain = socket2::Domain::for_address(resolved);
            let socket = socket2::Socket::new(domain, socket2::Type::STREAM, None)?;
            socket.set_reuse_address(true)?;
            if reuse_port {
                socket.set_reuse_port(true)?;
            }
            socket.set_tcp_nodelay(true)?;
            socket.set_nonblocking(true)?;
            socket.bind(&resolved.into())?;
            socket.listen(4096)?;
            Ok(socket.into())
        };
        match listen() {
            Ok(listener) => return Ok(listener),
            Err(e) => last = e,
        }
    }
    Err(named(last))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg(target_os = "linux")]
    fn accepted_sockets_inherit_tcp_nodelay() {
        let listener = bind("127.0.0.1:0").unwrap();
        let _client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let accepted = loop {
            match listener.accept() {
                Ok((stream, _)) => break stream,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => std::thread::yield_now(),
                Err(e) => panic!("{e}"),
            }
        };
        assert!(accepted.nodelay().unwrap());
    }
}
