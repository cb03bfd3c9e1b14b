//! The listening socket, bound before anything else starts: a bad `server.bind` or a
//! port in use is then one clean start-up error naming the setting, with nothing to tear
//! down. Reuse-address so a restart does not wait for old connections' TIME_WAIT; a deep
//! backlog for bursts of gateway connections.

use std::io;
use std::net::{SocketAddr, TcpListener, ToSocketAddrs};

const BACKLOG: i32 = 4096;

/// Binds the first address `addr` resolves to that accepts the bind.
pub fn bind(addr: &str) -> io::Result<TcpListener> {
    let mut last = None;
    for a in addr.to_socket_addrs()? {
        match bind_one(a) {
            Ok(l) => return Ok(l),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no address")))
}

fn bind_one(a: SocketAddr) -> io::Result<TcpListener> {
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(a),
        socket2::Type::STREAM,
        Some(socket2::Protocol::TCP),
    )?;
    socket.set_reuse_address(true)?;
    socket.bind(&a.into())?;
    socket.listen(BACKLOG)?;
    socket.set_nonblocking(true)?;
    Ok(socket.into())
}
