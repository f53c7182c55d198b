//! Tries to reach what a plugin must not reach without a grant, for the host's sandbox tests.
//! Built for `wasm32-wasip2`, so it imports WASI like Python and JavaScript plugins do. The
//! value names the probe (`env`, `file`, `dir`, `socket`, `clock`); the result says what
//! happened.

#[wasp::map_values]
fn probe(what: &str) -> String {
    match what {
        "env" => match std::env::var("WASP_PROBE_SECRET") {
            Ok(v) => format!("env: read {v}"),
            Err(e) => format!("env: denied ({e})"),
        },
        "file" => match std::fs::read_to_string("/etc/hostname") {
            Ok(_) => "file: read".to_owned(),
            Err(e) => format!("file: denied ({e})"),
        },
        "dir" => match std::fs::read_to_string("/data/grant.txt") {
            Ok(v) => format!("dir: read {}", v.trim()),
            Err(e) => format!("dir: denied ({e})"),
        },
        "socket" => match std::net::TcpStream::connect("127.0.0.1:9") {
            Ok(_) => "socket: connected".to_owned(),
            Err(e) => format!("socket: denied ({e})"),
        },
        "clock" => {
            let secs =
                std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
            format!("clock: {}", if secs == 0 { "frozen".to_owned() } else { "real".to_owned() })
        }
        other => format!("unknown probe {other}"),
    }
}
