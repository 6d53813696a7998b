//! A TCP proxy between the server and a service it depends on (PostgreSQL
//! now, Redis later), to lose the link on purpose: [`Proxy::cut`] closes
//! every open connection and refuses new ones, [`Proxy::restore`] lets
//! them through again. Plain threads and blocking sockets, so it works the
//! same under any test runtime.

use std::io;
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

pub struct Proxy {
    /// Where clients connect instead of the target.
    pub addr: SocketAddr,
    shared: Arc<Shared>,
}

struct Shared {
    target: SocketAddr,
    /// `false` while cut: connections are accepted and closed at once.
    open: AtomicBool,
    stopped: AtomicBool,
    /// Both ends of every forwarded connection, to close them on a cut.
    links: Mutex<Vec<(TcpStream, TcpStream)>>,
}

impl Proxy {
    /// Listens on a free local port and forwards to `target`.
    pub fn start(target: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind proxy");
        let addr = listener.local_addr().expect("proxy address");
        let shared = Arc::new(Shared {
            target,
            open: AtomicBool::new(true),
            stopped: AtomicBool::new(false),
            links: Mutex::new(Vec::new()),
        });
        let s = shared.clone();
        std::thread::spawn(move || {
            for client in listener.incoming() {
                if s.stopped.load(Ordering::Acquire) {
                    break;
                }
                let Ok(client) = client else { continue };
                if !s.open.load(Ordering::Acquire) {
                    let _ = client.shutdown(Shutdown::Both);
                    continue;
                }
                if let Err(e) = forward(&s, client) {
                    eprintln!("proxy to {}: {e}", s.target);
                }
            }
        });
        Proxy { addr, shared }
    }

    /// Closes every open connection and refuses new ones, like a database
    /// that went away.
    pub fn cut(&self) {
        self.shared.open.store(false, Ordering::Release);
        close_all(&self.shared);
    }

    /// Lets connections through again.
    pub fn restore(&self) {
        self.shared.open.store(true, Ordering::Release);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.shared.stopped.store(true, Ordering::Release);
        close_all(&self.shared);
        // Wakes the accepting thread so that it sees `stopped`.
        let _ = TcpStream::connect(self.addr);
    }
}

fn forward(shared: &Shared, client: TcpStream) -> io::Result<()> {
    let server = TcpStream::connect(shared.target)?;
    client.set_nodelay(true)?;
    server.set_nodelay(true)?;
    pump(client.try_clone()?, server.try_clone()?);
    pump(server.try_clone()?, client.try_clone()?);
    let mut links = shared.links.lock().unwrap_or_else(|p| p.into_inner());
    links.push((client, server));
    Ok(())
}

/// Copies `from` to `to` until either end closes, then closes both.
fn pump(mut from: TcpStream, mut to: TcpStream) {
    std::thread::spawn(move || {
        let _ = io::copy(&mut from, &mut to);
        let _ = from.shutdown(Shutdown::Both);
        let _ = to.shutdown(Shutdown::Both);
    });
}

fn close_all(shared: &Shared) {
    let links = std::mem::take(&mut *shared.links.lock().unwrap_or_else(|p| p.into_inner()));
    for (a, b) in links {
        let _ = a.shutdown(Shutdown::Both);
        let _ = b.shutdown(Shutdown::Both);
    }
}
