//! User sessions, after the KSML `user_session_analysis` example: per user and session (30
//! minutes of inactivity end one), the number of events, the pages seen and the time span.

use serde::{Deserialize, Serialize};
use wasp::Json;

#[derive(Deserialize)]
pub struct Event {
    pub page: String,
    pub at: i64,
}

#[derive(Serialize, Deserialize, Default)]
pub struct Session {
    pub events: u64,
    pub pages: Vec<String>,
    pub first: Option<i64>,
    pub last: Option<i64>,
}

fn initialize_session() -> Json<Session> {
    Json(Session::default())
}

/// Adds one event to its session.
#[wasp::aggregate(init = initialize_session, merge = merge_sessions)]
fn update_session(Json(e): Json<Event>, Json(mut s): Json<Session>) -> Json<Session> {
    s.events += 1;
    if !s.pages.contains(&e.page) {
        s.pages.push(e.page);
    }
    s.first = Some(s.first.map_or(e.at, |f| f.min(e.at)));
    s.last = Some(s.last.map_or(e.at, |l| l.max(e.at)));
    Json(s)
}

/// Two sessions that a late event joins become one.
fn merge_sessions(Json(a): Json<Session>, Json(b): Json<Session>) -> Json<Session> {
    let mut pages = a.pages;
    for p in b.pages {
        if !pages.contains(&p) {
            pages.push(p);
        }
    }
    let min = |x: Option<i64>, y: Option<i64>| match (x, y) {
        (Some(x), Some(y)) => Some(x.min(y)),
        (x, y) => x.or(y),
    };
    let max = |x: Option<i64>, y: Option<i64>| match (x, y) {
        (Some(x), Some(y)) => Some(x.max(y)),
        (x, y) => x.or(y),
    };
    Json(Session { events: a.events + b.events, pages, first: min(a.first, b.first), last: max(a.last, b.last) })
}
