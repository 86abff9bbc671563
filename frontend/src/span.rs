//! Byte spans into the Dockerfile text; line and column are computed only when rendering.

use serde::Serialize;

/// A half-open byte range `[start, end)` into the Dockerfile text the frontend was given.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize)]
pub struct Span {
    pub start: usize,
    pub end: usize,
}

impl Span {
    pub fn new(start: usize, end: usize) -> Self {
        Span { start, end }
    }

    pub fn len(&self) -> usize {
        self.end.saturating_sub(self.start)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// 1-based line and column of `self.start` in `text` (column counted in characters).
    pub fn line_col(&self, text: &str) -> (usize, usize) {
        let start = self.start.min(text.len());
        let before = &text[..floor_char_boundary(text, start)];
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let column = before[line_start..].chars().count() + 1;
        (line, column)
    }
}

fn floor_char_boundary(text: &str, mut index: usize) -> usize {
    while index > 0 && !text.is_char_boundary(index) {
        index -= 1;
    }
    index
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_col_counts_from_one() {
        let text = "FROM a\nRUN  x\n";
        assert_eq!(Span::new(0, 4).line_col(text), (1, 1));
        assert_eq!(Span::new(12, 13).line_col(text), (2, 6));
    }
}
