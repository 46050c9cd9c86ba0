//! A private `redis-server` for the tests that kill and restart Redis;
//! shared by `tests/idempotency_redis` and `tests/idempotency_server`.
#![allow(dead_code, unreachable_pub)]

use std::process::{Child, Command, Stdio};

/// A private redis-server on 127.0.0.1, killed when dropped.
pub struct Server {
    child: Child,
}

impl Server {
    /// Starts `bin` on `port`, without persistence.
    pub fn start(bin: &str, port: u16) -> Self {
        let child = Command::new(bin)
            .args(["--port", &port.to_string()])
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("cannot start redis-server");
        Self { child }
    }

    /// Kills the server (SIGKILL) and reaps it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// `REDIS_SERVER_BIN`, or `redis-server` on the `PATH`; `None` (with a note)
/// when there is none, which fails under CI (`.ci/run` installs it).
pub fn redis_server_bin() -> Option<String> {
    let bin = std::env::var("REDIS_SERVER_BIN")
        .ok()
        .filter(|b| !b.is_empty())
        .or_else(|| {
            let path = std::env::var_os("PATH")?;
            std::env::split_paths(&path)
                .map(|d| d.join("redis-server"))
                .find(|p| p.is_file())
                .map(|p| p.to_string_lossy().into_owned())
        });
    if bin.is_none() {
        assert!(
            std::env::var_os("CI").is_none(),
            "redis-server is missing under CI: .ci/run must install it"
        );
        eprintln!("note: no redis-server, skipping the kill/restart test");
    }
    bin
}

/// A private server on a free port, and the binary and port that start it
/// again after a kill; `None` as for [`redis_server_bin`].
pub fn start_private() -> Option<(String, u16, Server)> {
    let bin = redis_server_bin()?;
    let port = free_port();
    let server = Server::start(&bin, port);
    Some((bin, port, server))
}

/// A loopback port that was free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
