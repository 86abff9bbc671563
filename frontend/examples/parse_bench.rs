//! Parse + convert benchmark: a generated Dockerfile of 10,000 instructions (or
//! `--instructions N`) in stages of 50 instructions (every kind of instruction; every
//! other stage built FROM the one before), converted `--runs` times (default 30); prints
//! the median thread CPU time (wall time too, which on a shared machine also counts other
//! processes). `--heavy`: stages of 200 instructions in FROM chains of 5, so each RUN
//! carries ~150 environment entries. Run it with
//! `cargo run --release -p rbuild-frontend --example parse_bench`.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rbuild_frontend::{ConvertOptions, ImageConfig, convert, image_references, parse};

/// A Dockerfile of about `instructions` instructions: global ARGs, then stages of mixed
/// instructions, each stage but the first built FROM the previous one or copying from it.
fn generate(instructions: usize, heavy: bool) -> String {
    let (per_stage, chain) = if heavy { (200, 5) } else { (50, 2) };
    let stages = instructions.div_ceil(per_stage);
    let mut text =
        String::from("# syntax=docker/dockerfile:1\nARG BASE=debian:12\nARG VERSION=1.0\n");
    for stage in 0..stages {
        if stage % chain == 0 {
            text.push_str(&format!("FROM ${{BASE}} AS s{stage}\n"));
        } else {
            text.push_str(&format!("FROM s{} AS s{stage}\n", stage - 1));
        }
        for i in 0..per_stage.saturating_sub(1) {
            let line = match i % 16 {
                0 => format!("ARG A{i}=v{i}\n"),
                1 => format!(
                    "ENV E{i}=\"value $A{} with spaces\" P{i}=${{VERSION:-x}}\n",
                    i - 1
                ),
                2 => format!(
                    "RUN apt-get update && apt-get install -y pkg{i} && rm -rf /var/lib/apt/lists/*\n"
                ),
                3 => format!("COPY --chown=1000:1000 src/{i} /app/{i}/\n"),
                4 => format!("WORKDIR /app/{i}\n"),
                5 => format!("LABEL org.example.l{i}=\"$E{}\"\n", i - 4),
                6 => format!("RUN [\"/bin/echo\", \"{i}\"]\n"),
                7 => format!("EXPOSE {}/tcp\n", 1000 + i),
                8 => "USER app:app\n".to_string(),
                9 => format!("ADD archive{i}.tar.gz /opt/\n"),
                10 => format!("RUN <<EOF\necho {i}\nls /\nEOF\n"),
                11 if stage > 0 => format!("COPY --from=s{} /app /from{i}\n", stage - 1),
                12 => format!("VOLUME /data{i}\n"),
                13 => "HEALTHCHECK --interval=30s CMD [\"true\"]\n".to_string(),
                14 => format!("RUN --network=none echo {i} \\\n    && echo continued\n"),
                _ => format!("CMD [\"/app/run\", \"{i}\"]\n"),
            };
            text.push_str(&line);
        }
    }
    text
}

/// CPU time of this thread: on a shared machine wall time also counts other processes.
fn thread_cpu_time() -> Duration {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `now` is a valid timespec for the call to fill in.
    let status = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut now) };
    assert_eq!(
        status, 0,
        "CLOCK_THREAD_CPUTIME_ID is always available on Linux"
    );
    Duration::new(now.tv_sec as u64, now.tv_nsec as u32)
}

fn count_instructions(text: &str) -> usize {
    rbuild_frontend::dump_syntax(text)
        .expect("the generated Dockerfile parses")
        .lines()
        .count()
}

fn main() {
    let mut instructions = 10_000;
    let mut runs = 30;
    let mut heavy = false;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        if arg == "--heavy" {
            heavy = true;
            continue;
        }
        let value = args.next().and_then(|v| v.parse().ok());
        match (arg.as_str(), value) {
            ("--instructions", Some(n)) => instructions = n,
            ("--runs", Some(n)) => runs = n,
            _ => {
                eprintln!("usage: parse_bench [--instructions N] [--runs N] [--heavy]");
                std::process::exit(2);
            }
        }
    }
    let text = generate(instructions, heavy);
    if let Ok(path) = std::env::var("PARSE_BENCH_WRITE") {
        std::fs::write(path, &text).expect("write the generated Dockerfile");
    }
    let opts = ConvertOptions::default();
    let base = ImageConfig {
        env: vec!["PATH=/usr/local/bin:/usr/bin:/bin".to_string()],
        ..Default::default()
    };
    let mut times: Vec<Duration> = Vec::with_capacity(runs);
    let mut parse_times: Vec<Duration> = Vec::with_capacity(runs);
    let mut cpu_times: Vec<Duration> = Vec::with_capacity(runs);
    let mut ops = 0;
    for _ in 0..runs {
        let started = Instant::now();
        let cpu_started = thread_cpu_time();
        let df = parse(&text).expect("parses");
        parse_times.push(thread_cpu_time() - cpu_started);
        let bases: BTreeMap<String, ImageConfig> = image_references(&df, &opts)
            .expect("references")
            .into_iter()
            .map(|reference| (reference, base.clone()))
            .collect();
        let graph = convert(&df, &opts, &bases).expect("converts");
        times.push(started.elapsed());
        cpu_times.push(thread_cpu_time() - cpu_started);
        ops = graph.ops.len();
    }
    times.sort();
    parse_times.sort();
    cpu_times.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!(
        "parse + convert of {} instructions ({} bytes, {ops} ops), {runs} runs: median {:.2} ms CPU (parse {:.2} ms), wall median {:.2} ms, min {:.2} ms, max {:.2} ms",
        count_instructions(&text),
        text.len(),
        ms(cpu_times[runs / 2]),
        ms(parse_times[runs / 2]),
        ms(times[runs / 2]),
        ms(times[0]),
        ms(times[runs - 1]),
    );
}
