//! Real Redis for the tests: `redis-server` processes on free loopback ports in a temp
//! dir (append-only files on), made into a cluster with `redis-cli --cluster create`
//! when asked, and killed — only they — when dropped. Without `redis-server` the tests
//! skip (and fail under `CI=true`).

use crate::helpers::system_binary;
use edgequota::store::redis::{open, RedisOptions};
use edgequota::store::Backend;
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Redis {
    pub ports: Vec<u16>,
    children: Vec<Child>,
    /// How each node was started (to restart it on its port and data).
    commands: Vec<Command>,
    _dir: tempfile::TempDir,
}

/// A port free for a node and for its cluster bus (port + 10000).
fn node_port() -> u16 {
    loop {
        let port = crate::helpers::free_port();
        if port < 50_000 && TcpListener::bind(("127.0.0.1", port + 10_000)).is_ok() {
            return port;
        }
    }
}

fn cli(port: u16, args: &[&str]) -> Option<String> {
    let out = Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .ok()?;
    Some(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn wait_for(what: &str, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !ready() {
        assert!(Instant::now() < deadline, "{what} never happened");
        std::thread::sleep(Duration::from_millis(50));
    }
}

impl Redis {
    /// `count` servers; a cluster with one replica per master when `cluster`.
    pub fn start(count: usize, cluster: bool) -> Option<Redis> {
        let server = system_binary("redis-server")?;
        system_binary("redis-cli")?;
        let dir = tempfile::tempdir().expect("temp dir");
        let ports: Vec<u16> = (0..count).map(|_| node_port()).collect();
        let mut children = Vec::new();
        let mut commands = Vec::new();
        for &port in &ports {
            let data = dir.path().join(port.to_string());
            std::fs::create_dir_all(&data).expect("node dir");
            let mut cmd = Command::new(&server);
            cmd.args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
                .args([
                    "--appendonly",
                    "yes",
                    "--appendfsync",
                    "always",
                    "--save",
                    "",
                ])
                .arg("--dir")
                .arg(&data)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null());
            if cluster {
                cmd.args(["--cluster-enabled", "yes", "--cluster-node-timeout", "2000"]);
            }
            children.push(cmd.spawn().expect("redis-server starts"));
            commands.push(cmd);
        }
        let redis = Redis {
            ports: ports.clone(),
            children,
            commands,
            _dir: dir,
        };
        for &port in &ports {
            wait_for("redis PONG", || {
                cli(port, &["PING"]).is_some_and(|o| o.contains("PONG"))
            });
        }
        if cluster {
            let nodes: Vec<String> = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
            let out = Command::new("redis-cli")
                .arg("--cluster")
                .arg("create")
                .args(&nodes)
                .args(["--cluster-replicas", "1", "--cluster-yes"])
                .stdin(Stdio::null())
                .output()
                .expect("redis-cli runs");
            assert!(
                out.status.success(),
                "cluster create: {}",
                String::from_utf8_lossy(&out.stdout)
            );
            for &port in &ports {
                wait_for("cluster_state:ok", || {
                    cli(port, &["CLUSTER", "INFO"]).is_some_and(|o| o.contains("cluster_state:ok"))
                });
            }
            // Every replica in sync, so a WAIT for one replica can be met.
            wait_for("replicas in sync", || {
                let synced = ports
                    .iter()
                    .filter(|&&p| {
                        cli(p, &["INFO", "replication"])
                            .is_some_and(|o| o.contains("master_link_status:up"))
                    })
                    .count();
                synced == count / 2
            });
        }
        Some(redis)
    }

    /// `kill -9` of node `i`.
    pub fn kill(&mut self, i: usize) {
        let _ = self.children[i].kill();
        let _ = self.children[i].wait();
    }

    /// Starts node `i` again on its port and data, and waits for it to answer.
    pub fn restart(&mut self, i: usize) {
        self.children[i] = self.commands[i].spawn().expect("redis-server restarts");
        let port = self.ports[i];
        wait_for("redis PONG after restart", || {
            cli(port, &["PING"]).is_some_and(|o| o.contains("PONG"))
        });
    }

    /// How the tests open the Redis backend on these servers.
    pub fn options(&self, wait_replicas: u32) -> RedisOptions {
        RedisOptions {
            urls: self.urls(),
            // Generous: the whole suite shares two cores with six Redis servers.
            timeout: Duration::from_secs(10),
            wait_replicas,
            wait_timeout: Duration::from_secs(5),
            request_retention_days: 35,
            debug_log_capacity: 100,
        }
    }

    /// The Redis backend on these servers, acknowledging without `WAIT`.
    pub async fn store(&self) -> Backend {
        open(self.options(0)).await.expect("connects")
    }

    pub fn urls(&self) -> Vec<String> {
        self.ports
            .iter()
            .map(|p| format!("redis://127.0.0.1:{p}"))
            .collect()
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
