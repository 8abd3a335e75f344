//! A throwaway PostgreSQL cluster for tests and benchmarks: `initdb` in a
//! temporary directory, `pg_ctl start` on a free loopback port, stopped and
//! removed on drop. PostgreSQL refuses to run as root, so as root the
//! cluster runs as the `postgres` user (via `su`).
//!
//! It fails loudly: a cluster that cannot start is an error with the
//! server's log, never a silent skip.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error(
        "PostgreSQL binaries not found (looked for `{0}` on PATH and in /usr/lib/postgresql/*/bin); install PostgreSQL (Debian: apt-get install postgresql)"
    )]
    NotInstalled(&'static str),
    #[error("starting a PostgreSQL cluster: {0}")]
    Start(String),
    #[error("io error on `{path}`: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
}

/// How to run the cluster.
#[derive(Clone, Debug, Default)]
pub struct ClusterOptions {
    /// Keep `fsync` on (benchmarks); off, the cluster is fast and a crash of
    /// the machine may lose it, which for a test's cluster is fine.
    pub durable: bool,
    /// Serve TLS (`ssl=on`) with this certificate and key.
    pub tls: Option<ClusterTls>,
}

/// The server certificate (chain, PEM) and private key (PEM) of a cluster
/// that speaks TLS.
#[derive(Clone)]
pub struct ClusterTls {
    pub cert_pem: String,
    pub key_pem: String,
}

impl std::fmt::Debug for ClusterTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterTls").finish_non_exhaustive()
    }
}

/// A running throwaway cluster; stopped and deleted on drop.
#[derive(Debug)]
pub struct TempCluster {
    dir: tempfile::TempDir,
    bin: PathBuf,
    port: u16,
    as_postgres: bool,
}

fn find_bin(name: &'static str) -> Result<PathBuf, ClusterError> {
    if let Some(path) = std::env::var_os("PATH") {
        for d in std::env::split_paths(&path) {
            if d.join(name).is_file() {
                return Ok(d);
            }
        }
    }
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|rd| {
            rd.filter_map(Result::ok)
                .map(|e| e.path().join("bin"))
                .filter(|b| b.join(name).is_file())
                .collect()
        })
        .unwrap_or_default();
    found.sort();
    found.pop().ok_or(ClusterError::NotInstalled(name))
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> ClusterError + '_ {
    move |source| ClusterError::Io {
        path: path.display().to_string(),
        source,
    }
}

fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

fn free_port() -> Result<u16, ClusterError> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(io(Path::new("127.0.0.1:0")))?;
    l.local_addr()
        .map(|a| a.port())
        .map_err(io(Path::new("127.0.0.1:0")))
}

impl TempCluster {
    /// Initializes and starts a cluster; waits until it accepts connections.
    pub fn start(opts: ClusterOptions) -> Result<TempCluster, ClusterError> {
        let bin = find_bin("initdb")?;
        for tool in ["pg_ctl", "postgres"] {
            if !bin.join(tool).is_file() {
                return Err(ClusterError::NotInstalled(if tool == "pg_ctl" {
                    "pg_ctl"
                } else {
                    "postgres"
                }));
            }
        }
        let as_postgres = is_root();
        let dir = tempfile::Builder::new()
            .prefix("postvault-pg-")
            .tempdir()
            .map_err(io(&std::env::temp_dir()))?;
        let cluster = TempCluster {
            dir,
            bin,
            port: 0,
            as_postgres,
        };
        if as_postgres {
            let st = Command::new("chown")
                .arg("postgres:")
                .arg(cluster.dir.path())
                .status()
                .map_err(io(cluster.dir.path()))?;
            if !st.success() {
                return Err(ClusterError::Start(
                    "cannot hand the cluster directory to the `postgres` user (is there one?)"
                        .into(),
                ));
            }
        }
        let data = cluster.data_dir();
        cluster
            .sh(&format!(
                "{} -D {} -A trust -U postgres -E UTF8 --locale=C --no-sync >{} 2>&1",
                quote(&cluster.bin.join("initdb").display().to_string()),
                quote(&data.display().to_string()),
                quote(&cluster.dir.path().join("initdb.log").display().to_string()),
            ))
            .map_err(|e| {
                ClusterError::Start(format!("initdb: {e}: {}", cluster.log("initdb.log")))
            })?;
        // A cluster without fsync says so to the stores, which refuse such a
        // server unless it declares it (`danger_allow_fsync_off`).
        let fsync = if opts.durable {
            "on"
        } else {
            "off -c postvault.danger_allow_fsync_off=on"
        };
        let ssl = match &opts.tls {
            Some(t) => cluster.write_tls(t)?,
            None => String::new(),
        };
        let mut last = String::new();
        let mut cluster = cluster;
        for _ in 0..5 {
            let port = free_port()?;
            let server_opts = format!(
                "-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync={fsync} -c max_connections=200 -c shared_buffers=128MB{ssl}",
                cluster.dir.path().display()
            );
            let r = cluster.sh(&format!(
                "{} -D {} -o {} -l {} -w -t 30 start >/dev/null 2>&1",
                quote(&cluster.bin.join("pg_ctl").display().to_string()),
                quote(&data.display().to_string()),
                quote(&server_opts),
                quote(&cluster.dir.path().join("server.log").display().to_string()),
            ));
            match r {
                Ok(()) => {
                    cluster.port = port;
                    cluster.wait_ready()?;
                    return Ok(cluster);
                }
                Err(e) => last = format!("{e}: {}", cluster.log("server.log")),
            }
        }
        Err(ClusterError::Start(last))
    }

    /// A cluster shared by every caller in this process that holds one:
    /// started on the first call, stopped when the last holder drops it
    /// (tests running side by side share one instead of one each).
    pub fn shared(opts: ClusterOptions) -> Result<std::sync::Arc<TempCluster>, ClusterError> {
        static SHARED: std::sync::Mutex<std::sync::Weak<TempCluster>> =
            std::sync::Mutex::new(std::sync::Weak::new());
        let mut slot = SHARED.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(c) = slot.upgrade() {
            return Ok(c);
        }
        let c = std::sync::Arc::new(TempCluster::start(opts)?);
        *slot = std::sync::Arc::downgrade(&c);
        Ok(c)
    }

    /// Writes the certificate and key beside the cluster (the key mode
    /// 0600 and owned by the server's user, as PostgreSQL demands); returns
    /// the server options that turn TLS on.
    fn write_tls(&self, tls: &ClusterTls) -> Result<String, ClusterError> {
        use std::os::unix::fs::PermissionsExt;
        let cert = self.dir.path().join("server.crt");
        let key = self.dir.path().join("server.key");
        std::fs::write(&cert, &tls.cert_pem).map_err(io(&cert))?;
        std::fs::write(&key, &tls.key_pem).map_err(io(&key))?;
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).map_err(io(&key))?;
        if self.as_postgres {
            let st = Command::new("chown")
                .arg("postgres:")
                .args([&cert, &key])
                .status()
                .map_err(io(&key))?;
            if !st.success() {
                return Err(ClusterError::Start(
                    "cannot hand the TLS key to the `postgres` user".into(),
                ));
            }
        }
        Ok(format!(
            " -c ssl=on -c ssl_cert_file={} -c ssl_key_file={}",
            cert.display(),
            key.display()
        ))
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn log(&self, name: &str) -> String {
        let s = std::fs::read_to_string(self.dir.path().join(name)).unwrap_or_default();
        let tail: Vec<&str> = s.lines().rev().take(20).collect();
        tail.into_iter().rev().collect::<Vec<_>>().join("\n")
    }

    /// Runs a shell command, as `postgres` when we are root.
    fn sh(&self, cmd: &str) -> Result<(), String> {
        let st = if self.as_postgres {
            Command::new("su")
                .args(["postgres", "-s", "/bin/sh", "-c", cmd])
                .status()
        } else {
            Command::new("/bin/sh").args(["-c", cmd]).status()
        };
        match st {
            Ok(s) if s.success() => Ok(()),
            Ok(s) => Err(format!("exited with {s}")),
            Err(e) => Err(e.to_string()),
        }
    }

    fn wait_ready(&self) -> Result<(), ClusterError> {
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(30) {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Err(ClusterError::Start(format!(
            "the server did not accept connections within 30 s: {}",
            self.log("server.log")
        )))
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The URL of database `db` (`postgres` exists from the start).
    pub fn url(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{db}", self.port)
    }

    /// Creates database `name` (lowercase letters, digits, `_`); returns its URL.
    pub fn create_database(&self, name: &str) -> Result<String, ClusterError> {
        if name.is_empty()
            || !name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        {
            return Err(ClusterError::Start(format!("bad database name `{name}`")));
        }
        let url = self.url("postgres");
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(io(Path::new(&url)))?;
        rt.block_on(async {
            let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await?;
            let conn = tokio::spawn(conn);
            client
                .batch_execute(&format!("CREATE DATABASE {name}"))
                .await?;
            drop(client);
            let _ = conn.await;
            Ok::<_, tokio_postgres::Error>(())
        })
        .map_err(|e| ClusterError::Start(format!("CREATE DATABASE {name}: {e}")))?;
        Ok(self.url(name))
    }
}

impl Drop for TempCluster {
    fn drop(&mut self) {
        if self.port != 0 {
            let _ = self.sh(&format!(
                "{} -D {} -m immediate -w stop >/dev/null 2>&1",
                quote(&self.bin.join("pg_ctl").display().to_string()),
                quote(&self.data_dir().display().to_string()),
            ));
        }
    }
}
