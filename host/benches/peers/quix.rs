//! Quix Streams, the Python peer: a venv of its own (created on first use), and
//! `quix_wordcount.py` run as a subprocess for each word-count run.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::wordcount::Control;

/// The Quix Streams release the figures are for.
const QUIX_REQUIREMENT: &str = "quixstreams==3.28.*";
/// How long Python may take to import Quix and build the application.
const START_TIMEOUT: Duration = Duration::from_secs(120);
/// How long Quix gets to exit after SIGTERM before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(20);

/// `$HOME/.cache/wasp/quix-venv`, outside the clone so every clone on the machine shares it.
fn venv_dir() -> Result<PathBuf> {
    let home = std::env::var_os("HOME").context("HOME is not set")?;
    Ok(PathBuf::from(home).join(".cache/wasp/quix-venv"))
}

/// The installed Quix Streams version, if `python` can import it.
fn installed(python: &Path) -> Option<String> {
    let out = Command::new(python)
        .args(["-c", "import quixstreams; print(quixstreams.__version__)"])
        .stderr(Stdio::null())
        .output()
        .ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

fn run_checked(cmd: &mut Command) -> Result<()> {
    let status = cmd.status().with_context(|| format!("running {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed: {status}");
    }
    Ok(())
}

/// The venv's Python with Quix Streams importable (creating the venv and installing Quix into
/// it when they are missing), and the Quix version.
pub fn python() -> Result<(PathBuf, String)> {
    let dir = venv_dir()?;
    let python = dir.join("bin/python");
    if let Some(v) = installed(&python) {
        return Ok((python, v));
    }
    println!("  installing {QUIX_REQUIREMENT} into {} (once)", dir.display());
    if !python.exists() {
        run_checked(Command::new("python3").arg("-m").arg("venv").arg(&dir))
            .context("creating the Quix venv (Debian: apt-get install python3-venv)")?;
    }
    run_checked(Command::new(dir.join("bin/pip")).args(["install", "--quiet", QUIX_REQUIREMENT]))
        .context("installing Quix Streams from PyPI")?;
    let version = installed(&python).context("Quix Streams installed but does not import")?;
    Ok((python, version))
}

/// One Quix run's arguments.
pub struct QuixRun<'a> {
    pub python: &'a Path,
    pub bootstrap: &'a str,
    pub input: &'a str,
    pub output: &'a str,
    pub group: &'a str,
    /// Quix's state directory and its log (stderr).
    pub dir: &'a Path,
}

/// Runs the Quix word count until `control` says stop. The clock starts when the script says
/// `ready` (Python and Quix imported, the application built), as wasp's starts once its
/// manifest is prepared.
pub fn run(q: &QuixRun<'_>, control: &Control) -> Result<()> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/peers/quix_wordcount.py");
    let log_path = q.dir.join("quix.log");
    let log = std::fs::File::create(&log_path).with_context(|| format!("creating {}", log_path.display()))?;
    let mut child = Command::new(q.python)
        .arg(&script)
        .args(["--broker", q.bootstrap, "--input", q.input, "--output", q.output, "--group", q.group])
        .arg("--state-dir")
        .arg(q.dir.join("state"))
        .stdout(Stdio::piped())
        .stderr(log)
        .spawn()
        .with_context(|| format!("starting {}", script.display()))?;
    let result = supervise(&mut child, control, &log_path);
    terminate(&mut child)?;
    result
}

/// Waits for `ready`, then watches the process until `control` says stop.
fn supervise(child: &mut Child, control: &Control, log: &Path) -> Result<()> {
    let stdout = child.stdout.take().context("Quix's stdout")?;
    // Read on a thread of its own, so a script that hangs before `ready` can still be stopped;
    // the thread ends when the process does.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = tx.send(BufReader::new(stdout).read_line(&mut line).map(|_| line));
    });
    let started = Instant::now();
    let line = loop {
        match rx.recv_timeout(Duration::from_millis(50)) {
            Ok(line) => break line.context("reading Quix's stdout")?,
            Err(_) if control.stopped() => return Ok(()),
            Err(_) if started.elapsed() > START_TIMEOUT => bail!("Quix did not start within {START_TIMEOUT:?}"),
            Err(_) => {}
        }
    };
    if line.trim() != "ready" {
        bail!("Quix did not start (said {:?}); its log:\n{}", line.trim(), tail(log));
    }
    control.ready();
    while !control.stopped() {
        if let Some(status) = child.try_wait()? {
            bail!("Quix exited ({status}) before it was stopped; its log:\n{}", tail(log));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

/// SIGTERM (Quix commits and exits), then SIGKILL after a grace period.
fn terminate(child: &mut Child) -> Result<()> {
    if child.try_wait()?.is_some() {
        return Ok(());
    }
    let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
    let t = Instant::now();
    while t.elapsed() < STOP_GRACE {
        if child.try_wait()?.is_some() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.kill().context("killing Quix")?;
    child.wait()?;
    Ok(())
}

/// The last lines of a log, for an error message.
fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}
