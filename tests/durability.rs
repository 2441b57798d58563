//! Acknowledged samples survive `kill -9`: a sender writes through remote_write and remembers
//! what was acknowledged; the server is killed at random moments and restarted; every
//! acknowledged sample must be there, and nothing that was never sent.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tidewatch_model::remote_write::{Label, Sample, TimeSeries, WriteRequest};
use tidewatch_testkit::TestServer;

use crate::{EXIT_WITHIN, READY_WITHIN};

const SERIES: usize = 20;

/// A small xorshift generator: reproducible from the printed seed, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// Request `n`: every series gets one sample at `n` seconds, valued `n`.
fn request(n: u64) -> Vec<u8> {
    WriteRequest {
        timeseries: (0..SERIES)
            .map(|s| TimeSeries {
                labels: vec![
                    Label {
                        name: "__name__".into(),
                        value: "durability_test".into(),
                    },
                    Label {
                        name: "series".into(),
                        value: format!("{s:02}"),
                    },
                ],
                samples: vec![Sample {
                    value: n as f64,
                    timestamp: 1_700_000_000_000 + n as i64 * 1000,
                }],
            })
            .collect(),
        metadata: Vec::new(),
    }
    .to_snappy()
}

fn post(agent: &ureq::Agent, url: &str, body: &[u8]) -> Result<u16, String> {
    agent
        .post(url)
        .header("Content-Encoding", "snappy")
        .header("Content-Type", "application/x-protobuf")
        .send(body)
        .map(|r| r.status().as_u16())
        .map_err(|e| e.to_string())
}

/// Every exported `(series, timestamp) → value`.
fn stored(server: &TestServer) -> BTreeMap<(String, i64), f64> {
    let (status, body) = server.get("/api/v1/export?match[]=durability_test");
    assert_eq!(status, 200, "{body}");
    let mut out = BTreeMap::new();
    for line in body.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let series = v["metric"]["series"].as_str().unwrap().to_string();
        for (t, x) in v["timestamps"]
            .as_array()
            .unwrap()
            .iter()
            .zip(v["values"].as_array().unwrap())
        {
            out.insert((series.clone(), t.as_i64().unwrap()), x.as_f64().unwrap());
        }
    }
    out
}

#[test]
fn acknowledged_samples_survive_kill_9_at_random_moments() {
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        | 1;
    eprintln!("seed {seed}");
    let mut rng = Rng(seed);
    let dir = tempfile::tempdir().unwrap();
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(10)))
        .build()
        .into();
    let acked: Arc<Mutex<Vec<u64>>> = Arc::default();
    let mut next = 0u64;
    const ROUNDS: usize = 20;
    for round in 0..ROUNDS {
        let mut server = TestServer::start_in(dir.path(), &["server"]);
        server.wait_ready(READY_WITHIN).unwrap();
        if round > 0 {
            let have = stored(&server);
            for &n in acked.lock().unwrap().iter() {
                for s in 0..SERIES {
                    let key = (format!("{s:02}"), 1_700_000_000_000 + n as i64 * 1000);
                    assert_eq!(
                        have.get(&key),
                        Some(&(n as f64)),
                        "round {round}: acknowledged sample {key:?} lost (seed {seed})"
                    );
                }
            }
        }
        // Send from a thread, and kill the server from here at a random moment.
        let stop = Arc::new(AtomicBool::new(false));
        let url = server.url("/api/v1/write");
        let sender = {
            let (stop, acked, agent) = (stop.clone(), acked.clone(), agent.clone());
            let start = next;
            std::thread::spawn(move || {
                let mut n = start;
                while !stop.load(Ordering::SeqCst) {
                    match post(&agent, &url, &request(n)) {
                        Ok(204) => acked.lock().unwrap().push(n),
                        Ok(other) => panic!("request {n}: HTTP {other}"),
                        Err(_) => break, // the server is gone
                    }
                    n += 1;
                }
                n
            })
        };
        std::thread::sleep(Duration::from_millis(20 + rng.next() % 300));
        server.signal("KILL");
        server.wait_exit(EXIT_WITHIN).expect("killed");
        stop.store(true, Ordering::SeqCst);
        // A request in flight when the server died was not acknowledged; it may or may not
        // be stored. Numbers are never reused, so it cannot be confused with a later one.
        next = sender.join().unwrap() + 1;
    }
    let server = TestServer::start_in(dir.path(), &["server"]);
    server.wait_ready(READY_WITHIN).unwrap();
    let have = stored(&server);
    let acked = acked.lock().unwrap();
    assert!(
        acked.len() > ROUNDS,
        "the sender got few acknowledgements ({}): the test proves little",
        acked.len()
    );
    let mut lost = 0;
    for &n in acked.iter() {
        for s in 0..SERIES {
            if have.get(&(format!("{s:02}"), 1_700_000_000_000 + n as i64 * 1000)) != Some(&(n as f64)) {
                lost += 1;
            }
        }
    }
    // Nothing stored was never sent.
    for ((_, t), v) in &have {
        assert_eq!(
            *t,
            1_700_000_000_000 + *v as i64 * 1000,
            "a stored sample that was never sent"
        );
        assert!((*v as u64) < next);
    }
    eprintln!(
        "{ROUNDS} kills, {} acknowledged requests ({} samples), {} stored, {lost} lost",
        acked.len(),
        acked.len() * SERIES,
        have.len()
    );
    assert_eq!(lost, 0, "acknowledged samples lost (seed {seed})");
}
