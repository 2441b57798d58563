//! Synthetic remote_write traffic: node_exporter-like series and their samples, encoded into
//! snappy-compressed `WriteRequest` bodies before any timing starts.
//!
//! A request is built the way Prometheus' queue manager builds one: one `TimeSeries` per sample,
//! each carrying its full label set. The bytes are those `prost` writes for
//! [`tidewatch_model::remote_write::WriteRequest`] (a test checks they are identical), but each
//! series' labels are encoded once and copied, rather than cloning twenty `String`s per sample.

use prost::Message;
use prost::encoding::{WireType, encode_key, encode_varint, message};
use tidewatch_model::remote_write::{Label, Sample};

/// Whether a metric only goes up (a counter) or wanders (a gauge).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Increases by a random step every round.
    Counter,
    /// A mean-reverting random walk.
    Gauge,
}

/// A metric family, with the scale of its values.
#[derive(Debug, Clone, Copy)]
pub struct Family {
    /// The metric name.
    pub name: &'static str,
    /// Counter or gauge.
    pub kind: Kind,
    /// Counters: the mean step per round. Gauges: the level the walk reverts to.
    pub scale: f64,
    /// Gauges: the largest move per round (counters ignore it).
    pub noise: f64,
    /// Values are rounded to a multiple of this (1: integers, 0.01: two decimals, 4096: pages).
    pub quantum: f64,
}

const fn counter(name: &'static str, step: f64, quantum: f64) -> Family {
    Family {
        name,
        kind: Kind::Counter,
        scale: step,
        noise: 0.0,
        quantum,
    }
}

const fn gauge(name: &'static str, level: f64, noise: f64, quantum: f64) -> Family {
    Family {
        name,
        kind: Kind::Gauge,
        scale: level,
        noise,
        quantum,
    }
}

/// Twenty node_exporter families: twelve counters and eight gauges.
pub const FAMILIES: [Family; 20] = [
    counter("node_cpu_seconds_total", 0.5, 0.01),
    counter("node_network_receive_bytes_total", 50_000.0, 1.0),
    counter("node_network_transmit_bytes_total", 30_000.0, 1.0),
    counter("node_network_receive_packets_total", 200.0, 1.0),
    counter("node_network_transmit_packets_total", 150.0, 1.0),
    counter("node_disk_read_bytes_total", 40_960.0, 512.0),
    counter("node_disk_written_bytes_total", 81_920.0, 512.0),
    counter("node_disk_io_time_seconds_total", 0.02, 0.001),
    counter("node_disk_reads_completed_total", 10.0, 1.0),
    counter("node_disk_writes_completed_total", 20.0, 1.0),
    counter("node_context_switches_total", 5_000.0, 1.0),
    counter("node_intr_total", 3_000.0, 1.0),
    gauge("node_memory_MemAvailable_bytes", 8e9, 1e7, 4096.0),
    gauge("node_memory_Cached_bytes", 4e9, 5e6, 4096.0),
    gauge("node_filesystem_avail_bytes", 1e11, 1e6, 4096.0),
    gauge("node_filesystem_free_bytes", 1.2e11, 1e6, 4096.0),
    gauge("node_load1", 1.5, 0.2, 0.01),
    gauge("node_load5", 1.4, 0.05, 0.01),
    gauge("node_hwmon_temp_celsius", 55.0, 0.5, 0.1),
    gauge("node_procs_running", 3.0, 1.0, 1.0),
];

/// Series one simulated host exposes; hosts differ by `instance`, `node` and the labels derived
/// from them.
pub const SERIES_PER_HOST: usize = 1000;

/// Label names in the order they are added; a series with `n` labels takes the first `n`.
const LABEL_NAMES: [&str; 15] = [
    "__name__",
    "job",
    "instance",
    "cpu",
    "mode",
    "device",
    "node",
    "cluster",
    "env",
    "region",
    "zone",
    "datacenter",
    "team",
    "fstype",
    "mountpoint",
];
const MODES: [&str; 8] = ["idle", "user", "system", "iowait", "irq", "softirq", "steal", "nice"];
const DEVICES: [&str; 6] = ["sda", "sdb", "nvme0n1", "nvme1n1", "eth0", "eth1"];
const REGIONS: [&str; 4] = ["eu-west-1", "us-east-1", "us-west-2", "ap-southeast-1"];
const TEAMS: [&str; 5] = ["platform", "storage", "payments", "search", "edge"];
const FSTYPES: [&str; 3] = ["ext4", "xfs", "overlay"];
const MOUNTPOINTS: [&str; 4] = ["/", "/var/lib/docker", "/home", "/boot"];

/// One synthetic series.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// Label pairs sorted by name, `__name__` included.
    pub labels: Vec<(String, String)>,
    /// Index into [`FAMILIES`].
    pub family: usize,
}

/// The labels of series `i` of a set, `labels_per_series` of them (at least 1).
///
/// Series `i` belongs to host `i / 1000`; within the host, `j = i % 1000` picks the family
/// (`j % 20`) and `k = j / 20` tells the series of one family apart through `cpu` and `mode`,
/// as node_cpu_seconds_total does. With fewer than five labels that is not enough, and the last
/// label's value gets the series number as a suffix, so that label sets are always distinct.
pub fn series(i: usize, labels_per_series: usize) -> Series {
    let n = labels_per_series.max(1);
    let (h, j) = (i / SERIES_PER_HOST, i % SERIES_PER_HOST);
    let family = j % FAMILIES.len();
    let k = j / FAMILIES.len();
    let region = REGIONS[h % REGIONS.len()];
    let mut labels: Vec<(String, String)> = (0..n)
        .map(|slot| {
            let name = LABEL_NAMES
                .get(slot)
                .map_or_else(|| format!("extra_{slot}"), |s| s.to_string());
            let value = match slot {
                0 => FAMILIES[family].name.to_string(),
                1 => "node".to_string(),
                2 => format!("10.{}.{}.{}:9100", (h >> 16) & 255, (h >> 8) & 255, h & 255),
                3 => (k % 16).to_string(),
                4 => MODES[(k / 16) % MODES.len()].to_string(),
                5 => DEVICES[(k + h) % DEVICES.len()].to_string(),
                6 => format!("node-{h:05}"),
                7 => format!("prod-{}", h / 250),
                8 => if h % 5 == 0 { "staging" } else { "production" }.to_string(),
                9 => region.to_string(),
                10 => format!("{region}{}", ['a', 'b', 'c'][(h / 4) % 3]),
                11 => format!("dc{}", h % 7),
                12 => TEAMS[h % TEAMS.len()].to_string(),
                13 => FSTYPES[k % FSTYPES.len()].to_string(),
                14 => MOUNTPOINTS[(k / 3) % MOUNTPOINTS.len()].to_string(),
                _ => format!("value-{}", (h + slot) % 10),
            };
            (name, value)
        })
        .collect();
    if n < 5 {
        let last = labels.last_mut().expect("at least one label");
        last.1 = format!("{}_{i}", last.1);
    }
    labels.sort();
    Series { labels, family }
}

/// The series' labels as the bytes of repeated field 1 of `TimeSeries`, encoded once.
pub fn encode_labels(series: &Series) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, value) in &series.labels {
        let label = Label {
            name: name.clone(),
            value: value.clone(),
        };
        message::encode(1, &label, &mut out);
    }
    out
}

/// Appends one `TimeSeries` (field 1 of `WriteRequest`) holding `labels` (from
/// [`encode_labels`]) and `samples`: the bytes prost writes for the same message.
pub fn encode_timeseries(labels: &[u8], samples: &[Sample], out: &mut Vec<u8>) {
    let inner = labels.len() + samples.iter().map(|s| message::encoded_len(2, s)).sum::<usize>();
    encode_key(1, WireType::LengthDelimited, out);
    encode_varint(inner as u64, out);
    out.extend_from_slice(labels);
    for sample in samples {
        message::encode(2, sample, out);
    }
}

/// The value of one series from round to round; seeded from the series number, so a series has
/// the same values whatever the number of connections.
#[derive(Debug, Clone)]
pub struct SeriesState {
    value: f64,
    rng: u64,
}

/// splitmix64: small, fast, and good enough for values.
fn next_u64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A uniform float in [0, 1).
fn unit(state: &mut u64) -> f64 {
    (next_u64(state) >> 11) as f64 / (1u64 << 53) as f64
}

fn quantize(v: f64, quantum: f64) -> f64 {
    if quantum >= 1.0 {
        (v / quantum).round() * quantum
    } else {
        // Divide by the inverse so that 0.01-quantized values are the doubles nearest to two
        // decimals, as a parser of "12.34" produces.
        let inv = (1.0 / quantum).round();
        (v * inv).round() / inv
    }
}

impl SeriesState {
    /// The starting state of series `i` of `family`.
    pub fn new(seed: u64, i: usize, family: &Family) -> SeriesState {
        let mut rng = seed ^ (i as u64).wrapping_mul(0xD6E8_FEB8_6659_FD93);
        next_u64(&mut rng);
        let value = match family.kind {
            // Counters start as if the host had been up for a while.
            Kind::Counter => family.scale * 100_000.0 * unit(&mut rng),
            Kind::Gauge => family.scale * (0.5 + unit(&mut rng)),
        };
        SeriesState {
            value: quantize(value, family.quantum),
            rng,
        }
    }

    /// This round's value; the state moves on to the next round.
    pub fn sample(&mut self, family: &Family) -> f64 {
        let v = self.value;
        let next = match family.kind {
            Kind::Counter => v + family.scale * 2.0 * unit(&mut self.rng),
            Kind::Gauge => {
                let step = family.noise * (2.0 * unit(&mut self.rng) - 1.0);
                (v + step + 0.05 * (family.scale - v)).max(0.0)
            }
        };
        let next = quantize(next, family.quantum);
        // Rounding never takes a counter back.
        self.value = if family.kind == Kind::Counter {
            next.max(v)
        } else {
            next
        };
        v
    }
}

/// How a connection's requests are cut and stamped.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Series in the set.
    pub series: usize,
    /// Labels per series.
    pub labels_per_series: usize,
    /// Rounds: every series gets one sample per round.
    pub rounds: usize,
    /// Timestamp of round 0, in milliseconds.
    pub start_ms: i64,
    /// Milliseconds between rounds.
    pub interval_ms: i64,
    /// Samples per request (a request may hold fewer, never more, unless one `TimeSeries`
    /// alone holds more).
    pub samples_per_request: usize,
    /// Samples per `TimeSeries`: 1 as Prometheus sends, more to carry consecutive rounds of a
    /// series in one `TimeSeries` (as a backfill or an agent that batches by series does).
    pub samples_per_series: usize,
    /// Connections; series `i` is sent on connection `i % connections` only, as Prometheus
    /// shards by series, so a series' samples arrive in time order.
    pub connections: usize,
    /// Seed of the values.
    pub seed: u64,
}

/// One pre-encoded request body and what it holds.
#[derive(Debug, Clone)]
pub struct Body {
    /// Snappy-compressed `WriteRequest`.
    pub snappy: Vec<u8>,
    /// Samples in it.
    pub samples: usize,
    /// Sequence number of its first sample on its connection (1-based), for `Tidewatch-Batch`.
    pub first_seq: u64,
}

impl Plan {
    /// Series numbers sent on connection `c`.
    pub fn series_of(&self, c: usize) -> impl Iterator<Item = usize> + use<> {
        (c..self.series).step_by(self.connections)
    }

    /// Encodes the requests of connection `c`, in order, handing each to `emit`; stops early,
    /// returning false, when `emit` does. `labels[i]` is [`encode_labels`] of series `i`.
    pub fn encode_connection(&self, c: usize, labels: &[Vec<u8>], mut emit: impl FnMut(Body) -> bool) -> bool {
        let mine: Vec<usize> = self.series_of(c).collect();
        let mut state: Vec<SeriesState> = mine
            .iter()
            .map(|&i| SeriesState::new(self.seed, i, &FAMILIES[i % SERIES_PER_HOST % FAMILIES.len()]))
            .collect();
        let mut raw = Vec::with_capacity(self.samples_per_request * 320);
        let mut compressed = Vec::new();
        let mut encoder = snap::raw::Encoder::new();
        let mut in_request = 0usize;
        let mut seq = 1u64;
        let k = self.samples_per_series.max(1);
        let mut samples = Vec::with_capacity(k);
        let mut flush = |raw: &mut Vec<u8>, in_request: &mut usize, seq: &mut u64| -> bool {
            compressed.resize(snap::raw::max_compress_len(raw.len()), 0);
            let n = encoder
                .compress(raw, &mut compressed)
                .expect("snappy compresses any input");
            let body = Body {
                snappy: compressed[..n].to_vec(),
                samples: *in_request,
                first_seq: *seq,
            };
            *seq += *in_request as u64;
            raw.clear();
            *in_request = 0;
            emit(body)
        };
        for first_round in (0..self.rounds).step_by(k) {
            let group = k.min(self.rounds - first_round);
            for (slot, &i) in mine.iter().enumerate() {
                let family = &FAMILIES[i % SERIES_PER_HOST % FAMILIES.len()];
                if in_request > 0
                    && in_request + group > self.samples_per_request
                    && !flush(&mut raw, &mut in_request, &mut seq)
                {
                    return false;
                }
                samples.clear();
                for round in first_round..first_round + group {
                    let timestamp = self.start_ms + round as i64 * self.interval_ms;
                    let value = state[slot].sample(family);
                    samples.push(Sample { value, timestamp });
                }
                encode_timeseries(&labels[i], &samples, &mut raw);
                in_request += group;
                if in_request >= self.samples_per_request && !flush(&mut raw, &mut in_request, &mut seq) {
                    return false;
                }
            }
        }
        if in_request > 0 {
            return flush(&mut raw, &mut in_request, &mut seq);
        }
        true
    }
}

/// Decodes a body with prost, for checks: the series' labels and samples, in wire order.
pub fn decode_body(snappy: &[u8]) -> Result<tidewatch_model::remote_write::WriteRequest, String> {
    let raw = snap::raw::Decoder::new()
        .decompress_vec(snappy)
        .map_err(|e| e.to_string())?;
    tidewatch_model::remote_write::WriteRequest::decode(raw.as_slice()).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::{HashMap, HashSet};
    use tidewatch_model::remote_write::{TimeSeries, WriteRequest};

    #[test]
    fn label_sets_are_distinct_sorted_and_node_like() {
        for n in [1, 2, 3, 4, 5, 10, 16, 20] {
            let mut seen = HashSet::new();
            for i in 0..12_000 {
                let s = series(i, n);
                assert_eq!(s.labels.len(), n);
                assert!(s.labels.windows(2).all(|w| w[0].0 < w[1].0), "{:?}", s.labels);
                assert_eq!(s.labels[0].0, "__name__");
                assert!(seen.insert(s.labels), "duplicate label set at {i} with {n} labels");
            }
        }
        let s = series(1234, 10);
        let names: Vec<&str> = s.labels.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "__name__", "cluster", "cpu", "device", "env", "instance", "job", "mode", "node", "region"
            ]
        );
    }

    #[test]
    fn hand_encoding_matches_prost() {
        let a = series(7, 10);
        let b = series(123_456, 12);
        let samples = [
            Sample {
                value: 1.5,
                timestamp: 1_700_000_000_000,
            },
            Sample {
                value: f64::NAN,
                timestamp: -3,
            },
        ];
        let mut ours = Vec::new();
        encode_timeseries(&encode_labels(&a), &samples[..1], &mut ours);
        encode_timeseries(&encode_labels(&b), &samples, &mut ours);
        let to_ts = |s: &Series, samples: &[Sample]| TimeSeries {
            labels: s
                .labels
                .iter()
                .map(|(name, value)| Label {
                    name: name.clone(),
                    value: value.clone(),
                })
                .collect(),
            samples: samples.to_vec(),
        };
        let req = WriteRequest {
            timeseries: vec![to_ts(&a, &samples[..1]), to_ts(&b, &samples)],
            metadata: vec![],
        };
        assert_eq!(ours, req.encode_to_vec());
    }

    #[test]
    fn plan_sends_every_series_once_per_round_in_time_order_on_one_connection() {
        for (samples_per_series, rounds) in [(1, 5), (3, 7), (10, 10)] {
            check_plan(Plan {
                series: 2_500,
                labels_per_series: 10,
                rounds,
                start_ms: 1_000_000,
                interval_ms: 1_000,
                samples_per_request: 700,
                samples_per_series,
                connections: 3,
                seed: 1,
            });
        }
    }

    fn check_plan(plan: Plan) {
        let labels: Vec<Vec<u8>> = (0..plan.series)
            .map(|i| encode_labels(&series(i, plan.labels_per_series)))
            .collect();
        let mut last: HashMap<Vec<(String, String)>, (usize, i64, f64)> = HashMap::new();
        let mut total = 0;
        for c in 0..plan.connections {
            let mut next_seq = 1;
            assert!(plan.encode_connection(c, &labels, |body| {
                assert!(body.samples <= plan.samples_per_request);
                assert_eq!(body.first_seq, next_seq);
                next_seq += body.samples as u64;
                let req = decode_body(&body.snappy).unwrap();
                assert_eq!(
                    req.timeseries.iter().map(|ts| ts.samples.len()).sum::<usize>(),
                    body.samples
                );
                for ts in req.timeseries {
                    assert!((1..=plan.samples_per_series).contains(&ts.samples.len()));
                    let key: Vec<(String, String)> = ts.labels.into_iter().map(|l| (l.name, l.value)).collect();
                    for s in ts.samples {
                        if let Some(&(conn, t, v)) = last.get(&key) {
                            assert_eq!(conn, c, "a series moved between connections");
                            assert_eq!(s.timestamp, t + plan.interval_ms);
                            if key[0].1.ends_with("_total") {
                                assert!(s.value >= v, "counter went down: {v} -> {}", s.value);
                            }
                        } else {
                            assert_eq!(s.timestamp, plan.start_ms);
                        }
                        last.insert(key.clone(), (c, s.timestamp, s.value));
                        total += 1;
                    }
                }
                true
            }));
        }
        assert_eq!(last.len(), plan.series);
        assert_eq!(total, plan.series * plan.rounds);
        let end = plan.start_ms + (plan.rounds as i64 - 1) * plan.interval_ms;
        assert!(last.values().all(|&(_, t, _)| t == end));
    }

    #[test]
    fn values_depend_on_the_seed_only() {
        let f = &FAMILIES[16];
        let mut a = SeriesState::new(9, 42, f);
        let mut b = SeriesState::new(9, 42, f);
        let mut c = SeriesState::new(10, 42, f);
        let va: Vec<f64> = (0..50).map(|_| a.sample(f)).collect();
        let vb: Vec<f64> = (0..50).map(|_| b.sample(f)).collect();
        let vc: Vec<f64> = (0..50).map(|_| c.sample(f)).collect();
        assert_eq!(va, vb);
        assert_ne!(va, vc);
        assert!(
            va.iter()
                .all(|v| *v >= 0.0 && (v * 100.0 - (v * 100.0).round()).abs() < 1e-6)
        );
    }
}
