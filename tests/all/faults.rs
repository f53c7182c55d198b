//! Broker faults: a broker that is down when wasp starts is a clear error in the log, tried
//! again with backoff until it comes up; then the pipeline runs by itself. A broker killed
//! with -9 in the middle of a run and started again (its data kept in PostgreSQL) loses
//! nothing, and processing resumes by itself. A changelog read that finds the broker away
//! waits for it instead of ending the run.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::broker::Broker;

const INPUT: &str = "streams-plaintext-input";
const OUTPUT: &str = "streams-wordcount-output";

#[test]
fn a_broker_down_at_start_is_reported_and_retried_until_it_comes_up() {
    let port = Broker::free_port();
    let dir = tempfile::tempdir().expect("a temporary directory");
    let template = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/data/kafka/wordcount.toml");
    let plugins = Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugins/build");
    let plugins = plugins.canonicalize().unwrap_or(plugins);
    let text = std::fs::read_to_string(&template)
        .expect("the manifest template")
        .replace("@BOOTSTRAP@", &format!("127.0.0.1:{port}"))
        .replace("@PLUGINS@", plugins.to_str().expect("UTF-8"))
        .replace("@STATE_DIR@", dir.path().join("state").to_str().expect("UTF-8"))
        .replace("@BATCH_SIZE@", "16");
    let manifest = dir.path().join("wordcount.toml");
    std::fs::write(&manifest, text).expect("writing the manifest");

    let mut wasp = crate::recovery::start("wasp-no-broker", &manifest);
    wasp.wait_logged("cannot reach the Kafka cluster", Duration::from_secs(60));
    let error = wasp.log_lines().into_iter().find(|l| l.contains("cannot reach the Kafka cluster")).expect("the error");
    assert!(error.contains(&format!("127.0.0.1:{port}")), "the error names the address: {error}");
    assert!(error.contains("retrying in"), "the error says it retries: {error}");

    // The broker comes up: wasp connects by itself and counts.
    let broker = Broker::start_on(port);
    broker.create_topics(&[INPUT, OUTPUT], 1);
    let mut reader = broker.reader(&[OUTPUT]);
    broker.produce(INPUT, &[(None::<&str>, "a b a"), (None, "c a")]);
    let t = Instant::now();
    let done = reader.read_until(Duration::from_secs(120), |records| {
        records.iter().any(|r| r.key_str() == "a" && r.value_str() == "3")
    });
    wasp.assert_running();
    assert!(done, "the count of `a` reached 3 after {:?}: {} outputs", t.elapsed(), reader.records.len());
    assert!(wasp.logged("the Kafka cluster answers"), "wasp says it reached the cluster");
    wasp.terminate();
    assert!(wasp.wait_exit(Duration::from_secs(60)).success(), "wasp exits cleanly on SIGTERM");
}

/// nisshi keeps its topics and the group's offsets in Debian's PostgreSQL (started here); the
/// broker is killed with -9 while wasp counts, and started again on the same database a few
/// seconds later. wasp rides it out by itself, and under exactly_once every word's counts
/// 1..N are each written once: nothing lost, nothing repeated.
#[test]
fn a_broker_killed_and_restarted_mid_run_loses_nothing_and_processing_resumes() {
    use crate::chaos::{INPUT as LINES, OUTPUT as COUNTS, check, converged, expected, manifest, produce_lines};
    const LINES_EACH_HALF: usize = 1500;
    let pg = crate::postgres::Postgres::start();
    let port = Broker::free_port();
    let broker = Broker::start_stored(port, &pg.url());
    broker.create_topics(&[LINES, COUNTS], 3);
    let dir = tempfile::tempdir().expect("a temporary directory");
    let manifest = manifest(dir.path(), &broker, 0, "exactly_once");
    let mut wasp = crate::recovery::start("wasp-broker-restart", &manifest);
    produce_lines(&broker, 0..LINES_EACH_HALF);

    // Mid-run: some counts are out, most of the first half is still to be counted.
    let mut reader = broker.reader(&[COUNTS]);
    assert!(
        reader.read_until(Duration::from_secs(120), |r| r.len() >= 200),
        "wasp started counting: {} outputs",
        reader.records.len()
    );
    drop(reader);
    broker.kill();
    let down = Instant::now();
    std::thread::sleep(Duration::from_secs(3));
    wasp.assert_running();
    let broker = Broker::start_stored(port, &pg.url());
    eprintln!("broker restarted after {:.1} s down", down.elapsed().as_secs_f64());
    produce_lines(&broker, LINES_EACH_HALF..2 * LINES_EACH_HALF);

    // Every word reaches its final count, read by a new reader from the topic's start: what
    // was written before the kill survived it.
    let want = expected(2 * LINES_EACH_HALF);
    let mut reader = broker.reader(&[COUNTS]);
    let converged = reader.read_until(Duration::from_secs(180), |records| converged(records, &want));
    wasp.assert_running();
    assert!(converged, "the counts converged after the broker restart: {} outputs read", reader.records.len());
    reader.drain(Duration::from_secs(2), Duration::from_secs(30));
    let (lost, duplicated) = check(&reader.records, &want);
    eprintln!("broker restart: records checked {}, lost {lost}, duplicated {duplicated}", reader.records.len());
    assert_eq!((lost, duplicated), (0, 0), "nothing lost or repeated across the broker restart");
    wasp.terminate();
    assert!(wasp.wait_exit(Duration::from_secs(60)).success(), "wasp exits cleanly on SIGTERM");
}

/// A changelog read (a restore, a task's exactly-once start) that finds every broker away,
/// for longer than one request's timeout, waits for them and reads the whole changelog once
/// they are back: a broker restarting under a running pipeline ends nothing.
#[test]
fn a_changelog_read_waits_for_a_broker_that_is_away_and_reads_it_all() {
    use wasp_host::io::ChangelogReader;
    const CHANGELOG: &str = "away-changelog";
    let pg = crate::postgres::Postgres::start();
    let port = Broker::free_port();
    let broker = Broker::start_stored(port, &pg.url());
    broker.create_topics(&[CHANGELOG], 1);
    let values: Vec<String> = (0..100).map(|i| format!("v{i}")).collect();
    let records: Vec<(Option<String>, &str)> = values.iter().map(|v| (Some(v.clone()), v.as_str())).collect();
    broker.produce(CHANGELOG, &records);
    let config = broker.config();
    broker.kill();

    let url = pg.url();
    let restart = std::thread::spawn(move || {
        // Longer than the reader's 10 s request timeout: the first answer it waits for fails.
        std::thread::sleep(Duration::from_secs(12));
        Broker::start_stored(port, &url)
    });
    let mut reader = wasp_host::io::kafka::KafkaChangelogReader::new(&config, "away").expect("a changelog reader");
    let mut read = Vec::new();
    let t = Instant::now();
    reader
        .read(CHANGELOG, 0, (0, None), &mut |offset, r| {
            read.push((offset, String::from_utf8_lossy(&r.value.unwrap_or_default()).into_owned()));
            Ok(())
        })
        .expect("the read waits for the broker, and is not ended by its absence");
    let _broker = restart.join().expect("the broker restarted");
    eprintln!("changelog read after {:.1} s", t.elapsed().as_secs_f64());
    assert!(t.elapsed() >= Duration::from_secs(10), "the read waited for the broker: {:?}", t.elapsed());
    let want: Vec<(i64, String)> = values.into_iter().enumerate().map(|(i, v)| (i as i64, v)).collect();
    assert_eq!(read, want, "every entry once, in order");
}

/// A changelog read fails when it stalls, not when it is long: with a stall limit of 1 s, a
/// read whose entries take 2.4 s to apply (400 ms each) reads them all.
#[test]
fn a_changelog_read_longer_than_its_stall_limit_is_not_a_stalled_one() {
    use wasp_host::io::ChangelogReader;
    const CHANGELOG: &str = "slow-changelog";
    let broker = Broker::start();
    broker.create_topics(&[CHANGELOG], 1);
    let records: Vec<(Option<String>, String)> = (0..6).map(|i| (Some(format!("k{i}")), format!("v{i}"))).collect();
    broker.produce(CHANGELOG, &records);
    let mut reader = wasp_host::io::kafka::KafkaChangelogReader::new(&broker.config(), "slow")
        .expect("a changelog reader")
        .stalling_after(Duration::from_secs(1));
    let mut read = Vec::new();
    reader
        .read(CHANGELOG, 0, (0, None), &mut |offset, _| {
            std::thread::sleep(Duration::from_millis(400));
            read.push(offset);
            Ok(())
        })
        .expect("a read that progresses is not stuck");
    assert_eq!(read, (0..6).collect::<Vec<i64>>());
}

/// A small tmpfs mounted for the test's life (the disk-full test's state directory).
struct Tmpfs(std::path::PathBuf);

impl Tmpfs {
    fn mount(at: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(at).expect("the mount point");
        let out = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .output()
            .expect("running mount");
        assert!(
            out.status.success(),
            "the disk-full test mounts a small tmpfs, which needs root (or CAP_SYS_ADMIN): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Tmpfs(at.to_owned())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg("-l").arg(&self.0).output();
    }
}

/// Fills the file system of `dir` with `file` until a write fails for lack of space.
fn fill(file: &Path) -> u64 {
    use std::io::Write;
    let mut f = std::fs::File::create(file).expect("the filler file");
    let chunk = vec![0u8; 64 * 1024];
    let mut written = 0u64;
    loop {
        match f.write(&chunk) {
            Ok(0) => break,
            Ok(n) => written += n as u64,
            Err(e) if e.raw_os_error() == Some(28) => break,
            Err(e) => panic!("filling {}: {e}", file.display()),
        }
    }
    let _ = f.sync_all();
    written
}

/// RocksDB's disk fills up under a running word count: the task stops with an error that
/// says so, and nothing past the failure is committed; once space returns, a restart picks
/// up where the last commit left off and every count is written once (exactly_once).
#[test]
fn a_full_disk_stops_the_task_with_a_clear_error_and_a_restart_loses_nothing() {
    use crate::chaos::{INPUT as LINES, OUTPUT as COUNTS, check, converged, expected, manifest, produce_lines};
    const LINES_EACH_PART: usize = 600;
    let broker = Broker::start();
    broker.create_topics(&[LINES, COUNTS], 3);
    let dir = tempfile::tempdir().expect("a temporary directory");
    // The state directory of instance 0 (chaos::manifest's layout) is a 32 MiB tmpfs.
    let state = dir.path().join("state-0");
    let _disk = Tmpfs::mount(&state, "32m");
    let manifest = manifest(dir.path(), &broker, 0, "exactly_once");
    let mut wasp = crate::recovery::start("wasp-disk-full", &manifest);
    produce_lines(&broker, 0..LINES_EACH_PART);
    let mut reader = broker.reader(&[COUNTS]);
    let first = expected(LINES_EACH_PART);
    assert!(
        reader.read_until(Duration::from_secs(120), |r| r.len() as u64 >= first.values().sum::<u64>()),
        "the first part counted: {} outputs",
        reader.records.len()
    );

    // The disk fills up, and input keeps arriving: a commit soon cannot write the stores
    // (the write-ahead logs' pages in use still take a few small commits).
    let filler = state.join("filler");
    let filled = fill(&filler);
    let mut produced = LINES_EACH_PART;
    let stopped = Instant::now();
    let status = loop {
        if let Some(status) = wasp.try_exit() {
            break status;
        }
        assert!(produced < 3 * LINES_EACH_PART, "wasp still runs on a full disk after {produced} lines");
        produce_lines(&broker, produced..produced + 10);
        produced += 10;
        std::thread::sleep(Duration::from_millis(250));
    };
    assert!(!status.success(), "wasp stops with an error when its disk is full");
    let lines = wasp.log_lines();
    let error = lines.iter().find(|l| l.contains("No space left on device")).unwrap_or_else(|| {
        panic!("an error names the full disk; the log ends:\n{}", lines[lines.len().saturating_sub(15)..].join("\n"))
    });
    assert!(error.contains("writing its stores failed; no input offset is committed past it"), "{error}");
    eprintln!(
        "disk full after filling {filled} bytes; wasp stopped {:.1} s later, at line {produced}: {error}",
        stopped.elapsed().as_secs_f64()
    );

    // Space returns: a restart finishes the work.
    std::fs::remove_file(&filler).expect("removing the filler");
    let mut wasp = crate::recovery::start("wasp-disk-full-restart", &manifest);
    produce_lines(&broker, produced..4 * LINES_EACH_PART);
    let want = expected(4 * LINES_EACH_PART);
    let converged = reader.read_until(Duration::from_secs(180), |records| converged(records, &want));
    wasp.assert_running();
    assert!(converged, "the counts converged after the restart: {} outputs read", reader.records.len());
    reader.drain(Duration::from_secs(2), Duration::from_secs(30));
    let (lost, duplicated) = check(&reader.records, &want);
    eprintln!("disk full: records checked {}, lost {lost}, duplicated {duplicated}", reader.records.len());
    assert_eq!((lost, duplicated), (0, 0), "nothing lost or repeated across the full disk");
    wasp.terminate();
    assert!(wasp.wait_exit(Duration::from_secs(60)).success(), "wasp exits cleanly on SIGTERM");
}
