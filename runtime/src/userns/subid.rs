//! Subordinate id ranges: `/etc/subuid` and `/etc/subgid` (`name_or_uid:start:count`, one
//! range a line), as shadow's `newuidmap`/`newgidmap` read them.

use std::io;
use std::path::Path;

/// `count` ids from `start`, delegated to a user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SubordinateRange {
    pub start: u32,
    pub count: u32,
}

/// The ranges of `file` for the user named `name` or numbered `id`, in file order. A missing
/// file means none. Malformed lines are skipped, as shadow does.
pub fn ranges_for(file: &Path, name: &str, id: u32) -> io::Result<Vec<SubordinateRange>> {
    let text = match std::fs::read_to_string(file) {
        Ok(text) => text,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(err) => return Err(err),
    };
    Ok(parse(&text, name, id))
}

fn parse(text: &str, name: &str, id: u32) -> Vec<SubordinateRange> {
    let id_text = id.to_string();
    let mut ranges = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut fields = line.split(':');
        let (Some(owner), Some(start), Some(count), None) =
            (fields.next(), fields.next(), fields.next(), fields.next())
        else {
            continue;
        };
        if owner != name && owner != id_text {
            continue;
        }
        let (Ok(start), Ok(count)) = (start.parse::<u32>(), count.parse::<u32>()) else {
            continue;
        };
        // A range that wraps past the last id is refused by the kernel anyway.
        if count == 0 || start.checked_add(count - 1).is_none() {
            continue;
        }
        ranges.push(SubordinateRange { start, count });
    }
    ranges
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_ranges_by_name_or_uid() {
        let text = "\
# comment
alice:100000:65536
bob:165536:65536
1001:300000:1000
alice:400000:10
broken:line
alice:x:1
alice:1:0
alice:4294967295:2
";
        assert_eq!(
            parse(text, "alice", 1000),
            vec![
                SubordinateRange {
                    start: 100000,
                    count: 65536
                },
                SubordinateRange {
                    start: 400000,
                    count: 10
                },
            ]
        );
        assert_eq!(
            parse(text, "carol", 1001),
            vec![SubordinateRange {
                start: 300000,
                count: 1000
            }]
        );
        assert!(parse(text, "dave", 7).is_empty());
    }

    #[test]
    fn a_missing_file_has_no_ranges() {
        let ranges = ranges_for(Path::new("/nonexistent/subuid"), "root", 0).unwrap();
        assert!(ranges.is_empty());
    }
}
