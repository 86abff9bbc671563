//! Licenses as SPDX expressions: what the metadata says, kept only when every identifier
//! in it is one SPDX lists (the documents must stay valid); Debian's short names mapped.

/// SPDX license identifiers common in packages. An expression naming anything else is not
/// claimed as SPDX: its text goes to the package's license comment instead.
const KNOWN: &[&str] = &[
    "0BSD",
    "AFL-2.1",
    "AGPL-3.0-only",
    "AGPL-3.0-or-later",
    "Apache-1.1",
    "Apache-2.0",
    "Artistic-1.0",
    "Artistic-1.0-Perl",
    "Artistic-2.0",
    "BlueOak-1.0.0",
    "BSD-1-Clause",
    "BSD-2-Clause",
    "BSD-3-Clause",
    "BSD-4-Clause",
    "BSL-1.0",
    "bzip2-1.0.6",
    "CC-BY-3.0",
    "CC-BY-4.0",
    "CC-BY-SA-3.0",
    "CC-BY-SA-4.0",
    "CC0-1.0",
    "CDDL-1.0",
    "curl",
    "EPL-1.0",
    "EPL-2.0",
    "FSFAP",
    "FSFUL",
    "FSFULLR",
    "FTL",
    "GFDL-1.2-only",
    "GFDL-1.2-or-later",
    "GFDL-1.3-only",
    "GFDL-1.3-or-later",
    "GPL-1.0-only",
    "GPL-1.0-or-later",
    "GPL-2.0-only",
    "GPL-2.0-or-later",
    "GPL-3.0-only",
    "GPL-3.0-or-later",
    "HPND",
    "ICU",
    "IJG",
    "ISC",
    "LGPL-2.0-only",
    "LGPL-2.0-or-later",
    "LGPL-2.1-only",
    "LGPL-2.1-or-later",
    "LGPL-3.0-only",
    "LGPL-3.0-or-later",
    "Libpng",
    "libtiff",
    "MIT",
    "MIT-0",
    "MPL-1.1",
    "MPL-2.0",
    "NCSA",
    "OFL-1.1",
    "OpenSSL",
    "PostgreSQL",
    "PSF-2.0",
    "Python-2.0",
    "Ruby",
    "Sleepycat",
    "TCL",
    "Unicode-3.0",
    "Unicode-DFS-2016",
    "Unlicense",
    "Vim",
    "W3C",
    "WTFPL",
    "X11",
    "Zlib",
    "ZPL-2.1",
];

/// Exceptions that may follow `WITH`.
const EXCEPTIONS: &[&str] = &[
    "Autoconf-exception-3.0",
    "Bison-exception-2.2",
    "Classpath-exception-2.0",
    "GCC-exception-3.1",
    "LLVM-exception",
    "OpenSSL-exception",
];

/// `text` as a valid SPDX expression: identifiers matched without regard to case and
/// written as SPDX spells them; `None` when a part is not one rbuild knows.
pub(crate) fn spdx_expression(text: &str) -> Option<String> {
    let text = text.trim();
    if text.is_empty() || text.len() > 200 {
        return None;
    }
    let spaced = text.replace('(', " ( ").replace(')', " ) ");
    let mut out = Vec::new();
    let mut expect_id = true;
    let mut after_with = false;
    for token in spaced.split_whitespace() {
        match token.to_ascii_uppercase().as_str() {
            "AND" | "OR" if !expect_id => {
                out.push(token.to_ascii_uppercase());
                expect_id = true;
            }
            "WITH" if !expect_id => {
                out.push("WITH".to_owned());
                expect_id = true;
                after_with = true;
            }
            "(" | ")" => out.push(token.to_owned()),
            _ if expect_id => {
                let list = if after_with { EXCEPTIONS } else { KNOWN };
                let (id, plus) = match token.strip_suffix('+') {
                    Some(id) if !after_with => (id, "+"),
                    _ => (token, ""),
                };
                let known = list.iter().find(|k| k.eq_ignore_ascii_case(id))?;
                out.push(format!("{known}{plus}"));
                expect_id = false;
                after_with = false;
            }
            _ => return None,
        }
    }
    (!expect_id).then(|| out.join(" ").replace("( ", "(").replace(" )", ")"))
}

/// A Debian copyright file's short license name as SPDX (`GPL-2+` → `GPL-2.0-or-later`).
pub(crate) fn debian_name(name: &str) -> Option<String> {
    let name = name.trim();
    let (base, later) = match name.strip_suffix('+') {
        Some(base) => (base, true),
        None => (name, false),
    };
    let versioned = |family: &str, version: &str| {
        let version = if version.contains('.') {
            version.to_owned()
        } else {
            format!("{version}.0")
        };
        let suffix = if later { "or-later" } else { "only" };
        format!("{family}-{version}-{suffix}")
    };
    let lower = base.to_ascii_lowercase();
    let mapped = if let Some(version) = lower.strip_prefix("gpl-") {
        versioned("GPL", version)
    } else if let Some(version) = lower.strip_prefix("lgpl-") {
        versioned("LGPL", version)
    } else if let Some(version) = lower.strip_prefix("agpl-") {
        versioned("AGPL", version)
    } else if let Some(version) = lower.strip_prefix("gfdl-") {
        versioned("GFDL", version)
    } else {
        match lower.as_str() {
            "expat" => "MIT".to_owned(),
            "bsd-2-clause" => "BSD-2-Clause".to_owned(),
            "bsd-3-clause" => "BSD-3-Clause".to_owned(),
            "bsd-4-clause" => "BSD-4-Clause".to_owned(),
            "apache-2.0" | "apache-2" => "Apache-2.0".to_owned(),
            "zlib" => "Zlib".to_owned(),
            "isc" => "ISC".to_owned(),
            "artistic" => "Artistic-1.0-Perl".to_owned(),
            "mpl-2.0" => "MPL-2.0".to_owned(),
            "cc0-1.0" | "cc0" => "CC0-1.0".to_owned(),
            "x11" => "X11".to_owned(),
            "curl" => "curl".to_owned(),
            "psf-2" | "psf-2.0" => "PSF-2.0".to_owned(),
            "openssl" => "OpenSSL".to_owned(),
            _ => return None,
        }
    };
    spdx_expression(&mapped)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_known_identifiers_make_an_expression() {
        assert_eq!(spdx_expression("mit").as_deref(), Some("MIT"));
        assert_eq!(
            spdx_expression("(MIT OR apache-2.0) AND BSD-3-Clause").as_deref(),
            Some("(MIT OR Apache-2.0) AND BSD-3-Clause")
        );
        assert_eq!(
            spdx_expression("GPL-2.0-or-later WITH GCC-exception-3.1").as_deref(),
            Some("GPL-2.0-or-later WITH GCC-exception-3.1")
        );
        assert_eq!(spdx_expression("Apache 2.0"), None);
        assert_eq!(spdx_expression("MIT OR"), None);
        assert_eq!(spdx_expression("BSD License"), None);
    }

    #[test]
    fn debian_short_names_map_to_spdx() {
        assert_eq!(debian_name("GPL-2+").as_deref(), Some("GPL-2.0-or-later"));
        assert_eq!(debian_name("LGPL-2.1").as_deref(), Some("LGPL-2.1-only"));
        assert_eq!(debian_name("Expat").as_deref(), Some("MIT"));
        assert_eq!(debian_name("public-domain"), None);
    }
}
