//! Turns Docker's log messages into records, per stream: rejoins 16 KiB partial messages,
//! splits lines longer than the maximum, joins multi-line records, and skips what an earlier
//! run already took (resume from a checkpoint).
//!
//! With `timestamps=true` every message starts with `2006-01-02T15:04:05.000000000Z ` (Docker's
//! fixed-width RFC 3339). A message without a trailing newline is a partial: json-file cuts
//! lines at 16 KiB and the API hands out the pieces as they were stored, each with its own
//! timestamp; the line is complete at the piece that ends with a newline, and takes the first
//! piece's timestamp.
//!
//! The checkpoint `(ts, n, bytes)` means: every line stamped before `ts`, the first `n` lines
//! stamped `ts`, and `bytes` bytes of the line after them (emitted early as split pieces) were
//! taken. Lines of one stream are stamped in order, so this names one position in the stream.

use std::borrow::Cow;

use regex::Regex;

use crate::buffer::EncodedLines;

/// Appended to every piece of a split line but the last, so a reader sees the line goes on.
pub const LINE_CONTINUES: &str = " [tidewatch: line continues]";

/// A position in one container stream.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Checkpoint {
    /// Timestamp of the last line taken (ns).
    pub ts: i64,
    /// Lines taken with that timestamp.
    pub n: u64,
    /// Bytes taken of the next line.
    pub bytes: u64,
}

impl Checkpoint {
    /// `ts:n:bytes`.
    pub fn encode(&self) -> String {
        format!("{}:{}:{}", self.ts, self.n, self.bytes)
    }

    /// Parses [`encode`](Self::encode)'s output.
    pub fn decode(s: &str) -> Option<Checkpoint> {
        let mut it = s.split(':');
        let cp = Checkpoint {
            ts: it.next()?.parse().ok()?,
            n: it.next()?.parse().ok()?,
            bytes: it.next()?.parse().ok()?,
        };
        it.next().is_none().then_some(cp)
    }
}

/// Parses Docker's `2006-01-02T15:04:05.999999999Z` (any fraction length, `Z` only) to ns.
pub fn parse_timestamp(s: &[u8]) -> Option<i64> {
    if s.len() == STAMP - 1 {
        return parse_fixed_timestamp(s);
    }
    let s = std::str::from_utf8(s).ok()?;
    let s = s.strip_suffix('Z')?;
    let (date, time) = s.split_once('T')?;
    let mut d = date.split('-');
    let (y, m, day): (i64, i64, i64) = (
        d.next()?.parse().ok()?,
        d.next()?.parse().ok()?,
        d.next()?.parse().ok()?,
    );
    let (hms, frac) = time.split_once('.').unwrap_or((time, ""));
    let mut t = hms.split(':');
    let (hh, mm, ss): (i64, i64, i64) = (
        t.next()?.parse().ok()?,
        t.next()?.parse().ok()?,
        t.next()?.parse().ok()?,
    );
    if !(0..=9999).contains(&y)
        || !(1..=12).contains(&m)
        || !(1..=31).contains(&day)
        || hh > 23
        || mm > 59
        || ss > 60
        || frac.len() > 9
    {
        return None;
    }
    let nanos: i64 = if frac.is_empty() {
        0
    } else {
        frac.parse::<i64>().ok()? * 10i64.pow(9 - frac.len() as u32)
    };
    civil_to_ns(y, m, day, hh, mm, ss, nanos)
}

/// The stamp as Docker writes it with `timestamps=true`: always nine fraction digits, so the
/// fields sit at fixed offsets (every line of every container goes through here).
fn parse_fixed_timestamp(s: &[u8]) -> Option<i64> {
    let digits = |from: usize, to: usize| -> Option<i64> {
        s[from..to].iter().try_fold(0i64, |acc, b| {
            b.is_ascii_digit().then(|| acc * 10 + i64::from(b - b'0'))
        })
    };
    let separators = [
        (4, b'-'),
        (7, b'-'),
        (10, b'T'),
        (13, b':'),
        (16, b':'),
        (19, b'.'),
        (29, b'Z'),
    ];
    if separators.iter().any(|(i, c)| s[*i] != *c) {
        return None;
    }
    let (y, m, day) = (digits(0, 4)?, digits(5, 7)?, digits(8, 10)?);
    let (hh, mm, ss) = (digits(11, 13)?, digits(14, 16)?, digits(17, 19)?);
    if !(1..=12).contains(&m) || !(1..=31).contains(&day) || hh > 23 || mm > 59 || ss > 60 {
        return None;
    }
    civil_to_ns(y, m, day, hh, mm, ss, digits(20, 29)?)
}

fn civil_to_ns(y: i64, m: i64, day: i64, hh: i64, mm: i64, ss: i64, nanos: i64) -> Option<i64> {
    // Days from the civil date (H. Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    (days * 86_400 + hh * 3600 + mm * 60 + ss)
        .checked_mul(1_000_000_000)?
        .checked_add(nanos)
}

/// Bytes of Docker's fixed-width timestamp plus the space after it.
const STAMP: usize = 31;
/// json-file's partial message size.
const PARTIAL: usize = 16 * 1024;

fn looks_like_stamp(b: &[u8]) -> bool {
    b.len() >= STAMP
        && b[4] == b'-'
        && b[10] == b'T'
        && b[29] == b'Z'
        && b[30] == b' '
        && b[..4].iter().all(u8::is_ascii_digit)
}

/// Splits `ts rest` into the timestamp and the rest.
fn split_stamp(msg: &[u8]) -> Option<(i64, &[u8])> {
    let space = msg.iter().take(40).position(|b| *b == b' ')?;
    Some((parse_timestamp(&msg[..space])?, &msg[space + 1..]))
}

/// Bytes of lines per chunk (one buffer entry): big bursts become several modest frames.
pub const ENTRY_BYTES: usize = 256 * 1024;

/// The room a new chunk starts with.
const CHUNK_START_BYTES: usize = 16 * 1024;

/// A finished line's buffer up to this capacity is kept for the next line.
const SPARE_CAPACITY: usize = 4096;

struct Line {
    ts: i64,
    n_before: u64,
    buf: Vec<u8>,
    /// Bytes of the line already emitted or skipped.
    consumed: u64,
    /// Bytes to skip at the start (resume); `u64::MAX`: the whole line.
    skip_to: u64,
    /// Stamped before the line taken last: Docker sending lines again (json-file does so for
    /// a few lines after a rotation while following), dropped without counting.
    backwards: bool,
}

/// Records ready for the buffer, encoded, with the stream's checkpoint after the last of them.
#[derive(Debug)]
pub struct Chunk {
    /// The records.
    pub lines: EncodedLines,
    /// The checkpoint right after them.
    pub cp: Checkpoint,
}

/// A multi-line record being assembled.
struct Pending {
    ts: i64,
    text: String,
    /// The checkpoint after its last line.
    cp: Checkpoint,
}

/// One stream's state.
pub struct StreamLines {
    max_line: usize,
    multiline: Option<Regex>,
    skip: Option<Checkpoint>,
    cur_ts: i64,
    cur_n: u64,
    /// CRC-32 of the last line taken (when it was taken whole), to recognise it sent again.
    last_crc: Option<u32>,
    line: Option<Line>,
    /// The last line's buffer, reused for the next.
    spare: Vec<u8>,
    pending: Option<Pending>,
    /// Records ready, in chunks of about ENTRY_BYTES.
    pub out: Vec<Chunk>,
    /// The checkpoint after `out`'s records.
    pub out_cp: Checkpoint,
    /// Bytes of text in `out`.
    pub out_bytes: usize,
}

impl StreamLines {
    /// A stream that resumes after `resume` (or from the start).
    pub fn new(resume: Option<Checkpoint>, max_line: usize, multiline: Option<Regex>) -> Self {
        StreamLines {
            max_line: max_line.max(1),
            multiline,
            skip: resume,
            cur_ts: i64::MIN,
            cur_n: 0,
            last_crc: None,
            line: None,
            spare: Vec::new(),
            pending: None,
            out: Vec::new(),
            out_cp: resume.unwrap_or_default(),
            out_bytes: 0,
        }
    }

    /// The earliest timestamp still needed (for the `since` of a new request).
    pub fn since_ns(&self) -> Option<i64> {
        self.skip.map(|s| s.ts)
    }

    /// Whether a multi-line record waits for more lines.
    pub fn has_pending(&self) -> bool {
        self.pending.is_some()
    }

    /// Prepares for a new request (after an error or a container restart): everything after
    /// the last emitted record will come again, so a half-received line and a multi-line
    /// record being assembled are dropped, and counting starts over.
    pub fn restart(&mut self) {
        self.line = None;
        self.pending = None;
        self.cur_ts = i64::MIN;
        self.cur_n = 0;
        self.last_crc = None;
        self.skip = (self.out_cp != Checkpoint::default()).then_some(self.out_cp);
    }

    /// Feeds one non-TTY message (`ts text[\n]`).
    pub fn feed_message(&mut self, msg: &[u8]) {
        let (ts, mut rest) = split_stamp(msg).unwrap_or((self.line.as_ref().map(|l| l.ts).unwrap_or(0), msg));
        loop {
            match rest.iter().position(|b| *b == b'\n') {
                Some(i) => {
                    self.add(ts, &rest[..i]);
                    self.end_line();
                    rest = &rest[i + 1..];
                    if rest.is_empty() {
                        break;
                    }
                }
                None => {
                    self.add(ts, rest);
                    break;
                }
            }
        }
    }

    /// Feeds one TTY message: a whole line as bollard cuts the raw stream at newlines, with the
    /// stamps of its 16 KiB pieces still inside.
    pub fn feed_tty(&mut self, msg: &[u8]) {
        let Some((ts, rest)) = split_stamp(msg) else {
            self.add(0, msg);
            self.end_line();
            return;
        };
        let mut text = Vec::with_capacity(rest.len());
        let mut rest = rest;
        while rest.len() > PARTIAL && looks_like_stamp(&rest[PARTIAL..]) {
            text.extend_from_slice(&rest[..PARTIAL]);
            rest = &rest[PARTIAL + STAMP..];
        }
        text.extend_from_slice(rest);
        while text.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
            text.pop();
        }
        self.add(ts, &text);
        self.end_line();
    }

    fn add(&mut self, ts: i64, bytes: &[u8]) {
        if self.line.is_none() {
            let n_before = if self.cur_ts == ts { self.cur_n } else { 0 };
            let backwards = self.cur_ts != i64::MIN && ts < self.cur_ts;
            let skip_to = match self.skip {
                _ if backwards => u64::MAX,
                Some(s) if ts < s.ts || (ts == s.ts && n_before < s.n) => u64::MAX,
                Some(s) if ts == s.ts && n_before == s.n => s.bytes,
                _ => 0,
            };
            self.line = Some(Line {
                ts,
                n_before,
                buf: std::mem::take(&mut self.spare),
                consumed: 0,
                skip_to,
                backwards,
            });
        }
        let line = self.line.as_mut().expect("set above");
        if line.skip_to == u64::MAX {
            return;
        }
        line.buf.extend_from_slice(bytes);
        self.drain(false);
    }

    /// Skips and emits what is decided of the current line; with `last`, all of it.
    fn drain(&mut self, last: bool) {
        let max = self.max_line;
        let Some(line) = self.line.as_mut() else { return };
        if line.consumed < line.skip_to {
            let drop = ((line.skip_to - line.consumed) as usize).min(line.buf.len());
            line.buf.drain(..drop);
            line.consumed += drop as u64;
        }
        if line.consumed < line.skip_to && !last {
            return;
        }
        let mut pieces = Vec::new();
        while line.buf.len() > max {
            // Cut at a character boundary so each piece stays valid UTF-8.
            let mut cut = max;
            while cut > 0 && (line.buf[cut] & 0xC0) == 0x80 {
                cut -= 1;
            }
            if cut == 0 {
                cut = max;
            }
            let piece: Vec<u8> = line.buf.drain(..cut).collect();
            line.consumed += cut as u64;
            pieces.push((
                line.ts,
                String::from_utf8_lossy(&piece).into_owned() + LINE_CONTINUES,
                Checkpoint {
                    ts: line.ts,
                    n: line.n_before,
                    bytes: line.consumed,
                },
            ));
        }
        for (ts, text, cp) in pieces {
            self.emit(ts, &text, cp, false);
        }
    }

    fn recycle(&mut self, mut buf: Vec<u8>) {
        if buf.capacity() <= SPARE_CAPACITY {
            buf.clear();
            self.spare = buf;
        }
    }

    fn end_line(&mut self) {
        self.drain(true);
        let Some(line) = self.line.take() else { return };
        if line.backwards {
            return self.recycle(line.buf);
        }
        // json-file also sends the last line before a rotation again, with its own stamp.
        let crc = (line.consumed == 0 && line.skip_to == 0).then(|| crc32fast::hash(&line.buf));
        if crc.is_some() && self.cur_ts == line.ts && crc == self.last_crc {
            return self.recycle(line.buf);
        }
        self.last_crc = crc;
        self.cur_ts = line.ts;
        self.cur_n = line.n_before + 1;
        let cp = Checkpoint {
            ts: line.ts,
            n: line.n_before + 1,
            bytes: 0,
        };
        if line.skip_to == u64::MAX || (line.consumed > 0 && line.buf.is_empty()) {
            if line.skip_to != u64::MAX {
                self.skip = None;
            }
            return self.recycle(line.buf);
        }
        self.skip = None;
        let whole = line.consumed == 0;
        let text = match std::str::from_utf8(&line.buf) {
            Ok(t) => Cow::Borrowed(t),
            Err(_) => String::from_utf8_lossy(&line.buf),
        };
        self.emit(line.ts, &text, cp, whole);
        drop(text);
        self.recycle(line.buf);
    }

    fn emit(&mut self, ts: i64, text: &str, cp: Checkpoint, whole_line: bool) {
        let Some(start) = &self.multiline else {
            self.push_out(ts, text, cp);
            return;
        };
        if !whole_line {
            self.flush_pending();
            self.push_out(ts, text, cp);
            return;
        }
        let starts = start.is_match(text);
        match &mut self.pending {
            Some(p) if !starts && p.text.len() + 1 + text.len() <= self.max_line => {
                p.text.push('\n');
                p.text.push_str(text);
                p.cp = cp;
            }
            _ => {
                self.flush_pending();
                self.pending = Some(Pending {
                    ts,
                    text: text.to_string(),
                    cp,
                });
            }
        }
    }

    /// Emits the multi-line record being assembled (on a new start line, a timeout or the end).
    pub fn flush_pending(&mut self) {
        if let Some(p) = self.pending.take() {
            self.push_out(p.ts, &p.text, p.cp);
        }
    }

    fn push_out(&mut self, ts: i64, text: &str, cp: Checkpoint) {
        match self.out.last_mut() {
            Some(chunk) if chunk.lines.byte_len() < ENTRY_BYTES => {
                chunk.lines.push(ts, text);
                chunk.cp = cp;
            }
            _ => {
                // A second of a busy container's lines, so a burst does not grow it step by step.
                let mut lines = EncodedLines::with_capacity(CHUNK_START_BYTES.max(text.len() + 32));
                lines.push(ts, text);
                self.out.push(Chunk { lines, cp });
            }
        }
        self.out_bytes += text.len();
        self.out_cp = cp;
    }

    /// At the end of a stream (container stopped): a partial line without its newline is
    /// complete as it is.
    pub fn finish(&mut self) {
        if self.line.is_some() {
            self.end_line();
        }
        self.flush_pending();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stamp(s: u32, ns: u32) -> String {
        format!("2026-11-23T10:00:{s:02}.{ns:09}Z ")
    }

    fn records(s: &StreamLines) -> Vec<(i64, String)> {
        s.out.iter().flat_map(|c| c.lines.decode()).collect()
    }

    fn lines(s: &StreamLines) -> Vec<String> {
        records(s).into_iter().map(|(_, line)| line).collect()
    }

    #[test]
    fn timestamps_parse_to_nanoseconds() {
        assert_eq!(parse_timestamp(b"1970-01-01T00:00:01.5Z"), Some(1_500_000_000));
        assert_eq!(
            parse_timestamp(b"2026-11-23T10:00:00.000000001Z"),
            Some(1_795_428_000_000_000_001)
        );
        assert_eq!(parse_timestamp(b"2026-13-23T10:00:00Z"), None);
        assert_eq!(parse_timestamp(b"garbage"), None);
        assert_eq!(
            parse_timestamp(b"9999-12-31T23:59:59.999999999Z"),
            None,
            "past i64 nanoseconds"
        );
        assert_eq!(parse_timestamp(b"99999999999999-01-01T00:00:00Z"), None);
        // Docker's own width (nine fraction digits) takes the fixed-offset path; it agrees
        // with the general one and refuses what the general one refuses.
        assert_eq!(
            parse_timestamp(b"2026-02-28T23:59:60.500000000Z"),
            parse_timestamp(b"2026-02-28T23:59:60.5Z")
        );
        assert!(parse_timestamp(b"2026-02-28T23:59:60.5Z").is_some());
        for bad in [
            &b"2026-11-23T10:00:00.00000000xZ"[..],
            b"2026-11-23 10:00:00.000000000Z",
            b"2026-11-23T24:00:00.000000000Z",
            b"2026-00-23T10:00:00.000000000Z",
            b"2026-11-23T10:00:00.000000000+",
            b"+026-11-23T10:00:00.000000000Z",
        ] {
            assert_eq!(parse_timestamp(bad), None, "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn partial_messages_are_rejoined_with_the_first_stamp() {
        let mut s = StreamLines::new(None, 1 << 20, None);
        s.feed_message(format!("{}aaa", stamp(1, 0)).as_bytes());
        s.feed_message(format!("{}bbb", stamp(1, 5)).as_bytes());
        s.feed_message(format!("{}ccc\n", stamp(2, 0)).as_bytes());
        s.feed_message(format!("{}d\n", stamp(2, 0)).as_bytes());
        assert_eq!(lines(&s), ["aaabbbccc", "d"]);
        assert_eq!(
            records(&s)[0].0,
            parse_timestamp(stamp(1, 0).trim().as_bytes()).unwrap()
        );
        assert_eq!(
            s.out_cp.n, 1,
            "d is the first line stamped 00:02 (the joined line took 00:01)"
        );
    }

    #[test]
    fn resume_skips_exactly_what_was_taken() {
        let msgs: Vec<String> = (0..6).map(|i| format!("{}l{i}\n", stamp(1 + i / 3, 0))).collect();
        let mut first = StreamLines::new(None, 1 << 20, None);
        for m in &msgs[..4] {
            first.feed_message(m.as_bytes());
        }
        let cp = first.out_cp;
        assert_eq!((cp.n, cp.bytes), (1, 0));
        let mut second = StreamLines::new(Checkpoint::decode(&cp.encode()), 1 << 20, None);
        for m in &msgs {
            second.feed_message(m.as_bytes());
        }
        assert_eq!(lines(&second), ["l4", "l5"]);
        // Three lines with the same stamp: resuming after two takes the third.
        let mut third = StreamLines::new(
            Some(Checkpoint {
                ts: parse_timestamp(stamp(1, 0).trim().as_bytes()).unwrap(),
                n: 2,
                bytes: 0,
            }),
            1 << 20,
            None,
        );
        for m in &msgs {
            third.feed_message(m.as_bytes());
        }
        assert_eq!(lines(&third), ["l2", "l3", "l4", "l5"]);
    }

    #[test]
    fn long_lines_are_split_marked_and_resumed_mid_line() {
        let mut s = StreamLines::new(None, 10, None);
        s.feed_message(format!("{}0123456789abcdefghijXYZ\n", stamp(1, 0)).as_bytes());
        assert_eq!(
            lines(&s),
            [
                format!("0123456789{LINE_CONTINUES}"),
                format!("abcdefghij{LINE_CONTINUES}"),
                "XYZ".to_string()
            ]
        );
        // A crash after the first piece: the rest comes once.
        let mut r = StreamLines::new(
            Some(Checkpoint {
                ts: parse_timestamp(stamp(1, 0).trim().as_bytes()).unwrap(),
                n: 0,
                bytes: 10,
            }),
            10,
            None,
        );
        r.feed_message(format!("{}0123456789abcdefghijXYZ\n", stamp(1, 0)).as_bytes());
        assert_eq!(lines(&r), [format!("abcdefghij{LINE_CONTINUES}"), "XYZ".to_string()]);
    }

    #[test]
    fn lines_sent_again_after_a_rotation_are_dropped() {
        let mut s = StreamLines::new(None, 1 << 20, None);
        for i in [1, 2, 3, 3, 2, 3, 4] {
            s.feed_message(format!("{}l{i}\n", stamp(i, 0)).as_bytes());
        }
        assert_eq!(lines(&s), ["l1", "l2", "l3", "l4"]);
    }

    #[test]
    fn multiline_records_join_until_the_next_start() {
        let mut s = StreamLines::new(None, 1 << 20, Some(Regex::new(r"^\d").unwrap()));
        for l in ["1 start", "  at a", "  at b", "2 next"] {
            s.feed_message(format!("{}{l}\n", stamp(1, 0)).as_bytes());
        }
        assert_eq!(lines(&s), ["1 start\n  at a\n  at b"]);
        assert_eq!(s.out_cp.n, 3, "the pending record's line is not in the checkpoint");
        s.finish();
        assert_eq!(lines(&s)[1], "2 next");
    }

    #[test]
    fn tty_lines_lose_their_inner_stamps_and_carriage_return() {
        let mut s = StreamLines::new(None, 1 << 20, None);
        let a = "a".repeat(PARTIAL);
        s.feed_tty(format!("{}{a}{}bc\r\n", stamp(1, 0), stamp(1, 1)).as_bytes());
        assert_eq!(lines(&s), [format!("{a}bc")]);
    }
}
