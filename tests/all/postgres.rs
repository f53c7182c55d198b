//! A throwaway PostgreSQL server (Debian's, installed by `make setup`) for tests that need data
//! to outlive the broker: nisshi's PostgreSQL storage engine keeps topics and committed offsets
//! there, so a broker killed with -9 and started again on the same database has them back.
//!
//! `initdb` into a temporary directory, one server on a free port of 127.0.0.1 (its socket in
//! that directory), trust authentication; stopped and deleted on drop. PostgreSQL refuses to run
//! as root: as root, the server runs as the `postgres` user the package creates.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A running PostgreSQL server.
pub struct Postgres {
    bin: PathBuf,
    port: u16,
    dir: tempfile::TempDir,
    as_postgres: bool,
}

impl Postgres {
    pub fn start() -> Postgres {
        let bin = binaries();
        let as_postgres = is_root();
        // Under /tmp (the `postgres` user cannot enter root's home), owned by whoever runs it.
        let dir = tempfile::Builder::new().prefix("wasp-pg").tempdir_in("/tmp").expect("a directory for PostgreSQL");
        if as_postgres {
            run(Command::new("chown").args(["postgres:postgres"]).arg(dir.path()), "chown");
        }
        let data = dir.path().join("data");
        let mut pg = Postgres { bin, port: crate::broker::Broker::free_port(), dir, as_postgres };
        let initdb = pg.bin.join("initdb");
        pg.run_pg(
            &initdb,
            &["-U", "postgres", "--auth=trust", "-E", "UTF8", "--locale=C.UTF-8", "--no-sync", "-D"],
            &data,
        );
        let options = format!(
            "-c listen_addresses=127.0.0.1 -p {} -k {} -c fsync=off -c synchronous_commit=off",
            pg.port,
            pg.dir.path().display()
        );
        let log = pg.dir.path().join("postgres.log");
        let pg_ctl = pg.bin.join("pg_ctl");
        let log_arg = log.to_str().expect("UTF-8").to_owned();
        pg.run_pg(&pg_ctl, &["-w", "-t", "60", "-l", &log_arg, "-o", &options, "start", "-D"], &data);
        pg
    }

    /// The URL nisshi's `--storage-engine` takes.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    fn run_pg(&mut self, program: &Path, args: &[&str], data: &Path) -> Output {
        let mut c = if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(program);
            c
        } else {
            Command::new(program)
        };
        c.args(args).arg(data).current_dir(self.dir.path());
        run(&mut c, &program.display().to_string())
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let data = self.dir.path().join("data");
        let pg_ctl = self.bin.join("pg_ctl");
        let mut c = if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&pg_ctl);
            c
        } else {
            Command::new(&pg_ctl)
        };
        let _ = c.args(["-m", "immediate", "-w", "stop", "-D"]).arg(&data).output();
    }
}

/// Debian's newest PostgreSQL binaries, or a failure that says how to get them.
fn binaries() -> PathBuf {
    let root = Path::new("/usr/lib/postgresql");
    let newest = std::fs::read_dir(root)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str().and_then(|v| v.parse::<u32>().ok()))
        .max();
    match newest.map(|v| root.join(v.to_string()).join("bin")) {
        Some(bin) if bin.join("initdb").is_file() => bin,
        _ => panic!(
            "the broker-restart test needs Debian's PostgreSQL server in /usr/lib/postgresql/*/bin: \
             run `make setup` (it installs the `postgresql` package)"
        ),
    }
}

fn is_root() -> bool {
    Command::new("id").arg("-u").output().is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

fn run(c: &mut Command, what: &str) -> Output {
    let out = c.output().unwrap_or_else(|e| panic!("running {what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}
