//! `--call outline` and `--call targets`: what a Dockerfile offers, printed as buildx
//! prints it (tables aligned as Go's tabwriter aligns them), without building.

use std::collections::BTreeSet;

use rbuild_frontend::{Dockerfile, Instruction, InstructionKind, Span, Stage};

/// `--call targets`: every stage, the last one marked as the default, each with the
/// description of the `# NAME ...` comment above its FROM.
pub fn targets(df: &Dockerfile, text: &str) -> String {
    let last = df.stages.len().saturating_sub(1);
    let rows: Vec<Vec<String>> = df
        .stages
        .iter()
        .map(|stage| {
            let name = original_name(stage);
            let description = description(text, stage.span, name.as_deref());
            let shown = match (name, stage.index == last) {
                (None, true) => "(default)".to_owned(),
                (Some(name), true) => format!("{name} (default)"),
                (name, false) => name.unwrap_or_default(),
            };
            vec![shown, description]
        })
        .collect();
    table(&["TARGET", "DESCRIPTION"], &rows, 1)
}

/// `--call outline`: the target (by `--target`, else the last stage), then the build
/// arguments the stages it needs declare (with defaults and descriptions) and the secrets
/// their RUN steps mount.
pub fn outline(df: &Dockerfile, text: &str, target: Option<&str>) -> Result<String, String> {
    let Some(stage) = find_stage(df, target) else {
        let names: Vec<String> = df.stages.iter().filter_map(original_name).collect();
        return Err(format!(
            "target stage `{}` could not be found (the stages are: {})",
            target.unwrap_or_default(),
            names.join(", ")
        ));
    };
    let needed = needed_stages(df, stage.index);
    let mut out = String::new();
    let name = original_name(stage);
    let stage_description = description(text, stage.span, name.as_deref());
    let mut rows = vec![vec![
        "TARGET:".to_owned(),
        name.unwrap_or_else(|| "(default)".to_owned()),
    ]];
    if !stage_description.is_empty() {
        rows.push(vec!["DESCRIPTION:".to_owned(), stage_description]);
    }
    out.push_str(&rows_text(&rows, 1));
    out.push('\n');

    // Global ARGs count when a needed stage uses them: in its FROM line, or redeclared.
    let mut args: Vec<(usize, Vec<String>)> = Vec::new();
    let mut seen = BTreeSet::new();
    let mut declared_in_stages = BTreeSet::new();
    for stage in df.stages.iter().filter(|s| needed.contains(&s.index)) {
        for instruction in &stage.instructions {
            if let InstructionKind::Arg(decls) = &instruction.kind {
                declared_in_stages.extend(decls.iter().map(|d| d.name.clone()));
            }
        }
    }
    let from_lines: Vec<&str> = df
        .stages
        .iter()
        .filter(|s| needed.contains(&s.index))
        .map(|s| s.text.as_str())
        .collect();
    let global = df.global_args.iter().filter(|instruction| {
        let InstructionKind::Arg(decls) = &instruction.kind else {
            return false;
        };
        decls.iter().any(|d| {
            declared_in_stages.contains(&d.name)
                || from_lines.iter().any(|line| uses_variable(line, &d.name))
        })
    });
    let in_stages = df
        .stages
        .iter()
        .filter(|s| needed.contains(&s.index))
        .flat_map(|s| s.instructions.iter());
    for instruction in global.chain(in_stages) {
        let InstructionKind::Arg(decls) = &instruction.kind else {
            continue;
        };
        for decl in decls {
            if !seen.insert(decl.name.clone()) {
                continue;
            }
            let line = instruction.span.line_col(text).0;
            args.push((
                line,
                vec![
                    decl.name.clone(),
                    decl.default.clone().unwrap_or_default(),
                    description(text, instruction.span, Some(&decl.name)),
                ],
            ));
        }
    }
    args.sort_by_key(|(line, _)| *line);
    if !args.is_empty() {
        let rows: Vec<Vec<String>> = args.into_iter().map(|(_, row)| row).collect();
        out.push_str(&table(&["BUILD ARG", "VALUE", "DESCRIPTION"], &rows, 3));
        out.push('\n');
    }

    let mut secrets: Vec<(String, bool)> = Vec::new();
    for stage in df.stages.iter().filter(|s| needed.contains(&s.index)) {
        for instruction in &stage.instructions {
            for (id, required) in secret_mounts(instruction) {
                match secrets.iter_mut().find(|(known, _)| *known == id) {
                    Some(known) => known.1 |= required,
                    None => secrets.push((id, required)),
                }
            }
        }
    }
    if !secrets.is_empty() {
        let rows: Vec<Vec<String>> = secrets
            .into_iter()
            .map(|(id, required)| {
                vec![
                    id,
                    if required {
                        "true".into()
                    } else {
                        String::new()
                    },
                ]
            })
            .collect();
        out.push_str(&table(&["SECRET", "REQUIRED"], &rows, 3));
        out.push('\n');
    }
    Ok(out)
}

/// The stage's `AS` name as written (the parser keeps it lower-cased).
fn original_name(stage: &Stage) -> Option<String> {
    stage.name.as_ref()?;
    stage.text.split_whitespace().last().map(str::to_owned)
}

fn find_stage<'a>(df: &'a Dockerfile, target: Option<&str>) -> Option<&'a Stage> {
    match target {
        None => df.stages.last(),
        Some(target) => df
            .stages
            .iter()
            .find(|s| s.name.as_deref() == Some(target.to_ascii_lowercase().as_str())),
    }
}

/// `target` and the stages it needs: its FROM chain, `COPY --from` and `RUN --mount=from`.
fn needed_stages(df: &Dockerfile, target: usize) -> BTreeSet<usize> {
    let by_reference = |reference: &str| -> Option<usize> {
        let lower = reference.to_ascii_lowercase();
        df.stages
            .iter()
            .find(|s| s.name.as_deref() == Some(lower.as_str()))
            .map(|s| s.index)
            .or_else(|| reference.parse::<usize>().ok())
            .filter(|index| *index < df.stages.len())
    };
    let mut needed = BTreeSet::new();
    let mut todo = vec![target];
    while let Some(index) = todo.pop() {
        if !needed.insert(index) {
            continue;
        }
        let stage = &df.stages[index];
        let mut references = vec![stage.base.as_str()];
        for instruction in &stage.instructions {
            match &instruction.kind {
                InstructionKind::Copy(copy) | InstructionKind::Add(copy) => {
                    references.extend(copy.from.as_ref().map(|(from, _)| from.as_str()));
                }
                InstructionKind::Run(run) => {
                    references.extend(run.mounts.iter().filter_map(|m| m.from()));
                }
                _ => {}
            }
        }
        todo.extend(
            references
                .into_iter()
                .filter_map(&by_reference)
                .filter(|i| *i != index),
        );
    }
    needed
}

/// `RUN --mount=type=secret` ids (the target's file name when no id is given, as
/// BuildKit), each with whether it is `required`.
fn secret_mounts(instruction: &Instruction) -> Vec<(String, bool)> {
    let InstructionKind::Run(run) = &instruction.kind else {
        return Vec::new();
    };
    run.mounts
        .iter()
        .filter_map(|mount| {
            let field = |names: &[&str]| {
                mount
                    .fields
                    .iter()
                    .rev()
                    .find(|(key, _)| names.contains(&key.as_str()))
                    .map(|(_, value)| value.clone())
            };
            let kind = field(&["type"]).flatten()?;
            if !kind.eq_ignore_ascii_case("secret") {
                return None;
            }
            let id = field(&["id"]).flatten().or_else(|| {
                field(&["target", "dst", "destination"])
                    .flatten()
                    .and_then(|t| t.rsplit('/').next().map(str::to_owned))
            })?;
            let required = match field(&["required"]) {
                Some(None) => true,
                Some(Some(value)) => value.eq_ignore_ascii_case("true"),
                None => false,
            };
            Some((id, required))
        })
        .collect()
}

/// Whether `line` expands `$name` or `${name...}`.
fn uses_variable(line: &str, name: &str) -> bool {
    let braced = format!("${{{name}");
    let bare = format!("${name}");
    line.match_indices(&braced).any(|(i, _)| {
        line[i + braced.len()..]
            .chars()
            .next()
            .is_some_and(|c| !c.is_alphanumeric() && c != '_')
    }) || line.match_indices(&bare).any(|(i, _)| {
        !line[i + bare.len()..]
            .chars()
            .next()
            .is_some_and(|c| c.is_alphanumeric() || c == '_')
    })
}

/// The description of a stage or an ARG, as BuildKit reads it: in the comment lines right
/// above the instruction, the first that starts with `NAME ` gives the rest of its line.
fn description(text: &str, span: Span, name: Option<&str>) -> String {
    let Some(name) = name else {
        return String::new();
    };
    let line = span.line_col(text).0;
    let lines: Vec<&str> = text.lines().take(line.saturating_sub(1)).collect();
    let comments: Vec<&str> = lines
        .iter()
        .rev()
        .map(|l| l.trim())
        .take_while(|l| l.starts_with('#'))
        .map(|l| l.trim_start_matches('#').trim())
        .collect();
    let prefix = format!("{name} ");
    comments
        .iter()
        .rev()
        .find_map(|comment| comment.strip_prefix(&prefix))
        .unwrap_or_default()
        .to_owned()
}

/// A header and rows, aligned as Go's tabwriter does with the given padding: every cell
/// but a row's last is padded to its column's width plus `padding`.
fn table(header: &[&str], rows: &[Vec<String>], padding: usize) -> String {
    let mut all = vec![header.iter().map(|h| (*h).to_owned()).collect::<Vec<_>>()];
    all.extend(rows.iter().cloned());
    rows_text(&all, padding)
}

fn rows_text(rows: &[Vec<String>], padding: usize) -> String {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns.saturating_sub(1))
        .map(|column| {
            rows.iter()
                .filter_map(|row| row.get(column))
                .map(|cell| cell.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in rows {
        for (column, cell) in row.iter().enumerate() {
            if column + 1 < row.len() {
                out.push_str(&format!("{cell:<width$}", width = widths[column] + padding));
            } else {
                out.push_str(cell);
            }
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_as_tabwriter() {
        let rows = vec![
            vec!["A".to_owned(), "1".to_owned(), String::new()],
            vec!["LONGER".to_owned(), "22".to_owned(), "d".to_owned()],
        ];
        assert_eq!(
            table(&["ARG", "VALUE", "DESCRIPTION"], &rows, 3),
            "ARG      VALUE   DESCRIPTION\nA        1       \nLONGER   22      d\n"
        );
    }

    #[test]
    fn variables_are_found_whole() {
        assert!(uses_variable("FROM img:${V}", "V"));
        assert!(uses_variable("FROM img:$V", "V"));
        assert!(uses_variable("FROM img:${V:-x}", "V"));
        assert!(!uses_variable("FROM img:$VERSION", "V"));
    }
}
