//! `rbuild run`: a command in a fresh sandbox over the image's layers; changes are
//! discarded when it exits, and its exit status becomes rbuild's. rbuild stays in the
//! foreground for the sandbox's whole life: it passes signals on and, in bridge mode,
//! proxies the published ports.

use std::io::IsTerminal;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use miette::{IntoDiagnostic, Result, WrapErr};
use rbuild_runtime::{
    Capabilities, Mount, Network, Process, Rlimit, SandboxSpec, SetupKind, StdioMode,
};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

pub(crate) mod flags;

use flags::{
    parse_add_host, parse_env_file, parse_mount, parse_publish, parse_security_opts, parse_tmpfs,
    parse_volume, set_env,
};

use super::{key_value, network, open_runtime, open_store, parse_name};
use crate::cli::NetworkArg;

const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

#[derive(Debug, Args)]
pub struct RunArgs {
    /// The platform of a multi-platform image to run (`os/arch[/variant]`; default: this
    /// machine's); another architecture's runs emulated
    #[arg(long, value_name = "PLATFORM")]
    pub platform: Option<String>,
    /// Set an environment variable (`KEY=VALUE`, or `KEY` to take it from the environment)
    #[arg(short = 'e', long = "env", value_name = "KEY=VALUE")]
    pub env: Vec<String>,
    /// Read environment variables from a file (`KEY=VALUE` lines; `#` comments)
    #[arg(long = "env-file", value_name = "FILE")]
    pub env_file: Vec<PathBuf>,
    /// Working directory inside the sandbox
    #[arg(short = 'w', long = "workdir", value_name = "DIR")]
    pub workdir: Option<String>,
    /// User (`name`, `uid`, `name:group`, `uid:gid`)
    #[arg(short = 'u', long = "user")]
    pub user: Option<String>,
    /// Override the image's entrypoint
    #[arg(long)]
    pub entrypoint: Option<String>,
    /// Network: `bridge` (a private address on rbuild's bridge), `host` or `none`
    /// [default: bridge as root; host as an ordinary user, who has no bridge]
    #[arg(long, value_enum)]
    pub network: Option<NetworkArg>,
    /// Publish a container's TCP port on the host (`[IP:]HOST:CONTAINER`; bridge only)
    #[arg(short = 'p', long = "publish", value_name = "HOST:CONTAINER")]
    pub publish: Vec<String>,
    /// Memory limit (e.g. `512m`); swap is not allowed beyond it
    #[arg(short = 'm', long, value_name = "SIZE")]
    pub memory: Option<String>,
    /// CPU time, in CPUs (e.g. `0.5`)
    #[arg(long, value_name = "CPUS")]
    pub cpus: Option<f64>,
    /// CPUs the sandbox may run on (e.g. `0-1`, `0,2`)
    #[arg(long = "cpuset-cpus", value_name = "LIST")]
    pub cpuset_cpus: Option<String>,
    /// Maximum number of processes
    #[arg(long = "pids-limit", value_name = "N")]
    pub pids_limit: Option<u64>,
    /// Bind a host path (`HOST:CONTAINER[:ro]`)
    #[arg(short = 'v', long = "volume", value_name = "HOST:CONTAINER[:ro]")]
    pub volume: Vec<String>,
    /// Mount a tmpfs (`PATH[:OPTIONS]`, default options `rw,noexec,nosuid,size=65536k`)
    #[arg(long = "tmpfs", value_name = "PATH[:OPTIONS]")]
    pub tmpfs: Vec<String>,
    /// Mount a host directory or a tmpfs, docker's way (`type=bind,source=DIR,target=PATH[,readonly]`
    /// or `type=tmpfs,target=PATH[,tmpfs-size=SIZE]`; rbuild keeps no volumes)
    #[arg(long = "mount", value_name = "type=TYPE,...")]
    pub mount: Vec<String>,
    /// Add a line to /etc/hosts (`NAME:IP`)
    #[arg(long = "add-host", value_name = "NAME:IP")]
    pub add_host: Vec<String>,
    /// Add a capability to docker's default set (`NET_ADMIN`, `SYS_PTRACE`, ..., `ALL`); the
    /// seccomp profile allows its syscalls as docker's does
    #[arg(long = "cap-add", value_name = "CAP")]
    pub cap_add: Vec<String>,
    /// Drop a capability from docker's default set (`ALL` for every one)
    #[arg(long = "cap-drop", value_name = "CAP")]
    pub cap_drop: Vec<String>,
    /// A resource limit of the command (`nofile=1024:2048`, `nproc=512`, `core=0`; -1 for
    /// unlimited)
    #[arg(long = "ulimit", value_name = "NAME=SOFT[:HARD]")]
    pub ulimit: Vec<String>,
    /// Size of /dev/shm (e.g. `128m`) [default: 64m]
    #[arg(long = "shm-size", value_name = "SIZE")]
    pub shm_size: Option<String>,
    /// Hostname inside the sandbox
    #[arg(long)]
    pub hostname: Option<String>,
    /// Mount the image's filesystem read-only
    #[arg(long = "read-only")]
    pub read_only: bool,
    /// `seccomp=unconfined` (no seccomp profile: what running rbuild or another tool that
    /// makes namespaces inside needs), `no-new-privileges` (always on), `apparmor=unconfined`
    /// and `label=disable` (rbuild applies neither)
    #[arg(long = "security-opt", value_name = "OPT")]
    pub security_opt: Vec<String>,
    /// Give the command every capability, no seccomp profile, writable `/sys` and
    /// `/proc/sys`, and the host's devices, as `docker run --privileged` (the namespaces,
    /// limits and root stay; `no-new-privileges` is off)
    #[arg(long)]
    pub privileged: bool,
    /// Run rbuild's init as pid 1, with the command as its child: it reaps orphaned
    /// processes and passes signals on (without it the command is pid 1, as with docker,
    /// and ignores SIGINT and SIGTERM unless it handles them)
    #[arg(long)]
    pub init: bool,
    /// Seconds the command has to end after rbuild passes it SIGTERM or SIGINT, before it
    /// is killed, as `docker stop` does (-1: wait for ever)
    #[arg(
        long = "stop-timeout",
        value_name = "SECONDS",
        default_value_t = 10,
        allow_negative_numbers = true
    )]
    pub stop_timeout: i64,
    /// Accepted for docker's habit: a sandbox's changes are always discarded when it exits
    #[arg(long)]
    pub rm: bool,
    /// Not supported: rbuild runs in the foreground only (it is not a container manager;
    /// no daemon keeps containers)
    #[arg(short = 'd', long)]
    pub detach: bool,
    /// Not supported: rbuild keeps no containers to name
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
    /// Keep stdin open (without it the process reads `/dev/null`)
    #[arg(short = 'i', long)]
    pub interactive: bool,
    /// Allocate a pseudo-terminal
    #[arg(short = 't', long)]
    pub tty: bool,
    /// The image to run
    pub image: String,
    /// Command and arguments (default: the image's entrypoint and cmd)
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub command: Vec<String>,
}

pub async fn run(args: RunArgs) -> Result<ExitCode> {
    if args.detach {
        return Err(miette::miette!(
            help = "run it in the background from the shell (`rbuild run IMAGE &`) or under a process supervisor",
            "`-d`: rbuild runs sandboxes in the foreground only; it is not a container manager and no daemon keeps them"
        ));
    }
    if let Some(container) = &args.name {
        return Err(miette::miette!(
            help = "drop `--name`; `--hostname` names the sandbox's host",
            "`--name {container}`: rbuild keeps no containers, so there is nothing to name"
        ));
    }
    let name = parse_name(&args.image)?;
    let mut limits = super::parse_limits(args.memory.as_deref(), args.pids_limit, args.cpus)?;
    limits.cpuset_cpus = args.cpuset_cpus.clone();
    let memory = limits.memory_bytes;
    let seccomp = parse_security_opts(&args.security_opt)
        .map_err(|e| miette::miette!("--security-opt: {e}"))?;
    let mut mounts = Vec::new();
    for volume in &args.volume {
        mounts.push(parse_volume(volume).map_err(|e| miette::miette!("--volume: {e}"))?);
    }
    for tmpfs in &args.tmpfs {
        mounts.push(parse_tmpfs(tmpfs).map_err(|e| miette::miette!("--tmpfs: {e}"))?);
    }
    for mount in &args.mount {
        mounts.push(parse_mount(mount).map_err(|e| miette::miette!("--mount: {e}"))?);
    }
    let extra_hosts = args
        .add_host
        .iter()
        .map(|text| parse_add_host(text))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| miette::miette!("--add-host: {e}"))?;
    let capabilities = Capabilities::changed(&args.cap_add, &args.cap_drop)
        .map_err(|e| miette::miette!("--cap-add/--cap-drop: {e}"))?;
    let rlimits = args
        .ulimit
        .iter()
        .map(|text| Rlimit::parse(text))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| miette::miette!("--ulimit: {e}"))?;
    // As an ordinary user there is no bridge (it needs a network namespace of rbuild's
    // own): the host's network is the default then, as it is for RUN steps.
    let no_bridge = rbuild_runtime::bridge_unavailable();
    let network = network(args.network).unwrap_or(match no_bridge {
        Some(_) => Network::Host,
        None => Network::Bridge,
    });
    let publish = args
        .publish
        .iter()
        .map(|text| parse_publish(text))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| miette::miette!("--publish: {e}"))?;
    if let (Some(reason), true) = (
        &no_bridge,
        network == Network::Bridge || !publish.is_empty(),
    ) {
        return Err(miette::miette!(
            help = "as an ordinary user, use `--network host` (the default: the sandbox's ports are the host's own) or `--network none`",
            "{} needs the bridge network, which is not available: {reason}",
            if publish.is_empty() {
                "`--network bridge`"
            } else {
                "`--publish`"
            }
        ));
    }
    if !publish.is_empty() && network != Network::Bridge {
        return Err(miette::miette!(
            help = "drop `--network` (bridge is the default) or `-p`",
            "--publish needs the bridge network"
        ));
    }
    let mut env_files = Vec::new();
    for path in &args.env_file {
        let text = std::fs::read_to_string(path)
            .into_diagnostic()
            .wrap_err_with(|| format!("cannot read --env-file {}", path.display()))?;
        env_files.extend(parse_env_file(&text));
    }
    // Bound before the sandbox starts: a port in use is an error before anything runs.
    let mut listeners = Vec::new();
    for binding in &publish {
        let listener = TcpListener::bind(binding.host)
            .await
            .into_diagnostic()
            .wrap_err_with(|| format!("cannot publish port {}", binding.host))?;
        listeners.push((listener, binding.container));
    }

    let platform = super::platform_flag(args.platform.as_deref())?;
    let store = open_store()?;
    let runtime = open_runtime(&store)?;
    super::check_limits(&runtime, &limits)?;
    let prepared = {
        let store = store.clone();
        tokio::task::spawn_blocking(move || -> Result<_, rbuild_store::Error> {
            let image = store.image_in_use_for(&name, platform.as_ref())?;
            let top = store.unpack(&image)?;
            let lowers = match &top {
                Some(top) => store.lowers(top)?,
                None => Vec::new(),
            };
            let snapshotter = rbuild_builder::Snapshotter::detect(&store);
            Ok((image, RunLayer::new(&store, &snapshotter, lowers)?))
        })
        .await
        .into_diagnostic()?
    };
    let (image, active) = prepared.map_err(|err| match err {
        rbuild_store::Error::ImageNotFound { name } => {
            super::images::image_not_found(&store, &name)
        }
        other => crate::rootless::report(other),
    })?;
    // Another architecture's image runs emulated, as its build's steps did, or not at all.
    rbuild_builder::check_emulation(&rbuild_builder::image_platform(&image))
        .map_err(|err| miette::miette!(help = err.help(), "cannot run `{}`: {err}", args.image))?;
    let config = &image.config.config;
    let strings = |key: &str| -> Option<Vec<String>> {
        config.get(key).and_then(|v| v.as_array()).map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_owned))
                .collect()
        })
    };
    let string = |key: &str| {
        config
            .get(key)
            .and_then(|v| v.as_str())
            .unwrap_or("")
            .to_owned()
    };

    // Docker's rules: `--entrypoint` replaces the entrypoint and drops the image's cmd;
    // arguments replace the cmd.
    let (entrypoint, cmd) = match &args.entrypoint {
        Some(entrypoint) => (vec![entrypoint.clone()], args.command.clone()),
        None if !args.command.is_empty() => (
            strings("Entrypoint").unwrap_or_default(),
            args.command.clone(),
        ),
        None => (
            strings("Entrypoint").unwrap_or_default(),
            strings("Cmd").unwrap_or_default(),
        ),
    };
    let argv: Vec<String> = entrypoint.into_iter().chain(cmd).collect();
    if argv.is_empty() {
        active.remove();
        return Err(miette::miette!(
            help = "give a command after the image name",
            "no command specified: the image has no entrypoint or cmd"
        ));
    }
    // The image's, then --env-file's, then -e's: later ones win, as with Docker.
    let mut env: Vec<String> = strings("Env").unwrap_or_default();
    for (key, value) in env_files {
        set_env(&mut env, &key, &value);
    }
    for entry in &args.env {
        if let Some((key, value)) = key_value(entry) {
            set_env(&mut env, &key, &value);
        }
    }
    if !env.iter().any(|e| e.starts_with("PATH=")) {
        env.push(format!("PATH={DEFAULT_PATH}"));
    }
    if args.tty && !env.iter().any(|e| e.starts_with("TERM=")) {
        env.push("TERM=xterm".to_owned());
    }
    let cwd = args
        .workdir
        .clone()
        .unwrap_or_else(|| match string("WorkingDir") {
            dir if dir.is_empty() => "/".to_owned(),
            dir => dir,
        });
    let spec = SandboxSpec {
        root: active.root.clone(),
        mounts,
        process: Process {
            args: argv,
            env,
            cwd,
            user: args.user.clone().unwrap_or_else(|| string("User")),
            terminal: args.tty,
            rlimits,
        },
        hostname: args
            .hostname
            .clone()
            .unwrap_or_else(|| image.config_digest.short().to_owned()),
        network,
        limits,
        readonly_root: args.read_only,
        seccomp,
        init: args.init,
        capabilities,
        extra_hosts,
        shm_size: crate::size::shm_size(args.shm_size.as_deref())?,
        privileged: args.privileged,
    };
    let stdio = if args.interactive {
        StdioMode::Inherit
    } else {
        StdioMode::InheritOutput
    };
    // Caught from before the sandbox starts, so that none kills rbuild in between.
    let signals = catch_signals(args.tty, args.init);
    let outcome = async {
        let child = runtime.spawn(&spec, stdio)?;
        let proxies = match child.address() {
            Some(address) => publish_ports(listeners, address),
            None => Vec::new(),
        };
        let stop = Stop {
            timeout: u64::try_from(args.stop_timeout)
                .ok()
                .map(std::time::Duration::from_secs),
            init: args.init,
        };
        let forwarder = forward_signals(signals, child.id(), stop);
        let outcome = child.wait().await;
        forwarder.abort();
        for proxy in proxies {
            proxy.abort();
        }
        outcome
    }
    .await;
    let _ = tokio::task::spawn_blocking(move || active.remove()).await;
    let outcome = match outcome {
        Ok(outcome) => outcome,
        // Docker's codes: 127 the command was not found, 126 it could not be run, 125 the
        // sandbox could not be set up.
        Err(err) => {
            let code = match err.setup_kind() {
                Some(SetupKind::Executable) if err.to_string().contains("not found") => 127,
                Some(SetupKind::Executable) => 126,
                _ => 125,
            };
            let report = miette::Report::from_err(err).wrap_err("the sandbox failed");
            eprintln!("{report:?}");
            return Ok(ExitCode::from(code));
        }
    };
    if outcome.oom_killed {
        let limit = memory.map_or_else(String::new, |bytes| format!(" of {bytes} bytes"));
        eprintln!("rbuild: the process was killed: out of memory (memory limit{limit})");
    }
    Ok(ExitCode::from(
        u8::try_from(outcome.status.code()).unwrap_or(255),
    ))
}

/// Runs `spec` attached to rbuild's stdin, stdout and stderr (a shell in a failed build
/// step, `rbuild build --on-error shell`), passing signals on as `rbuild run -i` does;
/// killed 10 s after a SIGTERM it does not end on.
pub(crate) async fn run_attached(
    runtime: &rbuild_runtime::Runtime,
    spec: &SandboxSpec,
) -> Result<rbuild_runtime::Outcome, rbuild_runtime::Error> {
    let signals = catch_signals(spec.process.terminal, spec.init);
    let child = runtime.spawn(spec, StdioMode::Inherit)?;
    let stop = Stop {
        timeout: Some(std::time::Duration::from_secs(10)),
        init: spec.init,
    };
    let forwarder = forward_signals(signals, child.id(), stop);
    let outcome = child.wait().await;
    forwarder.abort();
    outcome
}

/// The signals rbuild catches while a sandbox runs: those it passes on, and those it only
/// keeps from killing it.
struct CaughtSignals {
    forwarded: Vec<(tokio::signal::unix::Signal, i32)>,
    ignored: Vec<tokio::signal::unix::Signal>,
    /// The terminal's Ctrl-C, counted when the command is pid 1 (see [`catch_signals`]).
    interrupts: Option<tokio::signal::unix::Signal>,
}

/// Without `-t`, a terminal's Ctrl-C and Ctrl-\ already reach the command (it is in the
/// terminal's foreground process group with rbuild), so SIGINT and SIGQUIT are passed on
/// only when rbuild's stdin is no terminal; with `-t` the keys travel as bytes through the
/// sandbox's own pty. SIGTERM, SIGHUP, SIGUSR1 and SIGUSR2 are always passed on.
///
/// A command that is pid 1 (no `--init`) ignores a Ctrl-C it has no handler for, as under
/// docker; a second Ctrl-C then stops the sandbox, so the terminal is never stuck.
fn catch_signals(tty: bool, init: bool) -> CaughtSignals {
    use tokio::signal::unix::{SignalKind, signal};
    let from_terminal = !tty && std::io::stdin().is_terminal();
    let mut kinds = vec![
        (SignalKind::terminate(), libc_signal::TERM),
        (SignalKind::hangup(), libc_signal::HUP),
        (SignalKind::user_defined1(), libc_signal::USR1),
        (SignalKind::user_defined2(), libc_signal::USR2),
    ];
    let terminal_kinds = [
        (SignalKind::interrupt(), libc_signal::INT),
        (SignalKind::quit(), libc_signal::QUIT),
    ];
    let mut ignored = Vec::new();
    let mut interrupts = None;
    if from_terminal {
        // Still caught, so that rbuild outlives the key press and reports the exit.
        for (kind, number) in terminal_kinds {
            if number == libc_signal::INT && !init {
                interrupts = signal(kind).ok();
            } else {
                ignored.extend(signal(kind).ok());
            }
        }
    } else {
        kinds.extend(terminal_kinds);
    }
    let forwarded = kinds
        .into_iter()
        .filter_map(|(kind, number)| signal(kind).ok().map(|stream| (stream, number)))
        .collect();
    CaughtSignals {
        forwarded,
        ignored,
        interrupts,
    }
}

/// What happens when the command does not end after SIGTERM or SIGINT.
struct Stop {
    /// Killed this long after the first one; `None`: never.
    timeout: Option<std::time::Duration>,
    /// Whether rbuild's init is pid 1 (else the command is, and ignores what it does not
    /// handle).
    init: bool,
}

/// Passes the caught signals on to the sandbox's helper, which hands them to the command,
/// and kills the sandbox when it has not ended `stop.timeout` after SIGTERM or SIGINT.
fn forward_signals(signals: CaughtSignals, helper: Option<u32>, stop: Stop) -> JoinHandle<()> {
    tokio::spawn(async move {
        let _ignored = signals.ignored;
        let Some(helper) = helper else {
            return;
        };
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        if let Some(mut interrupts) = signals.interrupts {
            let tx = tx.clone();
            tokio::spawn(async move {
                interrupts.recv().await;
                interrupts.recv().await;
                // On a line of its own: the terminal echoed `^C^C` without a newline.
                eprintln!(
                    "\nrbuild: stopping the sandbox (its command is pid 1 and did not end on Ctrl-C; `rbuild run --init` gives it an init that passes signals on)"
                );
                let _ = tx.send(libc_signal::KILL);
            });
        }
        for (mut stream, number) in signals.forwarded {
            let tx = tx.clone();
            tokio::spawn(async move {
                while stream.recv().await.is_some() {
                    if tx.send(number).is_err() {
                        break;
                    }
                }
            });
        }
        drop(tx);
        let mut deadline: Option<std::pin::Pin<Box<tokio::time::Sleep>>> = None;
        loop {
            tokio::select! {
                number = rx.recv() => {
                    let Some(number) = number else { break };
                    rbuild_runtime::signal_sandbox(helper, number);
                    if matches!(number, libc_signal::TERM | libc_signal::INT)
                        && deadline.is_none()
                        && let Some(timeout) = stop.timeout
                    {
                        deadline = Some(Box::pin(tokio::time::sleep(timeout)));
                    }
                }
                () = async { deadline.as_mut().expect("guarded").await }, if deadline.is_some() => {
                    let why = if stop.init {
                        ""
                    } else {
                        " (as pid 1 it ignores the signals it has no handler for; `rbuild run --init` passes them on)"
                    };
                    eprintln!(
                        "rbuild: killing the sandbox: its command did not end within {}s of the signal{why}",
                        stop.timeout.unwrap_or_default().as_secs()
                    );
                    rbuild_runtime::signal_sandbox(helper, libc_signal::KILL);
                    deadline = None;
                }
            }
        }
    })
}

/// Signal numbers (Linux, every architecture rbuild runs on).
mod libc_signal {
    pub const HUP: i32 = 1;
    pub const INT: i32 = 2;
    pub const KILL: i32 = 9;
    pub const QUIT: i32 = 3;
    pub const USR1: i32 = 10;
    pub const USR2: i32 = 12;
    pub const TERM: i32 = 15;
}

/// One accept loop per published port: each connection is proxied to the sandbox's
/// address (a userspace proxy, as Docker's `docker-proxy`; no firewall rules).
fn publish_ports(listeners: Vec<(TcpListener, u16)>, address: Ipv4Addr) -> Vec<JoinHandle<()>> {
    listeners
        .into_iter()
        .map(|(listener, port)| {
            tokio::spawn(async move {
                loop {
                    let Ok((mut inbound, _)) = listener.accept().await else {
                        // Out of descriptors, say: let some connections end first.
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                        continue;
                    };
                    tokio::spawn(async move {
                        // Not listening (yet): the client sees the connection close.
                        if let Ok(mut outbound) = TcpStream::connect((address, port)).await {
                            let _ =
                                tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                        }
                    });
                }
            })
        })
        .collect()
}

/// The writable layer of a `rbuild run`: a scratch directory of the store, not a snapshot,
/// since its changes are discarded. It costs no metadata commit (a disk flush) to make or
/// to drop, and a killed run's is removed by the next command, as its owner is gone. The
/// image's layers below it are kept by the lease `Store::image_in_use` took. Without
/// overlayfs it is a throwaway copy of the layers instead (`Snapshotter::scratch_root`).
struct RunLayer {
    dir: std::path::PathBuf,
    root: Mount,
}

impl RunLayer {
    fn new(
        store: &rbuild_store::Store,
        snapshotter: &rbuild_builder::Snapshotter,
        lowers: Vec<std::path::PathBuf>,
    ) -> Result<RunLayer, rbuild_store::Error> {
        let dir = store.temp_dir("run")?;
        match snapshotter.scratch_root(store, &lowers, &dir) {
            Ok(root) => Ok(RunLayer { dir, root }),
            Err(err) => {
                let _ = std::fs::remove_dir_all(&dir);
                Err(err)
            }
        }
    }

    fn remove(self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
