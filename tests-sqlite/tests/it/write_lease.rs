//! The writers' lease (#26): a second writer's BEGIN IMMEDIATE is busy before its work, the
//! lease changes hands between writers on every store, a writer paused past the TTL wins no
//! TXID another took, a killed holder's lease is taken after its TTL, and a lone writer pays
//! (almost) nothing for it.

use ltxvfs_sqlite_tests::{
    Target, WriteTarget, create_writer_tables, kill_writer_when, open_writer, stat,
};
use rusqlite::Connection;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn lease(c: &Connection) -> String {
    c.query_row("PRAGMA ltx_lease", [], |r| r.get(0)).unwrap()
}

/// A number from `PRAGMA ltx_lease`.
fn lease_stat(c: &Connection, key: &str) -> u64 {
    let json = lease(c);
    let at = json.find(&format!("\"{key}\":")).unwrap() + key.len() + 3;
    json[at..]
        .split(|ch: char| !ch.is_ascii_digit())
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

fn count(c: &Connection) -> i64 {
    c.query_row("SELECT count(*) FROM t", [], |r| r.get(0))
        .unwrap()
}

/// Two writers of one replica (two spellings of its URL: two `Replica`s and two leases in
/// this process, as in two processes): while `a` writes, `b`'s BEGIN IMMEDIATE is BUSY at
/// once; once `a` is done the lease goes to `b` (which waited), whose transaction reads
/// `a`'s commit (from the files the hand-over names); then `a` waits for `b`.
fn lease_changes_hands(name: &str, target: Target) {
    let t = WriteTarget::new(name, target);
    let b_url = match target {
        Target::Gcs => t.url.replace("endpoint=http://", "endpoint="),
        _ => t.other_url.clone(),
    };
    let a = open_writer(&t.url, "&poll=0&lease_ttl=5s").unwrap();
    let b = open_writer(&b_url, "&poll=0&lease_ttl=5s").unwrap();
    a.execute_batch("CREATE TABLE t(who TEXT)").unwrap();
    b.busy_timeout(Duration::ZERO).unwrap();
    assert!(lease(&a).contains("\"state\":\"held\""), "{}", lease(&a));

    a.execute_batch("BEGIN IMMEDIATE; INSERT INTO t VALUES ('a');")
        .unwrap();
    let started = Instant::now();
    let err = b
        .execute_batch("BEGIN IMMEDIATE")
        .map(|_| lease(&b))
        .unwrap_err();
    assert_eq!(
        err.sqlite_error().map(|e| e.extended_code),
        Some(5),
        "{err}"
    );
    assert!(started.elapsed() < Duration::from_secs(2));
    assert!(lease(&b).contains("\"state\":\"other\""), "{}", lease(&b));
    a.execute_batch("COMMIT").unwrap();

    // `b` registered as a waiter: `a` hands the lease over once it stops writing.
    b.busy_timeout(Duration::from_secs(10)).unwrap();
    let started = Instant::now();
    b.execute_batch("BEGIN IMMEDIATE").unwrap();
    let waited = started.elapsed();
    assert_eq!(count(&b), 1, "b reads a's commit at once");
    b.execute_batch("INSERT INTO t VALUES ('b'); COMMIT;")
        .unwrap();
    assert!(waited < Duration::from_secs(4), "b waited {waited:?}");
    assert_eq!(lease_stat(&a, "handed_over"), 1, "{}", lease(&a));
    assert_eq!(lease_stat(&b, "handed_to_us"), 1, "{}", lease(&b));
    // The hand-over named a's files: b read them without a LIST.
    assert!(stat(&b, "named_advances") >= 1, "{}", lease(&b));

    b.execute_batch("BEGIN IMMEDIATE; INSERT INTO t VALUES ('b');")
        .unwrap();
    a.busy_timeout(Duration::ZERO).unwrap();
    let err = a.execute_batch("BEGIN IMMEDIATE").unwrap_err();
    assert_eq!(
        err.sqlite_error().map(|e| e.extended_code),
        Some(5),
        "{err}"
    );
    b.execute_batch("COMMIT").unwrap();
    a.busy_timeout(Duration::from_secs(10)).unwrap();
    a.execute_batch("BEGIN IMMEDIATE; INSERT INTO t VALUES ('a'); COMMIT;")
        .unwrap();
    assert_eq!(count(&a), 4);
    assert_eq!(t.level0_txids(), (1..=5).collect::<Vec<u64>>());
    eprintln!(
        "{name}: b waited {waited:?}; a {}; b {}",
        lease(&a),
        lease(&b)
    );
}

#[test]
fn the_lease_changes_hands_on_s3() {
    lease_changes_hands("lease-hands-s3", Target::S3);
}

#[test]
fn the_lease_changes_hands_on_azure() {
    lease_changes_hands("lease-hands-azure", Target::Azure);
}

#[test]
fn the_lease_changes_hands_on_gcs() {
    lease_changes_hands("lease-hands-gcs", Target::Gcs);
}

/// file:// cannot replace an object conditionally (object_store's local backend): no
/// lease, writers meet at COMMIT as before.
#[test]
fn a_file_replica_has_no_lease_and_still_writes() {
    let t = WriteTarget::new("lease-file", Target::File);
    let a = open_writer(&t.url, "&poll=0").unwrap();
    a.execute_batch("CREATE TABLE t(who TEXT); INSERT INTO t VALUES ('a');")
        .unwrap();
    assert!(lease(&a).contains("\"state\":\"off\""), "{}", lease(&a));
    assert_eq!(t.level0_txids(), vec![1, 2]);
}

/// One writer alone: the lease costs a read about once a second and a renewal per half
/// TTL, not a request per commit.
#[test]
fn a_lone_writer_pays_no_lease_request_per_commit() {
    let t = WriteTarget::new("lease-lone", Target::S3);
    let w = open_writer(&t.url, "&poll=0").unwrap();
    w.execute_batch("CREATE TABLE t(who TEXT)").unwrap();
    let started = Instant::now();
    let commits = 60;
    for _ in 0..commits {
        w.execute("INSERT INTO t VALUES ('w')", []).unwrap();
    }
    let secs = started.elapsed().as_secs_f64();
    let requests = lease_stat(&w, "lease_requests");
    eprintln!(
        "lone writer: {commits} commits in {secs:.2}s, {requests} lease requests; {}",
        lease(&w)
    );
    // Take (read + create), then one read a second and a renewal every 5 s.
    assert!(
        requests as f64 <= 3.0 + 1.5 * secs.ceil(),
        "{requests} lease requests for {commits} commits in {secs:.2}s"
    );
    assert_eq!(lease_stat(&w, "busy"), 0);
}

fn writer(url: &str, tag: &str, count: u32, extra: &str) -> std::process::Child {
    Command::new(env!("CARGO_BIN_EXE_ltx_writer"))
        .env_remove("AWS_CA_BUNDLE")
        .args([url, tag, &count.to_string(), extra])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Acknowledged commits in a writer's output.
fn acked(tag: &str, out: &str) -> Vec<(String, i64)> {
    out.lines()
        .filter_map(|l| l.strip_prefix("ok "))
        .map(|n| (tag.to_owned(), n.parse().unwrap()))
        .collect()
}

/// A holder stopped (SIGSTOP) past its TTL: another writer takes the lease and commits;
/// the holder, resumed, wins no TXID already taken (its commit is refused or its BEGIN is
/// busy), and every acknowledged commit of both is stored once.
#[test]
fn a_holder_paused_past_its_ttl_wins_no_taken_txid() {
    let t = WriteTarget::new("lease-paused", Target::S3);
    let extra = "&lease_ttl=1s";
    create_writer_tables(&t.url, extra);
    let mut child = writer(&t.url, "p", 100_000, extra);
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(child.stdout.take().unwrap()));
    let mut out = String::new();
    while acked("p", &out).len() < 10 {
        out.push_str(&lines.next().unwrap().unwrap());
        out.push('\n');
    }
    let pid = child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-STOP", &pid])
            .status()
            .unwrap()
            .success()
    );
    let w = open_writer(&t.url, &format!("{extra}&poll=0")).unwrap();
    w.busy_timeout(Duration::from_secs(10)).unwrap();
    let started = Instant::now();
    let mut mine = Vec::new();
    for n in 0..5 {
        w.execute_batch(&format!(
            "BEGIN IMMEDIATE; INSERT INTO t VALUES ('q', {n}); UPDATE counter SET n = n + 1; COMMIT;"
        ))
        .unwrap_or_else(|e| panic!("commit {n} after {:?}: {e}: {}", started.elapsed(), lease(&w)));
        mine.push(("q".to_string(), n));
    }
    let took = started.elapsed();
    assert!(
        Command::new("kill")
            .args(["-CONT", &pid])
            .status()
            .unwrap()
            .success()
    );
    // The resumed writer goes on for a while, then is stopped for good.
    let resumed_at = acked("p", &out).len();
    while acked("p", &out).len() < resumed_at + 10 {
        out.push_str(&lines.next().unwrap().unwrap());
        out.push('\n');
    }
    child.kill().unwrap();
    child.wait().unwrap();
    for line in lines.map_while(Result::ok) {
        out.push_str(&line);
        out.push('\n');
    }
    drop(w);
    let refused = out.lines().filter(|l| l.starts_with("busy")).count();
    eprintln!(
        "paused holder: the other's 5 commits took {took:?}; the resumed one was refused {refused} times"
    );
    assert!(took < Duration::from_secs(8), "took {took:?}");
    let rows = t.restored_rows();
    let mut all = acked("p", &out);
    all.extend(mine);
    for a in &all {
        assert_eq!(rows.get(a), Some(&1), "acknowledged {a:?}");
    }
    assert!(
        rows.len() <= all.len() + 1,
        "only the commit in flight at the kill"
    );
    let txids = t.level0_txids();
    assert_eq!(txids, (1..=txids.len() as u64).collect::<Vec<u64>>());
}

/// A holder SIGKILLed: its lease stays until its TTL, then another writer takes it.
#[test]
fn a_killed_holders_lease_is_taken_after_its_ttl() {
    let t = WriteTarget::new("lease-killed", Target::S3);
    let extra = "&lease_ttl=2s";
    create_writer_tables(&t.url, extra);
    let bin = env!("CARGO_BIN_EXE_ltx_writer");
    let acked = kill_writer_when(bin, &t.url, "k", extra, |n| n >= 10);
    let killed_at = Instant::now();
    let w = open_writer(&t.url, &format!("{extra}&poll=0")).unwrap();
    w.busy_timeout(Duration::from_secs(10)).unwrap();
    w.execute_batch("BEGIN IMMEDIATE; INSERT INTO t VALUES ('after', 0); COMMIT;")
        .unwrap();
    let waited = killed_at.elapsed();
    eprintln!("killed holder: taken over after {waited:?}; {}", lease(&w));
    assert!(waited < Duration::from_secs(5), "waited {waited:?}");
    drop(w);
    let rows = t.restored_rows();
    for a in &acked {
        assert_eq!(rows.get(a), Some(&1), "acknowledged {a:?}");
    }
    assert_eq!(rows.get(&("after".to_string(), 0)), Some(&1));
}

/// A holder stopped (SIGSTOP) inside its transaction, past its TTL: another writer takes
/// the lease and commits; the holder, resumed, finds its TXID taken at COMMIT
/// (SQLITE_BUSY_SNAPSHOT) and stores nothing.
#[test]
fn a_holder_paused_mid_transaction_past_its_ttl_loses_at_commit() {
    let t = WriteTarget::new("lease-paused-txn", Target::S3);
    let extra = "&lease_ttl=1s";
    create_writer_tables(&t.url, extra);
    let mut held = Command::new(env!("CARGO_BIN_EXE_ltx_held_txn"))
        .env_remove("AWS_CA_BUNDLE")
        .args([&t.url, extra])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = std::io::BufRead::lines(std::io::BufReader::new(held.stdout.take().unwrap()));
    assert_eq!(out.next().unwrap().unwrap(), "ready");
    let pid = held.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-STOP", &pid])
            .status()
            .unwrap()
            .success()
    );
    let w = open_writer(&t.url, &format!("{extra}&poll=0")).unwrap();
    w.busy_timeout(Duration::ZERO).unwrap();
    let err = w.execute_batch("BEGIN IMMEDIATE").unwrap_err();
    assert_eq!(
        err.sqlite_error().map(|e| e.extended_code),
        Some(5),
        "{err}"
    );
    w.busy_timeout(Duration::from_secs(10)).unwrap();
    let started = Instant::now();
    w.execute_batch("BEGIN IMMEDIATE; INSERT INTO t VALUES ('other', 0); COMMIT;")
        .unwrap();
    let waited = started.elapsed();
    assert!(
        Command::new("kill")
            .args(["-CONT", &pid])
            .status()
            .unwrap()
            .success()
    );
    use std::io::Write;
    writeln!(held.stdin.take().unwrap(), "commit").unwrap();
    let verdict = out.next().unwrap().unwrap();
    held.wait().unwrap();
    eprintln!("paused mid-transaction: the other waited {waited:?}; the resumed holder: {verdict}");
    assert_eq!(verdict, "err 517", "the resumed holder's COMMIT is refused");
    assert!(waited < Duration::from_secs(4), "waited {waited:?}");
    drop(w);
    let rows = t.restored_rows();
    assert_eq!(rows.get(&("other".to_string(), 0)), Some(&1));
    assert_eq!(
        rows.get(&("held".to_string(), 0)),
        None,
        "the paused commit won nothing"
    );
    assert_eq!(t.level0_txids(), vec![1, 2]);
}

/// A writer process whose output lines are collected as they come.
struct Running {
    child: std::process::Child,
    out: std::sync::Arc<std::sync::Mutex<String>>,
    reader: std::thread::JoinHandle<()>,
}

impl Running {
    fn start(url: &str, tag: &str, extra: &str) -> Running {
        let mut child = writer(url, tag, 100_000, extra);
        let stdout = child.stdout.take().unwrap();
        let out = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let sink = out.clone();
        let reader = std::thread::spawn(move || {
            for line in std::io::BufRead::lines(std::io::BufReader::new(stdout)) {
                let Ok(line) = line else { break };
                let mut s = sink.lock().unwrap();
                s.push_str(&line);
                s.push('\n');
            }
        });
        Running { child, out, reader }
    }

    /// How many commits it has acknowledged so far.
    fn acked_so_far(&self) -> usize {
        acked("", &self.out.lock().unwrap()).len()
    }

    /// SIGKILLs it; its acknowledged commits.
    fn kill(mut self, tag: &str) -> Vec<(String, i64)> {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
        self.reader.join().unwrap();
        acked(tag, &self.out.lock().unwrap())
    }
}

/// A writer committing now and then (each time after it released the lease): its next
/// transaction takes the lease back by one conditional write on the version it released,
/// and, as no other writer took it meanwhile, reads neither the lease nor the store's
/// newest state (no poll, though `poll` has passed).
#[test]
fn a_sporadic_writer_takes_its_released_lease_back_in_one_write() {
    let t = WriteTarget::new("lease-sporadic", Target::S3);
    // The follower stops after 0.5 s without a read: the next read waits for a poll (a
    // LIST), unless the lease says this process has the newest state.
    let w = open_writer(&t.url, "&poll=100ms&idle=500ms").unwrap();
    w.execute_batch("CREATE TABLE t(who TEXT); INSERT INTO t VALUES ('w');")
        .unwrap();
    let commits = 4;
    std::thread::sleep(Duration::from_millis(1300));
    let (waits, leases) = (stat(&w, "fresh_waits"), lease_stat(&w, "lease_requests"));
    for _ in 0..commits {
        w.execute("INSERT INTO t VALUES ('w')", []).unwrap();
        // Past the lease's linger (1 s): released after each commit.
        std::thread::sleep(Duration::from_millis(1300));
    }
    let leases = lease_stat(&w, "lease_requests") - leases;
    let waits = stat(&w, "fresh_waits") - waits;
    eprintln!(
        "sporadic writer: {commits} commits, {leases} lease requests, {waits} polls waited for; {}",
        lease(&w)
    );
    assert_eq!(waits, 0, "no commit waits for a poll");
    assert_eq!(
        leases,
        2 * commits,
        "a take and a release per commit: {}",
        lease(&w)
    );
    assert_eq!(lease_stat(&w, "releases"), commits + 1, "{}", lease(&w));
    assert_eq!(t.level0_txids().len() as u64, 2 + commits);
}

/// A sporadic writer whose released lease another process took (and released) meanwhile:
/// its take-back at the next read is refused, so it reads the store's newest state (the
/// other's commit) as any read after `idle` does, and writes on it.
#[test]
fn a_released_lease_another_took_is_not_taken_back() {
    let t = WriteTarget::new("lease-taken-meanwhile", Target::S3);
    create_writer_tables(&t.url, "");
    let w = open_writer(&t.url, "&poll=100ms&idle=500ms").unwrap();
    w.execute("INSERT INTO t(tag, n) VALUES ('w', 0)", [])
        .unwrap();
    // Past the lease's linger (1 s): released.
    std::thread::sleep(Duration::from_millis(1300));
    let b = writer(&t.url, "b", 1, "").wait_with_output().unwrap();
    assert_eq!(acked("b", &String::from_utf8_lossy(&b.stdout)).len(), 1);
    let taken = lease_stat(&w, "taken");
    let seen: i64 = w
        .query_row("SELECT count(*) FROM t WHERE tag = 'b'", [], |r| r.get(0))
        .unwrap();
    assert_eq!(
        seen,
        1,
        "the read sees the other writer's commit: {}",
        lease(&w)
    );
    assert_eq!(
        lease_stat(&w, "taken"),
        taken,
        "not taken back: {}",
        lease(&w)
    );
    w.execute("INSERT INTO t(tag, n) VALUES ('w', 1)", [])
        .unwrap();
    assert_eq!(count(&w), 3);
    // The tables, w's two commits, b's one.
    assert_eq!(t.level0_txids().len(), 4);
}

/// Three writer processes retrying refused transactions: the lease goes round in turns of
/// several transactions each, every writer commits at least a quarter of what the busiest
/// does, and one killed half way and started again (a new process, at the back of the
/// queue) commits at least a quarter of what the busiest does in the same window. Every
/// acknowledged commit is stored once.
#[test]
fn writers_take_turns_and_a_restarted_one_is_not_starved() {
    let t = WriteTarget::new("lease-turns", Target::S3);
    let extra = "";
    create_writer_tables(&t.url, extra);
    let a = Running::start(&t.url, "a", extra);
    let b = Running::start(&t.url, "b", extra);
    let c = Running::start(&t.url, "c", extra);
    std::thread::sleep(Duration::from_secs(3));
    let c_acked = c.kill("c");
    // The killed writer's lease (or its turn in the queue) holds the others up for at
    // most a second; the restarted one pays its process start and first read besides.
    let (a_before, b_before) = (a.acked_so_far(), b.acked_so_far());
    let r = Running::start(&t.url, "r", extra);
    std::thread::sleep(Duration::from_secs(4));
    let (a_acked, b_acked, r_acked) = (a.kill("a"), b.kill("b"), r.kill("r"));
    let (na, nb, nc, nr) = (a_acked.len(), b_acked.len(), c_acked.len(), r_acked.len());
    let (a_since, b_since) = (na - a_before, nb - b_before);
    eprintln!(
        "turns: a {na}, b {nb} commits in 7 s; c {nc} in 3 s, then killed; \
         in the last 4 s: a {a_since}, b {b_since}, restarted {nr}"
    );
    let busiest = na.max(nb);
    assert!(na * 4 >= busiest && nb * 4 >= busiest, "a {na}, b {nb}");
    let busiest_since = a_since.max(b_since);
    assert!(
        nr * 4 >= busiest_since,
        "the restarted writer: {nr} vs {busiest_since} in the same 4 s"
    );
    let rows = t.restored_rows();
    let all: Vec<_> = [a_acked, b_acked, c_acked, r_acked].concat();
    for acked in &all {
        assert_eq!(rows.get(acked), Some(&1), "acknowledged {acked:?}");
    }
    // In commit order, a writer's rows come in runs: several transactions a turn.
    let restored = Connection::open(t.dir.join("restored.db")).unwrap();
    let tags: Vec<String> = restored
        .prepare("SELECT tag FROM t ORDER BY rowid")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let runs = 1 + tags.windows(2).filter(|w| w[0] != w[1]).count();
    eprintln!("turns: {} commits in {runs} runs", tags.len());
    assert!(
        tags.len() >= 2 * runs,
        "{} commits in {runs} runs",
        tags.len()
    );
}
