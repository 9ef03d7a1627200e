//! Issue #13: connections that send their request head slowly, sit idle, or come by the hundred
//! from one address must not exhaust `ledger serve`. Each test starts the real binary exactly as
//! users do, on a database of its own, and talks raw HTTP/1.1 over TCP, because the point is what
//! the server does with sockets that no well-behaved HTTP client would produce.
//!
//! Against the former `axum::serve` listener every test here fails: slow and idle connections
//! stayed open indefinitely, a connection over the cap was served, and a server out of file
//! descriptors stayed out of them. The total-cap tests fail without the cap: connection 21 of 20
//! is served, and a server under a small `ulimit -n` runs out of descriptors.
//!
//! Durations are measured from before the test connects or writes, so a scheduling delay on a
//! busy machine can only make a measured time longer; lower bounds are half the timeout.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;
use tests::{ServerProcess, TestDb, spawn_server, spawn_server_logged, temp_data_dir};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

const BIN: &str = env!("CARGO_BIN_EXE_ledger-e2e-server");

/// A running `ledger serve` with its database and data directory, removed on `finish`.
struct Served {
    server: ServerProcess,
    addr: SocketAddr,
    db: TestDb,
    data_dir: PathBuf,
}

impl Served {
    async fn start(extra: &[&str]) -> Self {
        let db = TestDb::create().await;
        let data_dir = temp_data_dir();
        let server = spawn_server(BIN, &db, &data_dir, &with_small_pool(extra));
        let addr = addr_of(&server.base);
        Self {
            server,
            addr,
            db,
            data_dir,
        }
    }

    async fn finish(self) {
        drop(self.server);
        let _ = std::fs::remove_dir_all(&self.data_dir);
        self.db.drop_db().await;
    }
}

/// `extra` and a pool of 8 database connections, half the default: these servers barely use the
/// database, and the PostgreSQL server is shared by every test running at the same time. (With
/// 4, the background jobs hold them all and a command waits for the pool until it times out.)
fn with_small_pool<'a>(extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = extra.to_vec();
    args.extend(["--db-max-connections", "8"]);
    args
}

fn addr_of(base: &str) -> SocketAddr {
    base.trim_start_matches("http://").parse().unwrap()
}

/// A connection to `addr` from the loopback address `from` (all of 127/8 is local on Linux), so
/// one test can be several clients.
async fn connect_from(from: Ipv4Addr, addr: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::new(IpAddr::V4(from), 0)).unwrap();
    socket.connect(addr).await.unwrap()
}

const LOCAL: Ipv4Addr = Ipv4Addr::LOCALHOST;

/// Sends `GET /healthz` on a keep-alive connection and reads the whole response; its status line.
async fn request(stream: &mut TcpStream) -> String {
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: ledger\r\n\r\n")
        .await
        .unwrap();
    read_response(stream).await
}

/// Reads one whole response (with a Content-Length); its status line.
async fn read_response(stream: &mut TcpStream) -> String {
    let mut response = Vec::new();
    let mut buf = [0u8; 1024];
    let head_end = loop {
        let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buf))
            .await
            .expect("a response within 10 s")
            .unwrap();
        assert!(n > 0, "closed before answering");
        response.extend_from_slice(&buf[..n]);
        if let Some(i) = response.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    let head = String::from_utf8_lossy(&response[..head_end]).to_lowercase();
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .map(|v| v.trim().parse().unwrap())
        .expect("a content-length");
    while response.len() < head_end + length {
        let n = stream.read(&mut buf).await.unwrap();
        assert!(n > 0, "closed mid-body");
        response.extend_from_slice(&buf[..n]);
    }
    head.lines().next().unwrap_or_default().to_uppercase()
}

/// A fresh connection's `GET /healthz`: how long it took to be answered 200.
async fn healthz(addr: SocketAddr) -> Duration {
    let started = Instant::now();
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let status = request(&mut stream).await;
    assert_eq!(status, "HTTP/1.1 200 OK");
    started.elapsed()
}

/// What became of a connection the test stopped talking on.
#[derive(Debug, PartialEq)]
enum Fate {
    /// The server closed it (end of file or reset) this long after `since`.
    Closed(Duration),
    /// The server sent something.
    Answered(String),
    /// Still open when the test stopped waiting.
    Open,
}

async fn fate(stream: &mut TcpStream, since: Instant, wait: Duration) -> Fate {
    let mut buf = [0u8; 512];
    match tokio::time::timeout_at((since + wait).into(), stream.read(&mut buf)).await {
        Err(_) => Fate::Open,
        Ok(Ok(0) | Err(_)) => Fate::Closed(since.elapsed()),
        Ok(Ok(n)) => Fate::Answered(String::from_utf8_lossy(&buf[..n]).into_owned()),
    }
}

/// Sends a request head one byte every half second, as the attacker of issue #13 did, until the
/// server closes the connection or `wait` has passed since `opened` (taken before connecting).
async fn dribble(stream: TcpStream, opened: Instant, wait: Duration) -> Fate {
    let head = b"GET /healthz HTTP/1.1\r\nHost: ledger\r\nX-Slow: ";
    let (mut rd, mut wr) = stream.into_split();
    let mut buf = [0u8; 512];
    let give_up = tokio::time::Instant::from(opened + wait);
    let mut sent = 0;
    loop {
        tokio::select! {
            read = rd.read(&mut buf) => return match read {
                Ok(0) | Err(_) => Fate::Closed(opened.elapsed()),
                Ok(n) => Fate::Answered(String::from_utf8_lossy(&buf[..n]).into_owned()),
            },
            () = tokio::time::sleep(Duration::from_millis(500)) => {
                let byte = head.get(sent).copied().unwrap_or(b'x');
                sent += 1;
                if wr.write_all(&[byte]).await.is_err() {
                    return Fate::Closed(opened.elapsed());
                }
            }
            () = tokio::time::sleep_until(give_up) => return Fate::Open,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_request_heads_are_closed_at_the_header_timeout_while_others_are_served() {
    // All connections come from 127.0.0.1 here, so the per-address cap is out of the way.
    let served = Served::start(&[
        "--header-read-timeout-secs",
        "2",
        "--max-connections-per-ip",
        "1000",
    ])
    .await;
    const SLOW: usize = 300;
    // Generous: the deadline runs from accept, which follows connect within milliseconds.
    const CLOSED_BY: Duration = Duration::from_secs(2 + 6);
    let mut slow = Vec::with_capacity(SLOW);
    for _ in 0..SLOW {
        let opened = Instant::now();
        let stream = TcpStream::connect(served.addr).await.unwrap();
        slow.push(tokio::spawn(dribble(stream, opened, CLOSED_BY)));
    }

    // While they dribble, other clients are answered at once.
    for _ in 0..6 {
        let took = healthz(served.addr).await;
        assert!(
            took < Duration::from_secs(5),
            "GET /healthz took {took:?} among {SLOW} slow connections"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let mut fates = Vec::with_capacity(SLOW);
    for task in slow {
        fates.push(task.await.unwrap());
    }
    let open = fates.iter().filter(|f| **f == Fate::Open).count();
    assert_eq!(
        open, 0,
        "{open} of {SLOW} connections sending their head a byte every 0.5 s were still open \
         {CLOSED_BY:?} after connecting, with a header-read timeout of 2 s"
    );
    for fate in &fates {
        match fate {
            // Not well before the timeout: they were closed for being slow, not refused.
            Fate::Closed(after) => assert!(*after >= Duration::from_secs(1), "{after:?}"),
            other => panic!("a slow connection was answered instead of closed: {other:?}"),
        }
    }
    // And the server still serves.
    healthz(served.addr).await;
    served.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_head_over_16_kib_is_refused_and_a_normal_one_still_served() {
    // hyper's default buffer took heads of about 400 KiB: a thousand unfinished ones pinned half
    // a gigabyte of memory. A head never needs that much here.
    let served = Served::start(&[]).await;
    let mut big = TcpStream::connect(served.addr).await.unwrap();
    let filler = "x".repeat(20 * 1024);
    let head = format!("GET /healthz HTTP/1.1\r\nHost: ledger\r\nX-Filler: {filler}\r\n\r\n");
    // The server may close before reading it all: a failed write is a refusal too.
    let _ = big.write_all(head.as_bytes()).await;
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), big.read_to_end(&mut answer)).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 431"),
        "a 20 KiB head: {answer}"
    );
    let mut normal = TcpStream::connect(served.addr).await.unwrap();
    assert_eq!(request(&mut normal).await, "HTTP/1.1 200 OK");
    served.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_keep_alive_connection_is_closed_at_the_idle_timeout_a_busy_one_is_not() {
    // A long header timeout, so only the idle timeout can explain a close here.
    let served = Served::start(&[
        "--idle-timeout-secs",
        "2",
        "--header-read-timeout-secs",
        "60",
    ])
    .await;

    // A request every half second for four seconds, all on one connection: the idle timeout
    // counts from the last response, not from connecting.
    let mut busy = TcpStream::connect(served.addr).await.unwrap();
    for _ in 0..8 {
        assert_eq!(request(&mut busy).await, "HTTP/1.1 200 OK");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert_eq!(request(&mut busy).await, "HTTP/1.1 200 OK");

    // One request, then silence: closed about two seconds after the response.
    let mut idle = TcpStream::connect(served.addr).await.unwrap();
    let asked = Instant::now();
    assert_eq!(request(&mut idle).await, "HTTP/1.1 200 OK");
    match fate(&mut idle, asked, Duration::from_secs(2 + 8)).await {
        Fate::Closed(after) => assert!(after >= Duration::from_secs(1), "{after:?}"),
        other => panic!("an idle keep-alive connection, 2 s idle timeout, after 8 s: {other:?}"),
    }
    served.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_over_the_per_address_cap_is_closed_and_the_others_stay() {
    let served = Served::start(&["--max-connections-per-ip", "4"]).await;
    let mut held = Vec::new();
    for _ in 0..4 {
        let mut c = connect_from(LOCAL, served.addr).await;
        assert_eq!(request(&mut c).await, "HTTP/1.1 200 OK");
        held.push(c);
    }

    // The fifth from the same address: closed at once, before it is read or answered.
    let mut fifth = connect_from(LOCAL, served.addr).await;
    let sent = Instant::now();
    let _ = fifth
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: ledger\r\n\r\n")
        .await;
    match fate(&mut fifth, sent, Duration::from_secs(5)).await {
        Fate::Closed(_) => {}
        other => panic!("connection 5 of a cap of 4: {other:?}"),
    }

    // The four are still served, on their open connections.
    for c in &mut held {
        assert_eq!(request(c).await, "HTTP/1.1 200 OK");
    }
    // Another address has a cap of its own.
    let mut neighbour = connect_from(Ipv4Addr::new(127, 0, 0, 2), served.addr).await;
    assert_eq!(request(&mut neighbour).await, "HTTP/1.1 200 OK");

    // A closed connection gives its place back (once the server has seen it close).
    drop(held.pop());
    let since = Instant::now();
    loop {
        let mut again = connect_from(LOCAL, served.addr).await;
        let _ = again
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: ledger\r\n\r\n")
            .await;
        let mut buf = [0u8; 64];
        let read = tokio::time::timeout(Duration::from_secs(5), again.read(&mut buf)).await;
        if let Ok(Ok(n)) = read
            && buf[..n].starts_with(b"HTTP/1.1 200")
        {
            break;
        }
        assert!(
            since.elapsed() < Duration::from_secs(10),
            "no slot came free within 10 s of closing a connection"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    served.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_sigterm_idle_connections_close_and_a_request_in_flight_is_answered() {
    let db = TestDb::create().await;
    let data_dir = temp_data_dir();
    let token = tests::mint_token(BIN, &db);
    let mut server = spawn_server(BIN, &db, &data_dir, &with_small_pool(&[]));
    let addr = addr_of(&server.base);

    let mut idle = TcpStream::connect(addr).await.unwrap();
    assert_eq!(request(&mut idle).await, "HTTP/1.1 200 OK");
    // In flight: the head is complete, half of the body has been sent.
    let body = br#"{"name": "Acme GmbH", "kind": "customer"}"#;
    let mut busy = TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST /v1/organizations HTTP/1.1\r\nHost: ledger\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    busy.write_all(head.as_bytes()).await.unwrap();
    busy.write_all(&body[..10]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;

    let pid = server.child.id().to_string();
    let kill = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    assert!(kill.success());
    let signalled = Instant::now();
    match fate(&mut idle, signalled, Duration::from_secs(5)).await {
        Fate::Closed(_) => {}
        other => panic!("an idle connection at shutdown: {other:?}"),
    }
    // No longer accepting (the accept loop and the connections see the signal on tasks of their
    // own, in either order), still running for the request in flight.
    while TcpStream::connect(addr).await.is_ok() {
        assert!(
            signalled.elapsed() < Duration::from_secs(5),
            "still accepting 5 s after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(server.child.try_wait().unwrap().is_none(), "exited early");

    busy.write_all(&body[10..]).await.unwrap();
    assert_eq!(read_response(&mut busy).await, "HTTP/1.1 201 CREATED");
    let exit = tokio::task::spawn_blocking(move || {
        let exit = server.child.wait().unwrap();
        drop(server);
        exit
    })
    .await
    .unwrap();
    assert!(exit.success(), "graceful shutdown exits 0: {exit:?}");
    let _ = std::fs::remove_dir_all(&data_dir);
    db.drop_db().await;
}

/// The log lines whose message starts with `prefix`.
fn logged(logs: &tests::ServerLogs, prefix: &str) -> Vec<Value> {
    logs.lock()
        .unwrap()
        .iter()
        .filter(|l| {
            l["fields"]["message"]
                .as_str()
                .is_some_and(|m| m.starts_with(prefix))
        })
        .cloned()
        .collect()
}

/// [`logged`], once there is at least one such line (within 10 s): the thread reading the
/// server's stderr may not have stored a line the server has already written.
async fn await_logged(logs: &tests::ServerLogs, prefix: &str) -> Vec<Value> {
    let since = Instant::now();
    loop {
        let lines = logged(logs, prefix);
        if !lines.is_empty() || since.elapsed() > Duration::from_secs(10) {
            return lines;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Descriptors the server keeps from clients with a request pool of `db_max_connections`: both
/// pools and `listener::RESERVED_DESCRIPTORS`.
fn reserved(db_max_connections: u32) -> u32 {
    let mut config = application::app::AppConfig::new(String::new(), PathBuf::new());
    config.db_max_connections = db_max_connections;
    u32::try_from(api::listener::RESERVED_DESCRIPTORS).unwrap() + config.database_connections()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_a_small_open_file_limit_the_server_caps_connections_instead_of_running_out() {
    // Issue #13 in small: more silent connections than the server has descriptors.
    const NOFILE: u32 = 256;
    const CONNECTIONS: usize = 300;
    let db = TestDb::create().await;
    let data_dir = temp_data_dir();
    let (server, logs) = spawn_server_logged(
        BIN,
        &db,
        &data_dir,
        &[
            "--header-read-timeout-secs",
            "2",
            "--max-connections-per-ip",
            "1000",
            "--db-max-connections",
            "8",
        ],
        Some(NOFILE),
    );
    let addr = addr_of(&server.base);
    let listening = await_logged(&logs, "license-ledger listening").await;
    assert_eq!(
        listening[0]["fields"]["max_connections"],
        NOFILE - reserved(8),
        "the cap is what ulimit -n leaves after the pools and the reserve: {listening:?}"
    );
    // The kernel completes these handshakes into the listen backlog whether or not the server
    // accepts them.
    let mut silent = Vec::with_capacity(CONNECTIONS);
    for _ in 0..CONNECTIONS {
        silent.push(TcpStream::connect(addr).await.unwrap());
    }

    // A client queued behind them all is answered once the server has closed enough of them
    // (each batch after 2 s), not never.
    let probe = tokio::time::timeout(Duration::from_secs(30), healthz(addr)).await;
    assert!(
        probe.is_ok(),
        "GET /healthz behind {CONNECTIONS} silent connections to a server with {NOFILE} \
         descriptors was not answered within 30 s"
    );

    // The cap was reached (and said so once), the descriptors never ran out.
    let at_cap = await_logged(&logs, "connection cap reached").await;
    assert_eq!(at_cap.len(), 1, "{at_cap:?}");
    assert_eq!(at_cap[0]["level"], "WARN");
    let accept_failures = logged(&logs, "cannot accept connections");
    assert!(
        accept_failures.is_empty(),
        "descriptors ran out under the cap: {accept_failures:?}"
    );
    drop(silent);
    drop(server);
    let _ = std::fs::remove_dir_all(&data_dir);
    db.drop_db().await;
}

/// Creates an organization over `stream` (keep-alive) with `token`: the status line.
async fn create_organization(stream: &mut TcpStream, token: &str, name: &str) -> String {
    let body = format!(r#"{{"name": "{name}", "kind": "customer"}}"#);
    let head = format!(
        "POST /v1/organizations HTTP/1.1\r\nHost: ledger\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(body.as_bytes()).await.unwrap();
    read_response(stream).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_the_total_cap_the_next_connection_waits_for_one_to_close_and_the_database_works() {
    const CAP: u8 = 20;
    let db = TestDb::create().await;
    let data_dir = temp_data_dir();
    let token = tests::mint_token(BIN, &db);
    // A long header timeout: nothing closes unless the test closes it.
    let (server, logs) = spawn_server_logged(
        BIN,
        &db,
        &data_dir,
        &with_small_pool(&[
            "--max-connections",
            "20",
            "--header-read-timeout-secs",
            "120",
        ]),
        None,
    );
    let addr = addr_of(&server.base);

    // Twenty connections, each from an address of its own so the per-address cap plays no part:
    // one working client, nineteen silent.
    let mut client = connect_from(Ipv4Addr::new(127, 0, 0, 2), addr).await;
    assert_eq!(
        create_organization(&mut client, &token, "Before").await,
        "HTTP/1.1 201 CREATED"
    );
    let mut silent = Vec::new();
    for i in 1..CAP {
        silent.push(connect_from(Ipv4Addr::new(127, 0, 1, i), addr).await);
    }

    // Connection 21 is not served (nor closed) while the twenty are open.
    let mut waiting = connect_from(Ipv4Addr::new(127, 0, 2, 1), addr).await;
    let sent = Instant::now();
    waiting
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: ledger\r\n\r\n")
        .await
        .unwrap();
    assert_eq!(
        fate(&mut waiting, sent, Duration::from_secs(3)).await,
        Fate::Open,
        "connection {} of a cap of {CAP}",
        CAP + 1
    );
    // Meanwhile the server's database work goes on: a command on an open connection.
    assert_eq!(
        create_organization(&mut client, &token, "At the cap").await,
        "HTTP/1.1 201 CREATED"
    );

    // One of the twenty closes: connection 21 is answered.
    drop(silent.pop());
    assert_eq!(read_response(&mut waiting).await, "HTTP/1.1 200 OK");

    let at_cap = await_logged(&logs, "connection cap reached").await;
    assert_eq!(at_cap.len(), 1, "{at_cap:?}");
    assert_eq!(at_cap[0]["level"], "WARN");
    assert_eq!(at_cap[0]["fields"]["max_connections"], 20);
    drop(silent);
    drop(server);
    let _ = std::fs::remove_dir_all(&data_dir);
    db.drop_db().await;
}

/// `ledger serve` with `args`: its stderr, after asserting that it refused to start.
fn refused(args: &[&str]) -> String {
    let out = Command::new(BIN)
        .arg("serve")
        .args(args)
        .args(["--database-url", "postgres://127.0.0.1:1/unused"])
        .output()
        .unwrap();
    assert!(!out.status.success(), "{args:?} was accepted");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn the_connection_flags_refuse_what_cannot_work_and_listen_says_what_it_expects() {
    let listen = refused(&["--listen", "8081"]);
    assert!(
        listen.contains(
            "invalid value '8081' for '--listen <LISTEN>': expected IP:PORT, not a port alone: \
             127.0.0.1:8081 (this machine only) or 0.0.0.0:8081 (every interface)"
        ),
        "{listen}"
    );
    for flag in [
        "--header-read-timeout-secs",
        "--idle-timeout-secs",
        "--max-connections-per-ip",
        "--max-connections",
        // A zero timeout answered every request 503, a zero body limit every body 413.
        "--request-timeout-secs",
        "--max-body-bytes",
    ] {
        let err = refused(&[flag, "0"]);
        assert!(
            err.contains(&format!("invalid value '0' for '{flag}")) && err.contains("1.."),
            "{flag} 0: {err}"
        );
    }
}

#[test]
fn a_connection_cap_above_what_the_open_file_limit_leaves_is_refused_before_anything_opens() {
    let out = Command::new("sh")
        .arg("-c")
        .arg("ulimit -n 256 && exec \"$0\" \"$@\"")
        .arg(BIN)
        .args([
            "serve",
            "--max-connections",
            "1000",
            "--db-max-connections",
            "16",
        ])
        .args(["--database-url", "postgres://127.0.0.1:1/unused"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    let allowed = 256 - reserved(16);
    assert!(
        err.contains("--max-connections 1000 does not fit the open-file limit: ulimit -n is 256")
            && err.contains(&format!("at most {allowed} client connections")),
        "{err}"
    );
    // Refused before the database was tried (it is unreachable here).
    assert!(!err.contains("127.0.0.1:1"), "{err}");
}
