//! The in-memory label index of a block: postings from label name and value to the sorted ids
//! of the series that have them, so matchers resolve without looking at every series.

use std::collections::BTreeMap;

use tidewatch_model::{Labels, Matcher};

/// `name → value → series ids` (ascending). Series ids are positions in label order.
#[derive(Debug, Default)]
pub(super) struct Postings {
    by_name: BTreeMap<String, BTreeMap<String, Vec<u32>>>,
    num_series: u32,
}

impl Postings {
    /// Builds the postings of `series`, whose index is their id.
    pub(super) fn new(series: &[Labels]) -> Postings {
        let mut by_name: BTreeMap<String, BTreeMap<String, Vec<u32>>> = BTreeMap::new();
        for (id, labels) in series.iter().enumerate() {
            for l in labels.iter() {
                let values = match by_name.get_mut(&l.name) {
                    Some(v) => v,
                    None => by_name.entry(l.name.clone()).or_default(),
                };
                match values.get_mut(&l.value) {
                    Some(ids) => ids.push(id as u32),
                    None => {
                        values.insert(l.value.clone(), vec![id as u32]);
                    }
                }
            }
        }
        Postings {
            by_name,
            num_series: series.len() as u32,
        }
    }

    pub(super) fn label_names(&self) -> impl Iterator<Item = &str> {
        self.by_name.keys().map(String::as_str)
    }

    pub(super) fn label_values(&self, name: &str) -> impl Iterator<Item = &str> {
        self.by_name
            .get(name)
            .into_iter()
            .flat_map(|values| values.keys().map(String::as_str))
    }

    /// The ids of the series that satisfy every matcher, ascending (so in label order).
    ///
    /// A matcher that rejects the empty string selects the union of the postings of the values
    /// it accepts; one that accepts it (`!=`, `!~`, `=~".*"`…) also selects series without the
    /// label, so it is resolved as "all series but those whose value it rejects".
    pub(super) fn select(&self, matchers: &[Matcher]) -> Vec<u32> {
        // Matchers that name values first: their sets are small and make the rest cheaper.
        let mut order: Vec<&Matcher> = matchers.iter().collect();
        order.sort_by_key(|m| m.matches_empty());
        let mut result: Option<Vec<u32>> = None;
        for m in order {
            let values = self.by_name.get(&m.name);
            let set = if m.matches_empty() {
                let rejected =
                    values.map(|v| union(v.iter().filter(|(value, _)| !m.matches(value)).map(|(_, ids)| ids)));
                match (&result, rejected) {
                    (_, None) => continue,
                    (Some(current), Some(rejected)) => difference(current, &rejected),
                    (None, Some(rejected)) => difference(&(0..self.num_series).collect::<Vec<_>>(), &rejected),
                }
            } else {
                let accepted = match (m.op, values) {
                    (_, None) => Vec::new(),
                    // An equality needs no scan of the values.
                    (tidewatch_model::MatchOp::Equal, Some(v)) => v.get(&m.value).cloned().unwrap_or_default(),
                    (_, Some(v)) => union(v.iter().filter(|(value, _)| m.matches(value)).map(|(_, ids)| ids)),
                };
                match &result {
                    Some(current) => intersect(current, &accepted),
                    None => accepted,
                }
            };
            if set.is_empty() {
                return set;
            }
            result = Some(set);
        }
        result.unwrap_or_else(|| (0..self.num_series).collect())
    }
}

fn union<'a>(lists: impl Iterator<Item = &'a Vec<u32>>) -> Vec<u32> {
    let mut out: Vec<u32> = lists.flatten().copied().collect();
    out.sort_unstable();
    out.dedup();
    out
}

/// The elements of both ascending lists (postings of the head and of blocks).
pub(crate) fn intersect(a: &[u32], b: &[u32]) -> Vec<u32> {
    let mut out = Vec::with_capacity(a.len().min(b.len()));
    let (mut i, mut j) = (0, 0);
    while i < a.len() && j < b.len() {
        match a[i].cmp(&b[j]) {
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
            std::cmp::Ordering::Equal => {
                out.push(a[i]);
                i += 1;
                j += 1;
            }
        }
    }
    out
}

/// `a` without the elements of `b`; both ascending.
fn difference(a: &[u32], b: &[u32]) -> Vec<u32> {
    let mut out = Vec::with_capacity(a.len());
    let mut j = 0;
    for &x in a {
        while j < b.len() && b[j] < x {
            j += 1;
        }
        if j >= b.len() || b[j] != x {
            out.push(x);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use tidewatch_model::MatchOp;

    #[test]
    fn matchers_resolve_like_a_scan() {
        let mut series = vec![
            Labels::from_pairs([("__name__", "up"), ("job", "a")]),
            Labels::from_pairs([("__name__", "up"), ("job", "b"), ("env", "prod")]),
            Labels::from_pairs([("__name__", "x"), ("env", "dev")]),
            Labels::from_pairs([("__name__", "x")]),
        ];
        series.sort();
        let p = Postings::new(&series);
        let cases = [
            vec![Matcher::equal("__name__", "up")],
            vec![Matcher::new("job", MatchOp::NotEqual, "a").unwrap()],
            vec![Matcher::new("env", MatchOp::Regex, "|dev").unwrap()],
            vec![
                Matcher::new("env", MatchOp::NotRegex, "prod").unwrap(),
                Matcher::equal("__name__", "x"),
            ],
            vec![Matcher::equal("missing", "")],
            vec![Matcher::equal("missing", "y")],
            vec![
                Matcher::new("job", MatchOp::Regex, ".+").unwrap(),
                Matcher::new("env", MatchOp::NotEqual, "").unwrap(),
            ],
            vec![],
        ];
        for matchers in cases {
            let want: Vec<u32> = (0..series.len() as u32)
                .filter(|&i| Matcher::all_match(&matchers, &series[i as usize]))
                .collect();
            assert_eq!(p.select(&matchers), want, "{matchers:?}");
        }
    }
}
