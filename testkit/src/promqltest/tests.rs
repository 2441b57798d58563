//! Unit tests: the script parser, the API answer parser, the comparison, the `@` rewriting and
//! the runner's loading logic (against an in-memory fake target).

use std::collections::BTreeMap;

use super::*;

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

fn floats(values: &[SeqValue]) -> Vec<Option<f64>> {
    values
        .iter()
        .map(|v| match v {
            SeqValue::Float(f) => Some(*f),
            SeqValue::Omitted => None,
            SeqValue::Histogram => Some(f64::MAX),
        })
        .collect()
}

fn parse_ok(text: &str) -> Script {
    parse_script("t.test", text).unwrap_or_else(|e| panic!("{e}"))
}

fn only_eval(script: &Script) -> &Eval {
    let evals: Vec<&Eval> = script
        .commands
        .iter()
        .filter_map(|c| match c {
            Command::Eval(e) => Some(&**e),
            _ => None,
        })
        .collect();
    assert_eq!(evals.len(), 1, "{script:?}");
    evals[0]
}

#[test]
fn durations() {
    assert_eq!(parse_duration("5m"), Ok(300_000));
    assert_eq!(parse_duration("1h30m"), Ok(5_400_000));
    assert_eq!(parse_duration("10s"), Ok(10_000));
    assert_eq!(parse_duration("10s53ms"), Ok(10_053));
    assert_eq!(parse_duration("0"), Ok(0));
    assert_eq!(parse_duration("0s"), Ok(0));
    assert_eq!(parse_duration("1d"), Ok(86_400_000));
    assert_eq!(parse_duration("2w"), Ok(14 * 86_400_000));
    assert_eq!(parse_duration("1y"), Ok(365 * 86_400_000));
    assert_eq!(parse_duration("1000ms"), Ok(1000));
    for bad in ["", "5", "5x", "30m1h", "-5m", "1.5m", "m"] {
        assert!(parse_duration(bad).is_err(), "{bad:?} should not parse");
    }
}

#[test]
fn numbers_as_go_parses_them() {
    assert_eq!(parse_number("1"), Ok(1.0));
    assert_eq!(parse_number("-2"), Ok(-2.0));
    assert_eq!(parse_number("0x10"), Ok(16.0));
    assert_eq!(parse_number("010"), Ok(8.0), "ParseInt base 0: leading zero is octal");
    assert_eq!(parse_number("12.34e6"), Ok(12_340_000.0));
    assert_eq!(parse_number(".5"), Ok(0.5));
    assert_eq!(parse_number("2."), Ok(2.0));
    assert_eq!(parse_number("+Inf"), Ok(f64::INFINITY));
    assert_eq!(parse_number("-inf"), Ok(f64::NEG_INFINITY));
    assert!(parse_number("NaN").unwrap().is_nan());
    for bad in ["", "foo", "{} 1", "1 2", "metric"] {
        assert!(parse_number(bad).is_err(), "{bad:?}");
    }
}

#[test]
fn expanding_notation() {
    assert_eq!(
        floats(&expand_values("1+2x3").unwrap()),
        [Some(1.0), Some(3.0), Some(5.0), Some(7.0)]
    );
    assert_eq!(
        floats(&expand_values("5-1x2").unwrap()),
        [Some(5.0), Some(4.0), Some(3.0)]
    );
    assert_eq!(
        floats(&expand_values("-1-2x2").unwrap()),
        [Some(-1.0), Some(-3.0), Some(-5.0)]
    );
    assert_eq!(
        floats(&expand_values("7x2").unwrap()),
        [Some(7.0); 3],
        "axn is n+1 points"
    );
    assert_eq!(floats(&expand_values("_").unwrap()), [None]);
    assert_eq!(floats(&expand_values("_x3").unwrap()), [None; 3], "_xn is n points");
    assert_eq!(
        floats(&expand_values("1 _ 3  _x2\t4").unwrap()),
        [Some(1.0), None, Some(3.0), None, None, Some(4.0)]
    );
    assert_eq!(
        floats(&expand_values("1e3+1e2x1").unwrap()),
        [Some(1000.0), Some(1100.0)]
    );
    assert_eq!(floats(&expand_values("1e-3").unwrap()), [Some(0.001)]);
    // Accumulated in floating point, as Prometheus' parser does: 0.1+0.1+0.1 != 0.3.
    let v = floats(&expand_values("0+0.1x3").unwrap());
    assert_eq!(v[3], Some(0.1 + 0.1 + 0.1));
    assert_ne!(v[3], Some(0.3));
    let special = expand_values("stale NaN Inf -Inf +Inf").unwrap();
    match special[0] {
        SeqValue::Float(f) => assert_eq!(f.to_bits(), STALE_NAN_BITS),
        other => panic!("{other:?}"),
    }
    assert!(matches!(special[1], SeqValue::Float(f) if f.is_nan() && f.to_bits() != STALE_NAN_BITS));
    assert_eq!(
        floats(&special[2..]),
        [Some(f64::INFINITY), Some(f64::NEG_INFINITY), Some(f64::INFINITY)]
    );
    assert_eq!(
        floats(&expand_values("Infx1 -Inf+0x1").unwrap())[..2],
        [Some(f64::INFINITY); 2]
    );
    for bad in ["1+2", "x3", "1x", "abc", "1+x3", "_xa", "1..2"] {
        assert!(expand_values(bad).is_err(), "{bad:?} should not parse");
    }
}

#[test]
fn native_histograms_are_recognised_not_decoded() {
    let v = expand_values("1 {{schema:0 sum:1 count:1 buckets:[1 2]}}x2 _ {{sum:2 count:2}}+{{sum:3 count:3}}x1 4")
        .unwrap();
    assert_eq!(v.len(), 1 + 3 + 1 + 2 + 1);
    assert!(matches!(v[1], SeqValue::Histogram) && matches!(v[3], SeqValue::Histogram));
    assert!(matches!(v[4], SeqValue::Omitted));
    assert!(matches!(v[7], SeqValue::Float(f) if f == 4.0));
    assert!(expand_values("{{schema:0").is_err());
}

#[test]
fn series_selectors() {
    let (l, v) = parse_series_desc(r#"metric{a="b", c="d"} 1 2"#).unwrap();
    assert_eq!(l, labels(&[("__name__", "metric"), ("a", "b"), ("c", "d")]));
    assert_eq!(v.len(), 2);
    let (l, _) = parse_series_desc(r#"{__name__="x", a="b"} 1"#).unwrap();
    assert_eq!(l, labels(&[("__name__", "x"), ("a", "b")]));
    let (l, v) = parse_series_desc("{} 5").unwrap();
    assert!(l.is_empty());
    assert_eq!(floats(&v), [Some(5.0)]);
    let (l, _) = parse_series_desc("ns:metric:rate5m 1").unwrap();
    assert_eq!(l, labels(&[("__name__", "ns:metric:rate5m")]));
    let (l, _) = parse_series_desc(r#"m{a="say \"hi\"\n", b='single "q"', c=`raw\n`,} 1"#).unwrap();
    assert_eq!(l["a"], "say \"hi\"\n");
    assert_eq!(l["b"], "single \"q\"");
    assert_eq!(l["c"], "raw\\n");
    let (l, _) = parse_series_desc(r#"m{a="\x41\101\u00e9"} 1"#).unwrap();
    assert_eq!(l["a"], "AAé");
    // 3.x UTF-8 names; an empty value is the absence of the label.
    let (l, _) = parse_series_desc(r#"{"metric.name", "label.x"="y", z=""} 1"#).unwrap();
    assert_eq!(l, labels(&[("__name__", "metric.name"), ("label.x", "y")]));
    // Keywords are fine as label names; tabs separate values.
    let (l, v) = parse_series_desc("m{by=\"1\", on=\"2\"}\t1\t2").unwrap();
    assert_eq!(l.len(), 3);
    assert_eq!(v.len(), 2);
    for bad in [
        r#"m{a="b} 1"#,
        r#"m{a="b", a="c"} 1"#,
        r#"m{a} 1"#,
        r#"m{a=b} 1"#,
        r#"m{"x", __name__="y"} 1"#,
        r#"m{a="b"}1"#,
        "1 2",
        r#"m{a="\q"} 1"#,
    ] {
        assert!(parse_series_desc(bad).is_err(), "{bad:?} should not parse");
    }
}

const SCRIPT: &str = r#"
# comment
load 5m
	http_requests{job="api", instance="0"}	0+10x10
	http_requests{job="api", instance="1"}	0+20x10

eval instant at 50m sum by (job) (http_requests)
	{job="api"} 300

eval_ordered instant at 50m sort(http_requests)
	http_requests{job="api", instance="0"} 100
	http_requests{job="api", instance="1"} 200

clear

load 1m
	metric 1 2 _ 4

eval range from 0 to 3m step 1m metric
	metric 1 2 2 4

eval_fail instant at 0m label_join(dup, "label", "", "this")
	expected_fail_message vector cannot contain metrics with the same labelset

eval instant at 1m scalar(metric)
	2

eval_warn instant at 1m quantile(2, metric)
	{} +Inf

eval instant at 1m metric
	expect no_warn
	expect info msg: PromQL info: something
	expect info regex: ^PromQL
	metric 2

eval instant at 1m metric[1m]
	expect range vector from 0 to 1m step 1m
	metric 1 2

eval instant at 1m "hello"
	expect string "hello"

eval instant at 1m metric
	expect fail regex: bad.*thing
"#;

#[test]
fn parses_every_command() {
    let script = parse_ok(SCRIPT);
    let kinds: Vec<&str> = script
        .commands
        .iter()
        .map(|c| match c {
            Command::Clear { .. } => "clear",
            Command::Load(_) => "load",
            Command::Eval(_) => "eval",
        })
        .collect();
    assert_eq!(
        kinds,
        [
            "load", "eval", "eval", "clear", "load", "eval", "eval", "eval", "eval", "eval", "eval", "eval", "eval"
        ]
    );
    let Command::Load(load) = &script.commands[0] else {
        panic!()
    };
    assert_eq!((load.line, load.interval_ms, load.series.len()), (3, 300_000, 2));
    assert_eq!(load.series[1].line, 5);
    assert_eq!(load.series[1].float_samples(load.interval_ms)[10], (3_000_000, 200.0));
    let Command::Load(load) = &script.commands[4] else {
        panic!()
    };
    assert_eq!(
        load.series[0].float_samples(load.interval_ms),
        [(0, 1.0), (60_000, 2.0), (180_000, 4.0)],
        "`_` leaves a gap"
    );
    let evals: Vec<&Eval> = script
        .commands
        .iter()
        .filter_map(|c| match c {
            Command::Eval(e) => Some(&**e),
            _ => None,
        })
        .collect();
    assert_eq!(evals[0].line, 7);
    assert_eq!(evals[0].expr, "sum by (job) (http_requests)");
    assert_eq!(evals[0].time, EvalTime::Instant { at_ms: 3_000_000 });
    assert_eq!(evals[0].expected[0].labels, labels(&[("job", "api")]));
    assert!(evals[1].ordered);
    assert_eq!(evals[1].expected.iter().map(|e| e.pos).collect::<Vec<_>>(), [1, 2]);
    assert_eq!(
        evals[2].time,
        EvalTime::Range {
            start_ms: 0,
            end_ms: 180_000,
            step_ms: 60_000
        }
    );
    assert_eq!(evals[2].expected[0].values.len(), 4);
    assert!(evals[3].fail);
    assert!(
        matches!(&evals[3].fail_matches[..], [TextMatch::Message(m)] if m == "vector cannot contain metrics with the same labelset")
    );
    assert_eq!(evals[4].expect_scalar, Some(2.0));
    assert!(evals[4].expected.is_empty());
    assert!(evals[5].warn);
    assert_eq!(evals[5].expected[0].values.len(), 1);
    assert!(evals[6].expect_no_warn);
    assert_eq!(evals[6].expect_info.len(), 2);
    assert_eq!(evals[6].expected[0].pos, 1, "expect lines do not count as positions");
    assert_eq!(evals[7].range_vector, Some((0, 60_000, 60_000)));
    assert!(evals[7].exclude_from_range_query);
    assert_eq!(evals[8].expect_string.as_deref(), Some("hello"));
    assert!(evals[9].fail);
    assert!(matches!(&evals[9].fail_matches[..], [TextMatch::Regex(r)] if r.is_match("a bad thing")));
}

#[test]
fn histogram_expectations_are_flagged() {
    let s = parse_ok("eval instant at 1m h\n  h {{schema:0 sum:1 count:1}}\n");
    assert!(only_eval(&s).expects_histogram);
    let s = parse_ok("load_with_nhcb 5m\n  h_bucket{le=\"1\"} 1+1x3\n");
    let Command::Load(l) = &s.commands[0] else { panic!() };
    assert!(l.with_nhcb);
}

#[test]
fn bad_input_names_file_and_line() {
    let cases: &[(&str, usize, &str)] = &[
        ("load 5m\n  m 1\n\nfoo bar\n", 4, "invalid command"),
        ("\n\neval instant at xyz m\n", 3, "invalid timestamp definition"),
        ("eval instant 5m m\n", 1, "invalid evaluation command"),
        ("load 5m\n  m 1\n  m{a=\"b\" 2\n", 3, "expected ',' or '}'"),
        ("load five\n", 1, "invalid step definition"),
        (
            "eval instant at 5m m\n  m 1 2\n",
            2,
            "expecting multiple values in instant evaluation",
        ),
        (
            "eval instant at 5m m\n  expect sometimes\n",
            2,
            "invalid expect statement",
        ),
        (
            "eval instant at 5m m\n  expect warn\n  expect no_warn\n",
            3,
            "warn and no_warn",
        ),
        (
            "eval range from 5m to 1m step 1m m\n",
            1,
            "end timestamp (1m) is before start timestamp (5m)",
        ),
        (
            "eval_fail instant at 5m m\n  expected_fail_regexp (\n",
            2,
            "invalid regexp",
        ),
        (
            "eval instant at 1m m\n  expect string hello\n",
            2,
            "expected string literal not valid",
        ),
    ];
    for (text, line, message) in cases {
        let err = parse_script("dir/file.test", text).expect_err(text);
        assert_eq!(
            (err.file.as_str(), err.line),
            ("dir/file.test", *line),
            "{text:?}: {err}"
        );
        assert!(err.message.contains(message), "{text:?}: {err}");
        assert!(err.to_string().starts_with(&format!("dir/file.test:{line}: ")), "{err}");
    }
}

#[test]
fn comment_or_blank_line_ends_a_block() {
    // As in Prometheus' getLines: the comment becomes an empty line, so `m 2` is a command.
    let err = parse_script("f.test", "load 5m\n  m 1\n  # note\n  m 2\n").unwrap_err();
    assert_eq!(err.line, 4);
    // Indentation does not matter; only a blank line ends a block.
    let s = parse_ok("load 5m\nm 1\n\neval instant at 0 m\nm 1\n");
    assert_eq!(s.commands.len(), 2);
    let err = parse_script("f.test", "load 5m\nm 1\neval instant at 0 m\n").unwrap_err();
    assert_eq!(err.line, 3);
}

#[test]
fn bundled_scripts_parse() {
    for (dir, files, evals) in [("v2.42.0", 11, 566), ("v3.5.0", 17, 1479)] {
        let root = scripts_root().join(dir);
        let Ok(entries) = std::fs::read_dir(&root) else {
            eprintln!("skipping: no scripts at {}", root.display());
            return;
        };
        let mut n_files = 0;
        let mut n_evals = 0;
        for entry in entries {
            let path = entry.unwrap().path();
            let text = std::fs::read_to_string(&path).unwrap();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            let script = parse_script(&name, &text).unwrap_or_else(|e| panic!("{dir}/{e}"));
            n_files += 1;
            for c in &script.commands {
                if let Command::Eval(e) = c {
                    n_evals += 1;
                    // The `@` rewriting follows every expression of the bundled scripts.
                    if let Err(err) = inject_at(&e.expr, 1000) {
                        panic!("{dir}/{name}:{}: {} -> {err}", e.line, e.expr);
                    }
                }
            }
        }
        assert_eq!((n_files, n_evals), (files, evals), "{dir} (counts from SOURCE.txt)");
    }
}

#[test]
fn api_answers() {
    let r = parse_query_response(
        200,
        r#"{"status":"success","data":{"resultType":"vector","result":[
            {"metric":{"__name__":"m","a":"b"},"value":[3000,"1.5"]},
            {"metric":{},"value":[3000.001,"NaN"]},
            {"metric":{"x":"y"},"value":[1.5,"+Inf"]},
            {"metric":{"x":"z"},"value":[1.5,"-Inf"]}]}}"#,
    )
    .unwrap();
    let Ok(QueryValue::Vector(v)) = &r.result else {
        panic!("{r:?}")
    };
    assert_eq!(v[0].labels, labels(&[("__name__", "m"), ("a", "b")]));
    assert_eq!((v[0].t_ms, v[0].value), (3_000_000, 1.5));
    assert_eq!(v[1].t_ms, 3_000_001);
    assert!(v[1].value.is_nan());
    assert_eq!(
        (v[2].t_ms, v[2].value, v[3].value),
        (1500, f64::INFINITY, f64::NEG_INFINITY)
    );
    assert!(r.warnings.is_empty() && r.infos.is_empty());

    let r = parse_query_response(
        200,
        r#"{"status":"success","data":{"resultType":"matrix","result":[
            {"metric":{"a":"1"},"values":[[0,"1"],[60,"2"]]}]},"warnings":["w1"],"infos":["i1"]}"#,
    )
    .unwrap();
    let Ok(QueryValue::Matrix(m)) = &r.result else {
        panic!("{r:?}")
    };
    assert_eq!(m[0].floats, [(0, 1.0), (60_000, 2.0)]);
    assert_eq!(
        (r.warnings.as_slice(), r.infos.as_slice()),
        (&["w1".to_string()][..], &["i1".to_string()][..])
    );

    let r = parse_query_response(
        200,
        r#"{"status":"success","data":{"resultType":"scalar","result":[1,"-0.25"]}}"#,
    );
    assert_eq!(
        r.unwrap().result,
        Ok(QueryValue::Scalar {
            t_ms: 1000,
            value: -0.25
        })
    );
    let r = parse_query_response(
        200,
        r#"{"status":"success","data":{"resultType":"string","result":[1,"foo"]}}"#,
    );
    assert_eq!(
        r.unwrap().result,
        Ok(QueryValue::String {
            t_ms: 1000,
            value: "foo".into()
        })
    );
    let r = parse_query_response(422, r#"{"status":"error","errorType":"execution","error":"boom"}"#).unwrap();
    assert_eq!(
        r.result,
        Err(ApiError {
            http_status: 422,
            error_type: "execution".into(),
            message: "boom".into()
        })
    );
    assert!(parse_query_response(502, "<html>bad gateway</html>").is_err());
}

#[test]
fn request_encoding() {
    assert_eq!(format_seconds(0), "0");
    assert_eq!(format_seconds(3_000_000), "3000");
    assert_eq!(format_seconds(1_500), "1.500");
    assert_eq!(format_seconds(-1_500), "-1.500");
    assert_eq!(format_seconds(-1), "-0.001");
    assert_eq!(
        target::form_encode(r#"sum by (a) (m{b="c d"}) + 1"#),
        "sum+by+%28a%29+%28m%7Bb%3D%22c+d%22%7D%29+%2B+1"
    );
}

#[test]
fn writes_are_cut_in_time_order_across_series() {
    let series = vec![
        WriteSeries {
            labels: labels(&[("__name__", "a"), ("z", "1"), ("b", "2")]),
            samples: (0..10).map(|i| (i * 3_600_000, i as f64)).collect(),
        },
        WriteSeries {
            labels: labels(&[("__name__", "b")]),
            samples: vec![(0, 1.0), (1, f64::from_bits(STALE_NAN_BITS))],
        },
    ];
    let requests = write_requests(&series, 3);
    assert_eq!(requests.len(), 4);
    let mut newest = i64::MIN;
    let mut seen: BTreeMap<String, Vec<(i64, u64)>> = BTreeMap::new();
    for r in &requests {
        let ts: Vec<i64> = r
            .timeseries
            .iter()
            .flat_map(|s| s.samples.iter().map(|p| p.timestamp))
            .collect();
        assert!(ts.len() <= 3);
        assert!(ts.iter().all(|&t| t >= newest), "request older than the one before");
        newest = ts.iter().copied().max().unwrap();
        for s in &r.timeseries {
            let names: Vec<&str> = s.labels.iter().map(|l| l.name.as_str()).collect();
            assert!(names.windows(2).all(|w| w[0] < w[1]), "labels sorted: {names:?}");
            let name = s.labels.iter().find(|l| l.name == "__name__").unwrap().value.clone();
            seen.entry(name)
                .or_default()
                .extend(s.samples.iter().map(|p| (p.timestamp, p.value.to_bits())));
        }
    }
    assert_eq!(seen["a"].len(), 10);
    assert!(seen["a"].windows(2).all(|w| w[0].0 < w[1].0));
    assert_eq!(
        seen["b"],
        [(0, 1f64.to_bits()), (1, STALE_NAN_BITS)],
        "the stale marker's bits go through"
    );
}

#[test]
fn float_comparison_as_almost_equal() {
    let stale = f64::from_bits(STALE_NAN_BITS);
    assert!(almost_equal(f64::NAN, f64::NAN, EPSILON));
    assert!(almost_equal(stale, stale, EPSILON));
    assert!(!almost_equal(stale, f64::NAN, EPSILON));
    assert!(almost_equal(1.0, 1.0 + 1e-7, EPSILON));
    assert!(!almost_equal(1.0, 1.00001, EPSILON));
    assert!(almost_equal(1e300, 1e300 * (1.0 + 1e-7), EPSILON));
    assert!(almost_equal(f64::INFINITY, f64::INFINITY, EPSILON));
    assert!(!almost_equal(f64::INFINITY, f64::NEG_INFINITY, EPSILON));
    assert!(
        !almost_equal(0.0, 1e-10, EPSILON),
        "near zero: absolute, tiny tolerance"
    );
    assert!(almost_equal(0.0, 1e-320, EPSILON));
    assert!(almost_equal(0.0, -0.0, EPSILON));
}

#[test]
fn compare_like_prometheus() {
    let s = parse_ok("eval instant at 1m m\n  m{a=\"1\"} 1\n  {a=\"2\"} 2\n");
    let e = only_eval(&s);
    let sample = |l: Labels, v: f64| VectorSample {
        labels: l,
        t_ms: 60_000,
        value: v,
        histogram: false,
    };
    let good = QueryValue::Vector(vec![
        sample(labels(&[("a", "2")]), 2.0000001),
        sample(labels(&[("__name__", "m"), ("a", "1")]), 1.0),
    ]);
    assert_eq!(
        compare_result(e, &good, (0, 0, 0)),
        Ok(()),
        "order does not matter, epsilon 1e-6"
    );
    let missing_name = QueryValue::Vector(vec![
        sample(labels(&[("a", "1")]), 1.0),
        sample(labels(&[("a", "2")]), 2.0),
    ]);
    assert!(
        compare_result(e, &missing_name, (0, 0, 0))
            .unwrap_err()
            .contains("unexpected metric {a=\"1\"}")
    );
    let short = QueryValue::Vector(vec![sample(labels(&[("a", "2")]), 2.0)]);
    assert!(compare_result(e, &short, (0, 0, 0)).unwrap_err().contains("not found"));
    let scalar = QueryValue::Scalar { t_ms: 0, value: 1.0 };
    assert!(
        compare_result(e, &scalar, (0, 0, 0))
            .unwrap_err()
            .contains("expected vector or matrix")
    );

    let s = parse_ok("eval_ordered instant at 1m m\n  m{a=\"1\"} 1\n  m{a=\"2\"} 2\n");
    let e = only_eval(&s);
    let ordered = |a: &str, b: &str| {
        QueryValue::Vector(vec![
            sample(labels(&[("__name__", "m"), ("a", a)]), a.parse().unwrap()),
            sample(labels(&[("__name__", "m"), ("a", b)]), b.parse().unwrap()),
        ])
    };
    assert_eq!(compare_result(e, &ordered("1", "2"), (0, 0, 0)), Ok(()));
    assert!(
        compare_result(e, &ordered("2", "1"), (0, 0, 0))
            .unwrap_err()
            .contains("at position 2 but was at 1")
    );

    let s = parse_ok("eval range from 0 to 2m step 1m m\n  m 1 _ 3\n");
    let e = only_eval(&s);
    let series = |points: Vec<(i64, f64)>| {
        QueryValue::Matrix(vec![MatrixSeries {
            labels: labels(&[("__name__", "m")]),
            floats: points,
            histograms: 0,
        }])
    };
    let times = (0, 120_000, 60_000);
    assert_eq!(
        compare_result(e, &series(vec![(0, 1.0), (120_000, 3.0)]), times),
        Ok(())
    );
    assert!(compare_result(e, &series(vec![(0, 1.0), (60_000, 2.0), (120_000, 3.0)]), times).is_err());
    assert!(
        compare_result(e, &series(vec![(0, 1.0), (60_000, 3.0)]), times)
            .unwrap_err()
            .contains("timestamp")
    );

    let s = parse_ok("eval instant at 1m 1\n  1.0000000001\n");
    assert_eq!(
        compare_result(only_eval(&s), &QueryValue::Scalar { t_ms: 0, value: 1.0 }, (0, 0, 0)),
        Ok(())
    );
    let s = parse_ok("eval instant at 1m m\n");
    assert_eq!(
        compare_result(only_eval(&s), &QueryValue::Vector(vec![]), (0, 0, 0)),
        Ok(())
    );
}

#[test]
fn at_modifier_rewriting() {
    let at = |e: &str| inject_at(e, 100_000).unwrap();
    assert_eq!(at("m").as_deref(), Some("m @ 100.000"));
    assert_eq!(
        at(r#"m{a="}"} offset 5m"#).as_deref(),
        Some(r#"m{a="}"} @ 100.000 offset 5m"#)
    );
    assert_eq!(at("rate(m[5m])").as_deref(), Some("rate(m[5m] @ 100.000)"));
    assert_eq!(at("m @ 50").as_deref(), Some("m @ 50"), "an existing @ stays");
    assert_eq!(at("m offset 1m @ start()").as_deref(), Some("m offset 1m @ start()"));
    assert_eq!(
        at("sum_over_time(rate(m[1m])[5m:1m]) + {a=\"b\"}").as_deref(),
        Some("sum_over_time(rate(m[1m])[5m:1m] @ 100.000) + {a=\"b\"} @ 100.000"),
        "selectors inside a subquery are left alone, the subquery gets the @"
    );
    assert_eq!(
        at("SUM BY (job) (m) * ON(job) GROUP_LEFT(x) n").as_deref(),
        Some("SUM BY (job) (m @ 100.000) * ON(job) GROUP_LEFT(x) n @ 100.000"),
        "keywords in any case, label lists untouched"
    );
    assert_eq!(
        at("topk(3, m) > bool -Inf").as_deref(),
        Some("topk(3, m @ 100.000) > bool -Inf")
    );
    assert_eq!(
        at(r#"label_replace(m, "a", "$1", "b", "(.*)")"#).as_deref(),
        Some(r#"label_replace(m @ 100.000, "a", "$1", "b", "(.*)")"#)
    );
    assert_eq!(at("time() - m"), None, "time-dependent functions: no re-runs");
    assert_eq!(at("timestamp(m)"), None);
    assert_eq!(
        at("sum_over_time(vector(time())[100s:1s])").as_deref(),
        Some("sum_over_time(vector(time())[100s:1s] @ 100.000)"),
        "calls inside a subquery do not count"
    );
    assert_eq!(at("1 + 2").as_deref(), Some("1 + 2"));
    assert_eq!(inject_at("m", -1500).unwrap().as_deref(), Some("m @ -1.500"));
    assert!(inject_at("sum(m", 0).is_err());
    assert_eq!(
        at_modifier_cases("m", 50_000).unwrap(),
        Some(("m @ 50.000".to_string(), vec![-500_000, 0, 10_000, 50_000, 500_000]))
    );
    assert_eq!(at_modifier_cases("m", 0).unwrap().unwrap().1, [-1000, 0, 1000]);
}

/// An in-memory server: keeps samples like a TSDB head that refuses samples older than the newest
/// it holds, and answers `<metric name>` (last sample within 5m) and `error`.
#[derive(Default)]
struct FakeTarget {
    data: BTreeMap<Labels, Vec<(i64, f64)>>,
    max_t: Option<i64>,
    resets: usize,
    writes: Vec<usize>,
}

impl Target for FakeTarget {
    fn describe(&self) -> String {
        "fake".into()
    }

    fn reset(&mut self) -> Result<(), String> {
        self.data.clear();
        self.max_t = None;
        self.resets += 1;
        Ok(())
    }

    fn write(&mut self, series: &[WriteSeries]) -> Result<(), String> {
        self.writes.push(series.iter().map(|s| s.samples.len()).sum());
        let before = self.max_t;
        for s in series {
            for &(t, v) in &s.samples {
                if before.is_some_and(|m| t < m) {
                    return Err(format!("out of order sample at {t}"));
                }
                self.data.entry(s.labels.clone()).or_default().push((t, v));
            }
            self.max_t = s.samples.iter().map(|p| p.0).chain(self.max_t).max();
        }
        Ok(())
    }

    fn query_instant(&mut self, expr: &str, t_ms: i64) -> Result<QueryResponse, String> {
        let result = if expr == "error" {
            Err(ApiError {
                http_status: 422,
                error_type: "execution".into(),
                message: "expanding series: boom".into(),
            })
        } else {
            let v = self
                .data
                .iter()
                .filter(|(l, _)| l.get("__name__").map(String::as_str) == Some(expr))
                .filter_map(|(l, points)| {
                    let p = points.iter().rev().find(|p| p.0 <= t_ms && p.0 > t_ms - 300_000)?;
                    Some(VectorSample {
                        labels: l.clone(),
                        t_ms,
                        value: p.1,
                        histogram: false,
                    })
                })
                .collect();
            Ok(QueryValue::Vector(v))
        };
        Ok(QueryResponse {
            result,
            warnings: vec![],
            infos: vec![],
        })
    }

    fn query_range(&mut self, _: &str, _: i64, _: i64, _: i64) -> Result<QueryResponse, String> {
        Err("no range queries".into())
    }
}

fn run_fake(text: &str, opts: Options) -> (FileReport, FakeTarget) {
    let mut target = FakeTarget::default();
    let script = parse_ok(text);
    let only_line = opts
        .filter
        .as_deref()
        .and_then(|f| f.rsplit_once(':'))
        .and_then(|(_, l)| l.parse().ok());
    let report = Runner::new(&mut target, opts).run_script(&script, only_line);
    (report, target)
}

fn outcomes(report: &FileReport) -> Vec<String> {
    report
        .cases
        .iter()
        .map(|c| match &c.outcome {
            Outcome::Passed => format!("{} pass", c.line),
            Outcome::Failed(f) => format!("{} fail {}", c.line, f.kind.as_str()),
            Outcome::Skipped(r) => format!("{} skip {}", c.line, r.split(':').next().unwrap()),
        })
        .collect()
}

#[test]
fn runner_loads_lazily_and_replays_when_going_back_in_time() {
    let text = "\
load 1h
  a 1 2 3 4

eval instant at 3h a
  a 4

load 1h
  b 10 20

eval instant at 1h b
  b 20

eval instant at 3h a
  a 4

clear

eval instant at 3h a

load 1m
  a 7
  a 8

eval instant at 0 a
  a 8

eval instant at 0 error

eval_fail instant at 0 error
  expected_fail_message other boom

eval_fail instant at 0 error
  expected_fail_regexp ^expanding

eval_fail instant at 0 a
";
    let (report, target) = run_fake(text, Options::default());
    assert_eq!(
        outcomes(&report),
        [
            "4 pass",
            "10 pass",
            "13 pass",
            "18 pass",
            "24 pass",
            "27 fail unexpected-error",
            "29 fail wrong-error",
            "32 pass",
            "35 fail missing-error"
        ]
    );
    // b's samples are older than a's: reset, then a and b rewritten together (4 + 2 samples).
    // After `clear`, the reset waits for the next query; within a load the last line wins.
    assert_eq!(report.replays, 1);
    assert_eq!(target.writes, [4, 6, 1]);
    assert_eq!(report.resets, 2);
    assert_eq!(target.resets, 2);
}

#[test]
fn runner_skips_native_histogram_cases_and_filters() {
    let text = "\
load 5m
  h {{schema:0 sum:1 count:1}}x2
  f 1 2 3
  g_bucket{le=\"1\"} 1 2 3

eval instant at 5m f
  f 2

eval instant at 5m h

eval instant at 5m {__name__=~\"f|g\"}

eval instant at 5m f
  f {{schema:0 sum:1 count:1}}

clear

load_with_nhcb 5m
  g_bucket{le=\"1\"} 1 2 3

eval instant at 5m g_bucket
  g_bucket{le=\"1\"} 2

eval instant at 5m histogram_count(g)
";
    let (report, _) = run_fake(text, Options::default());
    assert_eq!(
        outcomes(&report),
        [
            "6 pass",
            "9 skip native histogram",
            "11 skip native histogram",
            "13 skip native histogram",
            "21 pass",
            "24 skip native histogram"
        ]
    );
    assert_eq!(report.skip_reasons().get("native histogram"), Some(&4));

    let opts = Options {
        filter: Some("t.test:21".into()),
        ..Options::default()
    };
    let (report, _) = run_fake(text, opts);
    assert_eq!(outcomes(&report), ["21 pass"]);
}

#[test]
fn report_text_and_json() {
    let (file, _) = run_fake(
        "load 1m\n  a 1\n\neval instant at 0 a\n  a 2\n\neval instant at 0 a\n  a 1\n",
        Options::default(),
    );
    let report = Report {
        target: "fake".into(),
        scripts: "dir".into(),
        extra_checks: false,
        files: vec![file],
        elapsed: std::time::Duration::from_millis(5),
    };
    assert_eq!((report.passed(), report.failed(), report.skipped()), (1, 1, 0));
    let text = report.text(5);
    assert!(text.contains("FAIL t.test:4 [result] eval instant at 0 a"), "{text}");
    assert!(text.contains("expected 2 for a but got 1"), "{text}");
    let json = report.to_json();
    assert_eq!(json["passed"], 1);
    assert_eq!(json["files"][0]["failures"][0]["line"], 4);
    assert_eq!(json["files"][0]["failures"][0]["kind"], "result");
}
