//! systemd's readiness protocol (`Type=notify`): `READY=1` once storage is open and the
//! listeners are bound, `STOPPING=1` when shutdown begins. Without `$NOTIFY_SOCKET` (not
//! under systemd) these do nothing.

fn send(state: &str) {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let socket = match std::os::unix::net::UnixDatagram::unbound() {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "cannot notify systemd");
            return;
        }
    };
    let bytes = path.as_encoded_bytes();
    let result = if let Some(name) = bytes.strip_prefix(b"@") {
        // An abstract socket address (Linux).
        use std::os::linux::net::SocketAddrExt;
        std::os::unix::net::SocketAddr::from_abstract_name(name)
            .and_then(|addr| socket.send_to_addr(state.as_bytes(), &addr))
    } else {
        socket.send_to(state.as_bytes(), &path)
    };
    if let Err(e) = result {
        tracing::warn!(error = %e, "cannot notify systemd");
    }
}

/// Tells systemd the service is ready.
pub fn ready() {
    send("READY=1");
}

/// Tells systemd the service is stopping.
pub fn stopping() {
    send("STOPPING=1");
}
