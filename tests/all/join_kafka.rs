//! Tables and joins on the real broker: a table restored from its own topic by an instance
//! with no local state, and a stream-stream join killed with SIGKILL half-way.

use std::collections::BTreeSet;
use std::time::Duration;

use crate::broker::Broker;
use crate::common::plugin;
use crate::kafka::{START_TIMEOUT, plain_manifest, start_wasp};

/// A pipeline's text after `[pipelines.p]`: `body`, then the join kit.
fn with_join_kit(body: &str) -> String {
    format!("{body}\n[plugins.jk]\npath = \"{}\"\n", plugin("join-kit"))
}

/// A `[tables]` table's store has no changelog of its own: the table's topic is one. An
/// instance that starts on an empty state dir restores the table from the topic up to the
/// offset the group committed, and processes what follows as new: each click joins the user
/// as it was at the click, once.
#[test]
fn kafka_a_table_restores_from_its_own_topic_on_a_fresh_state_dir() {
    let broker = Broker::start();
    broker.create_topics(&["kt-users", "kt-clicks", "kt-out"], 1);
    let dir = tempfile::tempdir().expect("a temporary directory");
    let pipeline = with_join_kit(
        "from = \"kt-clicks\"\nto = \"kt-out\"\nsteps = [ { op = \"join\", table = \"users\", plugin = \"jk\" } ]\n\
         [tables.users]\ntopic = \"kt-users\"",
    );
    let settings = "threads = 1\nmax_task_idle_ms = 3000";
    let manifest = |state: &str| plain_manifest(dir.path(), &broker, state, "kt", settings, &pipeline);
    broker.produce_timed("kt-users", &[("u1", "alice", 1000), ("u2", "bob", 1001)]);
    broker.produce_timed("kt-clicks", &[("u1", "c1", 2000)]);
    let mut reader = broker.reader(&["kt-out"]);
    let mut first = start_wasp("wasp-kt-1", &manifest("state-1"));
    let got = reader.read_until(START_TIMEOUT, |r| {
        first.assert_running();
        !r.is_empty()
    });
    assert!(got, "the first click joined: {:#?}", first.log_lines());
    first.terminate();
    assert!(first.wait_exit(Duration::from_secs(60)).success(), "the first run stops cleanly");
    // While it is down, a user changes and two clicks come; the next instance has no state.
    broker.produce_timed("kt-users", &[("u1", "alicia", 3000)]);
    broker.produce_timed("kt-clicks", &[("u1", "c2", 4000), ("u2", "c3", 5000)]);
    let mut second = start_wasp("wasp-kt-2", &manifest("state-2"));
    let got = reader.read_until(START_TIMEOUT, |r| {
        second.assert_running();
        r.len() >= 3
    });
    reader.poll_for(Duration::from_secs(2));
    second.kill();
    assert!(got, "the clicks after the restart joined: {}", reader.records.len());
    let pairs: Vec<(&str, &str)> = reader.records.iter().map(|r| (r.key_str(), r.value_str())).collect();
    assert_eq!(pairs, [("u1", "u1:c1+alice"), ("u1", "u1:c2+alicia"), ("u2", "u2:c3+bob")]);
    assert!(
        second.log_lines().iter().any(|l| l.contains("store restored") && l.contains("users-store")),
        "the table came back from its topic: {:#?}",
        second.log_lines()
    );
}

/// A record to produce: key, value, timestamp.
type Timed = (String, String, i64);

/// Orders `o0…` one a second, payments half a second after two of every three; an order at
/// the end moves stream time past every window.
fn order_stream(range: std::ops::Range<u32>) -> (Vec<Timed>, Vec<Timed>) {
    const BASE: i64 = 1_700_000_000_000;
    let orders = range.clone().map(|i| (format!("o{i}"), format!("A{i}"), BASE + i64::from(i) * 1000)).collect();
    let payments = range
        .filter(|i| i % 3 != 0)
        .map(|i| (format!("o{i}"), format!("p{i}"), BASE + i64::from(i) * 1000 + 500))
        .collect();
    (orders, payments)
}

/// What a left join of `order_stream(range)` gives, by order: joined with its payment, or
/// alone for the unpaid (every third).
fn joined_orders(range: std::ops::Range<u32>) -> BTreeSet<(String, String)> {
    range
        .map(|i| {
            let paid = if i % 3 == 0 { "none".to_owned() } else { format!("p{i}") };
            (format!("o{i}"), format!("o{i}:A{i}+{paid}"))
        })
        .collect()
}

/// The join's results read so far, as `(key, value)`.
fn results(records: &[crate::broker::Received]) -> BTreeSet<(String, String)> {
    records.iter().map(|r| (r.key_str().to_owned(), r.value_str().to_owned())).collect()
}

/// A result of the far-later orders that close the windows: they close each other's too, so
/// alone they are right.
fn closing((k, v): &&(String, String)) -> bool {
    k.len() > 5 && *v == format!("{k}:A{}+none", &k[1..])
}

fn produce(broker: &Broker, topic: &str, records: &[Timed]) {
    let borrowed: Vec<(&str, &str, i64)> = records.iter().map(|(k, v, t)| (k.as_str(), v.as_str(), *t)).collect();
    broker.produce_timed(topic, &borrowed);
}

/// A left join killed with SIGKILL after some results, and restarted on an empty state dir:
/// both window stores and the unmatched orders come back from their changelogs, so every
/// order ends joined with its payment or, once its window closed, alone, and no order that
/// was paid comes out unpaid. (Output is at-least-once: a result may repeat after the kill.)
#[test]
fn kafka_a_stream_stream_join_killed_half_way_emits_every_result_after_a_restart() {
    let broker = Broker::start();
    broker.create_topics(&["ss-orders", "ss-payments", "ss-out"], 2);
    let dir = tempfile::tempdir().expect("a temporary directory");
    let pipeline = with_join_kit(
        "from = \"ss-orders\"\nto = \"ss-out\"\nsteps = [ { op = \"left_join\", stream = \"ss-payments\", plugin = \"jk\", \
         time_difference = \"2s\", grace = \"1s\" } ]",
    );
    let settings = "threads = 1\nmax_task_idle_ms = 2000\ncommit_interval_ms = 200\nbatch_size = 8";
    let manifest = |state: &str| plain_manifest(dir.path(), &broker, state, "ss", settings, &pipeline);
    let (orders, payments) = order_stream(0..60);
    produce(&broker, "ss-orders", &orders);
    produce(&broker, "ss-payments", &payments);
    let mut reader = broker.reader(&["ss-out"]);
    let mut first = start_wasp("wasp-ss-1", &manifest("state-1"));
    let got = reader.read_until(START_TIMEOUT, |r| {
        first.assert_running();
        r.len() >= 20
    });
    assert!(got, "results before the kill: {}", reader.records.len());
    first.kill();
    let (orders, payments) = order_stream(60..120);
    produce(&broker, "ss-orders", &orders);
    produce(&broker, "ss-payments", &payments);
    // One more order per partition's worth of keys, far later: every window closes.
    let (late, _) = order_stream(10_000..10_010);
    produce(&broker, "ss-orders", &late);
    let expected = joined_orders(0..120);
    let mut second = start_wasp("wasp-ss-2", &manifest("state-2"));
    let got = reader.read_until(START_TIMEOUT, |r| {
        second.assert_running();
        expected.is_subset(&results(r))
    });
    second.kill();
    let seen = results(&reader.records);
    let missing: Vec<_> = expected.difference(&seen).collect();
    let wrong: Vec<_> = seen.difference(&expected).filter(|r| !closing(r)).collect();
    assert!(got && missing.is_empty(), "results missing after the restart: {missing:?}");
    assert!(wrong.is_empty(), "results no uninterrupted run gives: {wrong:?}");
}

/// A global table on the broker: every partition of its topic, restored before the tasks
/// start and followed while they run, joined by a stream of another partition count.
#[test]
fn kafka_a_global_table_is_restored_at_start_and_followed_while_running() {
    let broker = Broker::start();
    broker.create_topics(&["gt-customers"], 2);
    broker.create_topics(&["gt-orders", "gt-out"], 1);
    let dir = tempfile::tempdir().expect("a temporary directory");
    let pipeline = format!(
        "{}[plugins.kit]\npath = \"{}\"\n",
        with_join_kit(
            "from = \"gt-orders\"\nto = \"gt-out\"\nsteps = [ { op = \"join\", table = \"customers\", \
             key_selector = \"kit\", plugin = \"jk\" } ]\n[global_tables.customers]\ntopic = \"gt-customers\"",
        ),
        plugin("test-kit")
    );
    let manifest = |state: &str| plain_manifest(dir.path(), &broker, state, "gt", "threads = 1", &pipeline);
    broker.produce("gt-customers", &[(Some("a"), "Alice"), (Some("b"), "Bob")]);
    let mut reader = broker.reader(&["gt-out"]);
    let mut wasp = start_wasp("wasp-gt-1", &manifest("state-1"));
    broker.produce("gt-orders", &[(Some("o1"), "a-book")]);
    let got = reader.read_until(START_TIMEOUT, |r| {
        wasp.assert_running();
        !r.is_empty()
    });
    assert!(got, "the first order joined: {:#?}", wasp.log_lines());
    // An update while running reaches the table; the next order sees it.
    broker.produce("gt-customers", &[(Some("b"), "Bobby")]);
    std::thread::sleep(Duration::from_secs(2));
    broker.produce("gt-orders", &[(Some("o2"), "b-pen")]);
    let got = reader.read_until(START_TIMEOUT, |r| {
        wasp.assert_running();
        r.len() >= 2
    });
    wasp.kill();
    assert!(got, "the second order joined");
    // A new instance with no local state restores the table before its tasks run.
    broker.produce("gt-orders", &[(Some("o3"), "b-cup")]);
    let mut second = start_wasp("wasp-gt-2", &manifest("state-2"));
    let got = reader.read_until(START_TIMEOUT, |r| {
        second.assert_running();
        r.len() >= 3
    });
    second.kill();
    assert!(got, "the third order joined after the restart");
    let pairs: Vec<(&str, &str)> = reader.records.iter().map(|r| (r.key_str(), r.value_str())).collect();
    assert_eq!(pairs, [("o1", "o1:a-book+Alice"), ("o2", "o2:b-pen+Bobby"), ("o3", "o3:b-cup+Bobby")]);
}

/// A foreign-key join killed with SIGKILL half-way, then fed changes of both tables (orders
/// moving to other customers, customers renamed) and restarted on an empty state dir: the
/// tables, the subscriptions and the result come back from their topics and changelogs, and
/// the result table ends as an uninterrupted run's: each order joined with its current
/// customer's current name.
#[test]
fn kafka_a_foreign_key_join_killed_half_way_ends_with_every_orders_current_customer() {
    let broker = Broker::start();
    broker.create_topics(&["fk-orders", "fk-customers", "fk-out"], 2);
    let dir = tempfile::tempdir().expect("a temporary directory");
    let pipeline = with_join_kit(
        "from = \"fk-orders\"\nto = \"fk-out\"\nsteps = [ { op = \"join\", table = \"fk-customers\", foreign_key = \"jk\", \
         plugin = \"jk\" }, { op = \"to_stream\" } ]\n[tables.fk-orders]\n[tables.fk-customers]",
    );
    let settings = "threads = 1\ncommit_interval_ms = 200\nbatch_size = 8";
    let manifest = |state: &str| plain_manifest(dir.path(), &broker, state, "fk", settings, &pipeline);
    let customers = |suffix: &str, range: std::ops::Range<u32>| -> Vec<(Option<String>, String)> {
        range.map(|c| (Some(format!("c{c}")), format!("name{c}{suffix}"))).collect()
    };
    broker.produce("fk-customers", &customers("", 0..10));
    let orders: Vec<(Option<String>, String)> =
        (0..60u32).map(|i| (Some(format!("o{i}")), format!("c{}/item{i}", i % 10))).collect();
    broker.produce("fk-orders", &orders);
    let mut reader = broker.reader(&["fk-out"]);
    let mut first = start_wasp("wasp-fk-1", &manifest("state-1"));
    let got = reader.read_until(START_TIMEOUT, |r| {
        first.assert_running();
        r.len() >= 20
    });
    assert!(got, "results before the kill: {} {:#?}", reader.records.len(), first.log_lines());
    first.kill();
    // While it is down: twenty orders move to the next customer, five customers are renamed.
    let moved: Vec<(Option<String>, String)> =
        (0..20u32).map(|i| (Some(format!("o{i}")), format!("c{}/item{i}", (i + 1) % 10))).collect();
    broker.produce("fk-orders", &moved);
    broker.produce("fk-customers", &customers("-v2", 0..5));
    let expected: std::collections::BTreeMap<String, String> = (0..60u32)
        .map(|i| {
            let c = if i < 20 { (i + 1) % 10 } else { i % 10 };
            let name = if c < 5 { format!("name{c}-v2") } else { format!("name{c}") };
            (format!("o{i}"), format!("o{i}:c{c}/item{i}+{name}"))
        })
        .collect();
    let table = |records: &[crate::broker::Received]| {
        let mut t = std::collections::BTreeMap::new();
        for r in records {
            if r.value.is_some() {
                t.insert(r.key_str().to_owned(), r.value_str().to_owned());
            } else {
                t.remove(r.key_str());
            }
        }
        t
    };
    let mut second = start_wasp("wasp-fk-2", &manifest("state-2"));
    let got = reader.read_until(START_TIMEOUT, |r| {
        second.assert_running();
        table(r) == expected
    });
    second.kill();
    let last = table(&reader.records);
    let differ: Vec<_> =
        expected.iter().filter(|(k, v)| last.get(*k) != Some(*v)).map(|(k, v)| (k, v, last.get(k))).collect();
    assert!(got, "the result table after the restart differs from an uninterrupted run's: {differ:?}");
}

/// Interactive queries across two instances of one application id (Kafka Streams'
/// `queryMetadataForKey` and `application.server`): each instance announces its tasks and
/// admin address; either one says which instance hosts a key, answers the keys it hosts,
/// and redirects a query for another's key there. When one instance leaves, the other takes
/// its partitions, and answers for every key.
#[test]
fn kafka_two_instances_each_say_which_hosts_a_key_and_send_queries_there() {
    use crate::admin::{admin_address, http};
    let broker = Broker::start();
    broker.create_topics(&["iq-users", "iq-out"], 4);
    let dir = tempfile::tempdir().expect("a temporary directory");
    let pipeline = "from = \"users\"\nto = \"iq-out\"\nsteps = [ { op = \"to_stream\" } ]\n\
                    [tables.users]\ntopic = \"iq-users\"\n\
                    [application.admin]\nbind = \"127.0.0.1:0\"";
    let manifest = |state: &str| plain_manifest(dir.path(), &broker, state, "iq2", "threads = 1", pipeline);
    let users: Vec<(String, String, i64)> = (0..24).map(|i| (format!("u{i}"), format!("name{i}"), 1000 + i)).collect();
    produce(&broker, "iq-users", &users);
    let mut a = start_wasp("wasp-iq-a", &manifest("state-a"));
    let a_url = format!("http://{}", admin_address(&mut a));
    let mut b = start_wasp("wasp-iq-b", &manifest("state-b"));
    let b_url = format!("http://{}", admin_address(&mut b));
    let servers = [a_url.trim_start_matches("http://").to_owned(), b_url.trim_start_matches("http://").to_owned()];

    // Until both instances run two of the four tasks each, and each knows the other's.
    let tasks_of = |url: &str| -> Vec<(String, Vec<String>)> {
        let (_, body) = http("GET", &format!("{url}/instances"), None, None);
        let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
        v.as_array()
            .map(|list| {
                list.iter()
                    .map(|i| {
                        let server = i["server"].as_str().unwrap_or_default().to_owned();
                        let tasks = i["tasks"].as_array().map_or_else(Vec::new, |t| {
                            t.iter().filter_map(|x| x.as_str().map(str::to_owned)).collect()
                        });
                        (server, tasks)
                    })
                    .collect()
            })
            .unwrap_or_default()
    };
    let settled = |view: &[(String, Vec<String>)]| {
        let all: BTreeSet<&String> = view.iter().flat_map(|(_, t)| t).collect();
        view.len() == 2 && view.iter().all(|(_, t)| t.len() == 2) && all.len() == 4
    };
    let deadline = std::time::Instant::now() + START_TIMEOUT;
    loop {
        a.assert_running();
        b.assert_running();
        if settled(&tasks_of(&a_url)) && settled(&tasks_of(&b_url)) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "instances never settled: {:?} / {:?}",
            tasks_of(&a_url),
            tasks_of(&b_url)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let no_redirects: ureq::Agent =
        ureq::Agent::config_builder().http_status_as_error(false).max_redirects(0).build().into();
    let get = |url: &str| -> (u16, Option<String>, String) {
        let mut r = no_redirects.get(url).call().expect("a response");
        let location = r.headers().get("location").and_then(|l| l.to_str().ok()).map(str::to_owned);
        (r.status().as_u16(), location, r.body_mut().read_to_string().unwrap_or_default())
    };
    let mut hosted = [0usize; 2];
    for (key, name, _) in &users {
        // Both instances name the same host, and it is one of the two.
        let answers: Vec<serde_json::Value> = [&a_url, &b_url]
            .iter()
            .map(|u| serde_json::from_str(&get(&format!("{u}/stores/users-store/hosts/{key}")).2).expect("JSON"))
            .collect();
        assert_eq!(answers[0]["host"], answers[1]["host"], "{key}: {answers:?}");
        assert_eq!(answers[0]["partition"], answers[1]["partition"]);
        assert_ne!(answers[0]["this_instance"], answers[1]["this_instance"], "{key}: exactly one hosts it");
        let host = answers[0]["host"].as_str().expect("a host").to_owned();
        let at = servers.iter().position(|s| *s == host).unwrap_or_else(|| panic!("{key}: host {host} is neither"));
        hosted[at] += 1;
        let (home, away) = if at == 0 { (&a_url, &b_url) } else { (&b_url, &a_url) };
        // The host answers, once the row is in (the table may still be catching up).
        let deadline = std::time::Instant::now() + START_TIMEOUT;
        let value = loop {
            let (status, _, body) = get(&format!("{home}/stores/users-store/keys/{key}"));
            if status == 200 {
                break body;
            }
            assert!(std::time::Instant::now() < deadline, "{key} never answered at its host: {status} {body}");
            std::thread::sleep(Duration::from_millis(100));
        };
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&value).expect("JSON"),
            serde_json::json!({"key": key, "value": name})
        );
        // The other redirects there.
        let (status, location, body) = get(&format!("{away}/stores/users-store/keys/{key}"));
        assert_eq!(status, 307, "{key} at the other instance: {body}");
        assert_eq!(location.as_deref(), Some(format!("{home}/stores/users-store/keys/{key}").as_str()));
        // A client that follows redirects gets the value from either.
        let (status, followed) = http("GET", &format!("{away}/stores/users-store/keys/{key}"), None, None);
        assert_eq!((status, followed), (200, value));
    }
    assert!(hosted.iter().all(|&n| n > 0), "both instances host some of the keys: {hosted:?}");

    // B leaves: A takes its partitions over and answers for every key.
    b.terminate();
    assert!(b.wait_exit(Duration::from_secs(60)).success(), "B stops cleanly");
    let deadline = std::time::Instant::now() + START_TIMEOUT;
    for (key, name, _) in &users {
        loop {
            a.assert_running();
            let (status, _, body) = get(&format!("{a_url}/stores/users-store/keys/{key}"));
            if status == 200 {
                assert!(body.contains(name.as_str()), "{key}: {body}");
                break;
            }
            assert!(std::time::Instant::now() < deadline, "{key} never answered by A alone: {status} {body}");
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    let view = tasks_of(&a_url);
    assert_eq!(view.len(), 1, "B withdrew its announcement: {view:?}");
    assert_eq!(view[0].1.len(), 4);
    a.kill();
}

/// A versioned table's history comes back from the table's own topic: an instance on an
/// empty state dir joins a late click with the name its user had at the click's time, and
/// a grace period waits for a table update that arrives after the click.
#[test]
fn kafka_a_versioned_tables_history_restores_from_its_topic_on_a_fresh_state_dir() {
    let broker = Broker::start();
    broker.create_topics(&["vt-users", "vt-clicks", "vt-out"], 1);
    let dir = tempfile::tempdir().expect("a temporary directory");
    let pipeline = with_join_kit(
        "from = \"vt-clicks\"\nto = \"vt-out\"\nsteps = [ { op = \"join\", table = \"users\", plugin = \"jk\", grace = 1000 } ]\n\
         [tables.users]\ntopic = \"vt-users\"\nhistory_retention = \"1h\"\n[application.admin]\nbind = \"127.0.0.1:0\"",
    );
    let settings = "threads = 1\nmax_task_idle_ms = 3000";
    let manifest = |state: &str| plain_manifest(dir.path(), &broker, state, "vt", settings, &pipeline);
    broker.produce_timed("vt-users", &[("u1", "alice", 1000), ("u1", "alicia", 5000)]);
    // c1 waits for stream time to pass 3000: c2 (at 4500) moves it there.
    broker.produce_timed("vt-clicks", &[("u1", "c1", 2000), ("u1", "c2", 4500)]);
    let mut reader = broker.reader(&["vt-out"]);
    let mut first = start_wasp("wasp-vt-1", &manifest("state-1"));
    let got = reader.read_until(START_TIMEOUT, |r| {
        first.assert_running();
        !r.is_empty()
    });
    assert!(got, "the first click joined: {:#?}", first.log_lines());
    first.terminate();
    assert!(first.wait_exit(Duration::from_secs(60)).success(), "the first run stops cleanly");
    // While it is down: a late click (at 3000, when u1 was alice), an update older than
    // the newest (ally from 4000), and clicks that move stream time on.
    broker.produce_timed("vt-users", &[("u1", "ally", 4000)]);
    broker.produce_timed("vt-clicks", &[("u1", "c3", 3000), ("u1", "c4", 6000), ("u1", "c5", 9000)]);
    let mut second = start_wasp("wasp-vt-2", &manifest("state-2"));
    let got = reader.read_until(START_TIMEOUT, |r| {
        second.assert_running();
        r.len() >= 4
    });
    reader.poll_for(Duration::from_secs(2));
    second.terminate();
    assert!(second.wait_exit(Duration::from_secs(60)).success(), "the second run stops cleanly");
    assert!(got, "the clicks after the restart joined: {:?}", reader.records.len());
    let pairs: Vec<(&str, &str)> = reader.records.iter().map(|r| (r.key_str(), r.value_str())).collect();
    // c1 joined in the first run; c2 (at 4500, buffered across the restart in the grace
    // buffer's changelog) meets ally; c3 is past the grace and joins at once as of 3000;
    // c4 meets alicia; c5 waits for more stream time.
    assert_eq!(pairs, [("u1", "u1:c1+alice"), ("u1", "u1:c3+alice"), ("u1", "u1:c2+ally"), ("u1", "u1:c4+alicia")]);
    // A third, on an empty state dir, restores ally (read last) into the history only: the
    // current value is still alicia.
    let mut third = start_wasp("wasp-vt-3", &manifest("state-3"));
    let url = format!("http://{}", crate::admin::admin_address(&mut third));
    let ask = |q: &str| crate::admin::http("GET", &format!("{url}/stores/users-store/keys/u1{q}"), None, None);
    let deadline = std::time::Instant::now() + START_TIMEOUT;
    while ask("").0 != 200 {
        third.assert_running();
        assert!(std::time::Instant::now() < deadline, "the third run never answered: {:?}", ask(""));
        std::thread::sleep(Duration::from_millis(100));
    }
    let value = |q: &str| serde_json::from_str::<serde_json::Value>(&ask(q).1).expect("JSON")["value"].clone();
    assert_eq!(value(""), "alicia");
    assert_eq!(value("?as_of=4500"), "ally");
    assert_eq!(value("?as_of=3000"), "alice");
    third.kill();
}

/// While a task's stores restore, a query answers 503 "restoring" rather than what the store
/// holds so far; before the group assigns the task, 503 "rebalancing"; then the current value.
/// No answer is ever a stale value or a miss.
#[test]
fn kafka_a_query_during_a_restore_answers_restoring_never_a_stale_value() {
    use crate::admin::{admin_address, http};
    let broker = Broker::start();
    broker.create_topics(&["rq-users", "rq-out"], 1);
    let dir = tempfile::tempdir().expect("a temporary directory");
    let pipeline = "from = \"users\"\nto = \"rq-out\"\nsteps = [ { op = \"to_stream\" } ]\n\
                    [tables.users]\ntopic = \"rq-users\"\n[application.admin]\nbind = \"127.0.0.1:0\"";
    let manifest = |state: &str| plain_manifest(dir.path(), &broker, state, "rq", "threads = 1", pipeline);
    // Many versions of one key, then other keys: a restore takes a while, and a store part
    // way through it holds an old version of `hot`.
    const ROWS: i64 = 200_000;
    let rows: Vec<(String, String, i64)> = (0..ROWS)
        .map(|i| if i % 2 == 0 { ("hot".to_owned(), format!("v{i}"), i) } else { (format!("k{i}"), "x".repeat(64), i) })
        .collect();
    produce(&broker, "rq-users", &rows);
    let last = format!("v{}", ROWS - 2);
    // A first run takes every row and commits.
    let mut first = start_wasp("wasp-rq-1", &manifest("state-1"));
    let url = format!("http://{}", admin_address(&mut first));
    let deadline = std::time::Instant::now() + START_TIMEOUT;
    loop {
        first.assert_running();
        let (status, body) = http("GET", &format!("{url}/stores/users-store/keys/hot"), None, None);
        if status == 200 && body.contains(&last) {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the first run never caught up: {status} {body}");
        std::thread::sleep(Duration::from_millis(100));
    }
    first.terminate();
    assert!(first.wait_exit(Duration::from_secs(60)).success(), "the first run stops cleanly");
    // A second, on an empty state dir, restores the table from its topic; it is asked all
    // along.
    let mut second = start_wasp("wasp-rq-2", &manifest("state-2"));
    let url = format!("http://{}", admin_address(&mut second));
    let mut seen: BTreeSet<String> = BTreeSet::new();
    let deadline = std::time::Instant::now() + START_TIMEOUT;
    loop {
        second.assert_running();
        let (status, body) = http("GET", &format!("{url}/stores/users-store/keys/hot"), None, None);
        let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
        match status {
            200 => {
                assert_eq!(v["value"], last.as_str(), "a query answered with a stale value");
                break;
            }
            503 => {
                let s = v["status"].as_str().unwrap_or_default();
                assert!(s == "restoring" || s.starts_with("rebalancing"), "{body}");
                seen.insert(s.split(':').next().unwrap_or_default().to_owned());
            }
            _ => panic!("a query during the start answered {status}: {body}"),
        }
        assert!(std::time::Instant::now() < deadline, "the second run never answered");
        std::thread::sleep(Duration::from_millis(2));
    }
    let restored = second.log_lines().into_iter().find(|l| l.contains("store restored")).unwrap_or_default();
    second.kill();
    assert!(seen.contains("restoring"), "queries answered {seen:?} before the value; restore: {restored}");
}

/// Two instances of two threads each share a join of two topics of 6 partitions, the second
/// joining mid-stream (a cooperative rebalance moves some tasks, the others keep running). A
/// task's partition of both topics comes to one member: every paid order comes out joined
/// with its payment, never alone, as in an uninterrupted run. (librdkafka's cooperative-sticky
/// assignor places each partition on its own; wasp has the group assign the first topic of a
/// task and adds the others.)
#[test]
fn kafka_a_join_shared_by_two_instances_keeps_each_tasks_topics_together_across_a_rebalance() {
    let broker = Broker::start();
    broker.create_topics(&["cj-orders", "cj-payments", "cj-out"], 6);
    let dir = tempfile::tempdir().expect("a temporary directory");
    let pipeline = with_join_kit(
        "from = \"cj-orders\"\nto = \"cj-out\"\nsteps = [ { op = \"left_join\", stream = \"cj-payments\", plugin = \"jk\", \
         time_difference = \"2s\", grace = \"1s\" } ]",
    );
    // A task that moved waits up to 10 s for the topic not fetched yet (a busy machine can take
    // seconds to fetch a newly assigned partition): orders run alone past their payments'
    // windows only when a task has no payments at all, which is what the test looks for.
    let settings = "threads = 2\nmax_task_idle_ms = 10000\ncommit_interval_ms = 200\nbatch_size = 8";
    let manifest = |state: &str| plain_manifest(dir.path(), &broker, state, "cj", settings, &pipeline);
    let mut reader = broker.reader(&["cj-out"]);
    let mut x = start_wasp("wasp-cj-x", &manifest("state-x"));
    x.wait_logged("partitions assigned", START_TIMEOUT);
    let (orders, payments) = order_stream(0..90);
    produce(&broker, "cj-orders", &orders);
    produce(&broker, "cj-payments", &payments);
    let got = reader.read_until(START_TIMEOUT, |r| {
        x.assert_running();
        r.len() >= 20
    });
    assert!(got, "results before the second instance: {}", reader.records.len());
    let mut y = start_wasp("wasp-cj-y", &manifest("state-y"));
    y.wait_logged("partitions assigned", START_TIMEOUT);
    let (orders, payments) = order_stream(90..180);
    produce(&broker, "cj-orders", &orders);
    produce(&broker, "cj-payments", &payments);
    let expected = joined_orders(0..180);
    // Paid orders come out as their payments meet them; then far later orders, on every
    // partition's keys, close every window, and the unpaid ones come out alone.
    let paid: BTreeSet<(String, String)> = expected.iter().filter(|(_, v)| !v.ends_with("+none")).cloned().collect();
    let got = reader.read_until(START_TIMEOUT * 2, |r| {
        x.assert_running();
        y.assert_running();
        paid.is_subset(&results(r))
            || results(r).iter().any(|(k, v)| v.ends_with("+none") && paid.iter().any(|(pk, _)| pk == k))
    });
    assert!(got, "the paid orders within {:?}", START_TIMEOUT * 2);
    let (late, _) = order_stream(10_000..10_060);
    produce(&broker, "cj-orders", &late);
    let got = reader.read_until(START_TIMEOUT * 2, |r| {
        x.assert_running();
        y.assert_running();
        expected.is_subset(&results(r))
    });
    x.terminate();
    y.terminate();
    for p in [&mut x, &mut y] {
        let status = p.wait_exit(Duration::from_secs(60));
        assert!(status.success(), "{} exited with {status} after SIGTERM", p.name);
    }
    let seen = results(&reader.records);
    let missing: Vec<_> = expected.difference(&seen).collect();
    let wrong: Vec<_> = seen.difference(&expected).filter(|r| !closing(r)).collect();
    assert!(
        got && missing.is_empty() && wrong.is_empty(),
        "results missing: {missing:?}; results no uninterrupted run gives (a task split between members?): {wrong:?}"
    );
    // The rebalance was cooperative, and each assignment holds both topics' same partitions.
    for p in [&x, &y] {
        let lines: Vec<String> = p.log_lines().into_iter().filter(|l| l.contains("partitions assigned")).collect();
        assert!(lines.iter().all(|l| l.contains("protocol=\"cooperative\"")), "{}: {lines:#?}", p.name);
        for l in &lines {
            let of = |topic: &str| -> BTreeSet<String> {
                l.split(&format!("(\\\"{topic}\\\", "))
                    .skip(1)
                    .filter_map(|s| s.split(')').next())
                    .map(str::to_owned)
                    .collect()
            };
            assert_eq!(of("cj-orders"), of("cj-payments"), "{}: an assignment splits a task's topics: {l}", p.name);
        }
    }
    let (in_x, in_y) = (crate::kafka::records_in(&x), crate::kafka::records_in(&y));
    assert!(in_x > 0 && in_y > 0, "both instances process part of the input: {in_x} and {in_y}");
}
