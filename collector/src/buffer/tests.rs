use tidewatch_model::{Labels, Sample, Series};

use super::*;

fn logs(lines: &[&str]) -> Payload {
    Payload::Logs {
        labels: Labels::from_pairs([("job", "t")]),
        lines: lines
            .iter()
            .enumerate()
            .map(|(i, l)| (i as i64, l.to_string()))
            .collect(),
    }
}

fn wire(payload: &Payload) -> Vec<u8> {
    let mut out = Vec::new();
    codec::encode_wire(payload, &mut out);
    out
}

fn first_line(e: &Entry) -> String {
    use prost::Message;
    let req = tidewatch_model::loki_push::PushRequest::decode(e.wire.as_slice()).unwrap();
    req.streams[0].entries[0].line.clone()
}

fn sinks() -> Vec<String> {
    vec!["http://a".to_string()]
}

#[tokio::test]
async fn entries_round_trip_with_consecutive_sequence_numbers() {
    let dir = tempfile::tempdir().unwrap();
    let b = Buffer::open(dir.path(), 1 << 20, &sinks()).unwrap();
    assert_eq!(b.push("s", "c1".into(), logs(&["a", "b"])).await.unwrap(), Some(1));
    let metrics = Payload::Metrics(vec![Series {
        labels: Labels::from_pairs([("__name__", "up")]),
        samples: vec![Sample {
            timestamp_ms: 5,
            value: 1.5,
        }],
    }]);
    assert_eq!(b.push("m", String::new(), metrics.clone()).await.unwrap(), Some(1));
    assert_eq!(b.push("s", "c2".into(), logs(&["c"])).await.unwrap(), Some(3));
    assert_eq!(b.push("s", "c3".into(), logs(&[])).await.unwrap(), None);
    let mut r = b.reader("http://a");
    let batch = r.read_batch(u64::MAX).unwrap().unwrap();
    assert_eq!(batch.entries.len(), 3);
    assert_eq!(batch.entries[0].wire, wire(&logs(&["a", "b"])));
    assert_eq!(batch.entries[0].records, 2);
    assert_eq!(batch.entries[1].wire, wire(&metrics));
    assert_eq!((batch.entries[2].first_seq, batch.entries[2].last_seq()), (3, 3));
    assert_eq!(b.resume_point("s").unwrap().checkpoint, "c2");
}

#[tokio::test]
async fn torn_tail_is_cut_at_the_last_good_record_and_its_numbers_given_again() {
    let dir = tempfile::tempdir().unwrap();
    {
        let b = Buffer::open(dir.path(), 1 << 20, &sinks()).unwrap();
        b.push("s", "1".into(), logs(&["one"])).await.unwrap();
        b.push("s", "2".into(), logs(&["two"])).await.unwrap();
    }
    // Tear the last frame in half, as a kill -9 during the write would.
    let seg = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "seg") && fs::metadata(p).unwrap().len() > 0)
        .unwrap();
    let len = fs::metadata(&seg).unwrap().len();
    let f = OpenOptions::new().write(true).open(&seg).unwrap();
    f.set_len(len - 5).unwrap();
    drop(f);
    // Garbage after a good frame is cut too.
    let b = Buffer::open(dir.path(), 1 << 20, &sinks()).unwrap();
    assert_eq!(
        b.resume_point("s").unwrap(),
        ResumePoint {
            seq: 1,
            checkpoint: "1".into()
        }
    );
    assert_eq!(b.push("s", "2b".into(), logs(&["two again"])).await.unwrap(), Some(2));
    let mut r = b.reader("http://a");
    let batch = r.read_batch(u64::MAX).unwrap().unwrap();
    let lines: Vec<_> = batch.entries.iter().map(first_line).collect();
    assert_eq!(lines, ["one", "two again"]);
}

#[tokio::test]
async fn corrupt_bytes_in_the_middle_cut_the_rest_of_that_segment() {
    let dir = tempfile::tempdir().unwrap();
    {
        let b = Buffer::open(dir.path(), 1 << 20, &sinks()).unwrap();
        for i in 0..3 {
            b.push("s", i.to_string(), logs(&["x"])).await.unwrap();
        }
    }
    let seg = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "seg") && fs::metadata(p).unwrap().len() > 0)
        .unwrap();
    let mut bytes = fs::read(&seg).unwrap();
    let frame = bytes.len() / 3;
    bytes[frame + 12] ^= 0xff; // inside the second frame's payload
    fs::write(&seg, &bytes).unwrap();
    let b = Buffer::open(dir.path(), 1 << 20, &sinks()).unwrap();
    assert_eq!(b.resume_point("s").unwrap().seq, 1);
    assert_eq!(fs::metadata(&seg).unwrap().len() as usize, frame);
}

#[tokio::test]
async fn ack_moves_the_position_and_commits_checkpoints_durably() {
    let dir = tempfile::tempdir().unwrap();
    let urls = vec!["http://a".to_string(), "http://b".to_string()];
    {
        let b = Buffer::open(dir.path(), 1 << 20, &urls).unwrap();
        b.push("s", "c1".into(), logs(&["1"])).await.unwrap();
        b.push("s", "c2".into(), logs(&["2"])).await.unwrap();
        let mut a = b.reader("http://a");
        let batch = a.read_batch(1).unwrap().unwrap();
        assert_eq!(batch.entries.len(), 1, "max_bytes stops after the first entry");
        a.ack(&batch).unwrap();
        // Not acknowledged: reading again gives the same batch.
        let mut bb = b.reader("http://b");
        assert_eq!(bb.read_batch(1).unwrap().unwrap().entries[0].first_seq, 1);
        assert_eq!(bb.read_batch(1).unwrap().unwrap().entries[0].first_seq, 1);
    }
    let st = state::load(dir.path()).unwrap();
    assert_eq!(
        st.sources["s"],
        ResumePoint {
            seq: 1,
            checkpoint: "c1".into()
        }
    );
    let b = Buffer::open(dir.path(), 1 << 20, &urls).unwrap();
    // Each sink resumes at its own acknowledged position.
    assert_eq!(
        b.reader("http://a").read_batch(u64::MAX).unwrap().unwrap().entries[0].first_seq,
        2
    );
    assert_eq!(
        b.reader("http://b").read_batch(u64::MAX).unwrap().unwrap().entries[0].first_seq,
        1
    );
    // The newest durable entry is where the source resumes.
    assert_eq!(b.resume_point("s").unwrap().checkpoint, "c2");
}

#[tokio::test]
async fn full_buffer_makes_push_wait_until_an_ack_frees_space() {
    use futures_util::FutureExt;
    let dir = tempfile::tempdir().unwrap();
    let max = 64 << 10; // segments of 64 KiB: the smallest
    let b = Buffer::open(dir.path(), 2 * max, &sinks()).unwrap();
    let line = "x".repeat(16 << 10);
    let mut pushed = 0;
    // A push that can go in completes at its first poll (it only awaits free space).
    while let Some(r) = b.push("s", pushed.to_string(), logs(&[&line])).now_or_never() {
        r.unwrap();
        pushed += 1;
        assert!(pushed < 100, "the buffer never filled up");
    }
    assert!(pushed >= 6, "only {pushed} entries fit");
    assert!(b.bytes() <= 2 * max, "held {} bytes", b.bytes());
    let mut waiting = Box::pin(b.push("s", "late".into(), logs(&[&line])));
    assert!(
        (&mut waiting).now_or_never().is_none(),
        "push waits while the buffer is full"
    );
    let mut r = b.reader("http://a");
    let batch = r.read_batch(u64::MAX).unwrap().unwrap();
    assert_eq!(batch.entries.len(), pushed as usize, "nothing was dropped");
    r.ack(&batch).unwrap();
    let first = waiting.await.unwrap().unwrap();
    assert_eq!(first, pushed + 1);
}

#[tokio::test]
async fn frames_of_the_old_format_are_read_as_wire_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let old = logs(&["from", "before"]);
    let payload = codec::encode_v1("s", 1, "cp", &old);
    let mut frame = Vec::new();
    frame.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    frame.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
    frame.extend_from_slice(&payload);
    fs::write(segment_path(dir.path(), 0), &frame).unwrap();
    let b = Buffer::open(dir.path(), 1 << 20, &sinks()).unwrap();
    assert_eq!(
        b.resume_point("s").unwrap(),
        ResumePoint {
            seq: 2,
            checkpoint: "cp".into()
        }
    );
    assert_eq!(b.push("s", "next".into(), logs(&["after"])).await.unwrap(), Some(3));
    let batch = b.reader("http://a").read_batch(u64::MAX).unwrap().unwrap();
    assert_eq!(batch.entries[0].wire, wire(&old));
    assert_eq!((batch.entries[0].first_seq, batch.entries[0].records), (1, 2));
    assert_eq!(first_line(&batch.entries[1]), "after");
}

#[test]
fn lines_encoded_as_they_arrive_give_the_same_wire_bytes_as_lines_encoded_at_push() {
    let text = ["plain", "", "ünïcödé \"quoted\"", &"x".repeat(300)];
    let labels = Labels::from_pairs([("job", "t"), ("stream", "stdout")]);
    let mut encoded = EncodedLines::default();
    // Negative and pre-1970 stamps too: seconds and nanos are split the same way.
    let stamps = [1_795_428_000_000_000_001, 0, -1, 1_500_000_000];
    for (ts, line) in stamps.iter().zip(text) {
        encoded.push(*ts, line);
    }
    let logs = Payload::Logs {
        labels: labels.clone(),
        lines: stamps.iter().zip(text).map(|(ts, l)| (*ts, l.to_string())).collect(),
    };
    let pushed = Payload::EncodedLogs {
        labels: tidewatch_model::loki_push::format_labels(&labels).into(),
        lines: encoded.clone(),
    };
    assert_eq!(pushed.count(), 4);
    assert_eq!(wire(&pushed), wire(&logs));
    let back: Vec<(i64, String)> = encoded.decode();
    assert_eq!(back[2], (-1, text[2].to_string()));
    assert_eq!(back[3].1.len(), 300);
}
