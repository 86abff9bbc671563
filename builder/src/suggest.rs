//! Did-you-mean: the closest of a few known names to one the user typed, for errors such
//! as a COPY source or an image name that does not exist.

/// The candidate closest to `wanted` when it is close enough to be a likely typo: the
/// same name in another case, or at most a third of its length in edits (at least one,
/// at most three). Ties go to the first candidate.
pub fn closest<'a>(wanted: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let limit = (wanted.chars().count() / 3).clamp(1, 3);
    let mut best: Option<(usize, &str)> = None;
    for candidate in candidates {
        if candidate == wanted {
            continue;
        }
        let distance = if candidate.eq_ignore_ascii_case(wanted) {
            0
        } else {
            edit_distance(wanted, candidate)
        };
        if distance <= limit && best.is_none_or(|(best, _)| distance < best) {
            best = Some((distance, candidate));
        }
    }
    best.map(|(_, candidate)| candidate)
}

/// Edits between `a` and `b` over characters: insertions, deletions, substitutions and
/// swaps of two neighbours (the commonest typo, `scr` for `src`), each counting one.
fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let width = b.len() + 1;
    let mut d: Vec<usize> = vec![0; (a.len() + 1) * width];
    for i in 0..=a.len() {
        d[i * width] = i;
    }
    for (j, cell) in d.iter_mut().enumerate().take(width) {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (d[(i - 1) * width + j] + 1)
                .min(d[i * width + j - 1] + 1)
                .min(d[(i - 1) * width + j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(d[(i - 2) * width + j - 2] + 1);
            }
            d[i * width + j] = best;
        }
    }
    d[a.len() * width + b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typos_are_found_and_strangers_are_not() {
        let names = ["requirements.txt", "README.md", "src", "setup.py"];
        assert_eq!(closest("requirments.txt", names), Some("requirements.txt"));
        assert_eq!(closest("readme.md", names), Some("README.md"));
        assert_eq!(closest("scr", names), Some("src"));
        assert_eq!(closest("Cargo.toml", names), None);
        assert_eq!(
            closest("src", names),
            None,
            "an exact match is no suggestion"
        );
        assert_eq!(
            closest("a", ["b", "c"]),
            Some("b"),
            "one edit for short names"
        );
    }

    #[test]
    fn distances() {
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("busybox", "busybox"), 0);
        assert_eq!(edit_distance("alpine", "apline"), 1);
        assert_eq!(edit_distance("scr", "src"), 1);
    }
}
