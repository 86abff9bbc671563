//! Any bytes through the whole frontend: parse, the build checks (every stage, bases as
//! empty images), `image_references` and `convert` with a config for each base, and the
//! text dumps. Errors are fine; panics, stack overflows and runaway memory are not.

#![no_main]

use std::collections::BTreeMap;

use libfuzzer_sys::fuzz_target;
use rbuild_frontend::{
    ConvertOptions, ImageConfig, LintScope, convert, dump_graph, dump_syntax, image_references,
    lint, parse,
};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = dump_syntax(text);
    let Ok(df) = parse(text) else {
        return;
    };
    let opts = ConvertOptions::default();
    let _ = lint(&df, &opts, &BTreeMap::new(), LintScope::AllStages);
    let Ok(references) = image_references(&df, &opts) else {
        return;
    };
    // A base with ONBUILD triggers and a SHELL, so those paths run too.
    let base = ImageConfig {
        env: vec!["PATH=/bin".to_string(), "HOME=/root".to_string()],
        on_build: vec!["RUN echo trigger".to_string()],
        shell: Some(vec!["/bin/sh".to_string(), "-c".to_string()]),
        ..Default::default()
    };
    let bases: BTreeMap<String, ImageConfig> = references
        .into_iter()
        .map(|reference| (reference, base.clone()))
        .collect();
    if let Ok(graph) = convert(&df, &opts, &bases) {
        let _ = dump_graph(&graph);
    }
});
