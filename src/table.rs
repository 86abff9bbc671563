//! The aligned columns of the data commands (`images`, `history`, `logs --list`): each
//! column as wide as its widest cell, header included, so that no value pushes the
//! columns after it out of line.

/// How a column's cells line up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Align {
    Left,
    /// For numbers and sizes, whose ends line up.
    Right,
}

/// Columns are this far apart, as docker's are.
const GAP: &str = "   ";

/// The header and rows as lines (each ending in `\n`), `columns` giving each column's
/// title and alignment. Widths count characters, not bytes (`…` is one). The last column
/// is not padded, so lines carry no trailing spaces.
pub fn render(columns: &[(&str, Align)], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = columns.iter().map(|(title, _)| width(title)).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(self::width(cell));
        }
    }
    let header: Vec<String> = columns.iter().map(|(title, _)| title.to_string()).collect();
    let mut out = String::new();
    for row in std::iter::once(&header).chain(rows) {
        let mut line = String::new();
        for (index, ((cell, (_, align)), width)) in row.iter().zip(columns).zip(&widths).enumerate()
        {
            if index > 0 {
                line.push_str(GAP);
            }
            let padding = " ".repeat(width - self::width(cell));
            match align {
                Align::Left => {
                    line.push_str(cell);
                    line.push_str(&padding);
                }
                Align::Right => {
                    line.push_str(&padding);
                    line.push_str(cell);
                }
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

fn width(text: &str) -> usize {
    text.chars().count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_line_up_whatever_the_lengths() {
        let rows = vec![
            vec![
                "Less than a minute ago".to_owned(),
                "RUN make…".to_owned(),
                "4.608kB".to_owned(),
                "".to_owned(),
            ],
            vec![
                "2 years ago".to_owned(),
                "COPY . /src".to_owned(),
                "1B".to_owned(),
                "imported".to_owned(),
            ],
        ];
        let text = render(
            &[
                ("CREATED", Align::Left),
                ("CREATED BY", Align::Left),
                ("SIZE", Align::Right),
                ("COMMENT", Align::Left),
            ],
            &rows,
        );
        assert_eq!(
            text,
            "\
CREATED                  CREATED BY       SIZE   COMMENT
Less than a minute ago   RUN make…     4.608kB
2 years ago              COPY . /src        1B   imported
"
        );
    }
}
