//! A step's cache key: its definition, its inputs' keys, and the content it reads (context
//! files, bind-mounted context paths, downloaded URLs), with the trace that explains it.

use std::collections::HashMap;

use rbuild_frontend::{
    BindMount, BuildGraph, CopyOp, CopySource, ExecMount, ExecOp, MountSource, Op, OpId, OpKind,
};

use crate::cache::{CacheKey, KeyBuilder};
use crate::error::BuildError;
use crate::explain::Trace;
use crate::ignore::IgnoreMatcher;
use crate::solve::{Done, SolveContext};

impl SolveContext {
    /// The op's cache key: its definition, its inputs' keys, and what else decides its
    /// result (see `cache`).
    pub(crate) async fn cache_key(
        &self,
        graph: &BuildGraph,
        id: OpId,
        inputs: &HashMap<OpId, Done>,
    ) -> Result<(CacheKey, Trace), BuildError> {
        let op = graph.op(id);
        let mut trace = Trace {
            description: op.description.clone(),
            digest: op.digest.0.clone(),
            ..Default::default()
        };
        let mut key = KeyBuilder::new("op");
        let mut input_ids = op.kind.inputs();
        input_ids.dedup();
        match &op.kind {
            // `COPY --link` does not depend on the layers below: its key leaves them out,
            // so a new base image keeps the step cached and its layer is restacked.
            OpKind::Copy(copy) if copy.link => {
                let mut definition = copy.clone();
                definition.rootfs = OpId(0);
                if let CopySource::Op(_) = definition.source {
                    definition.source = CopySource::Op(OpId(0));
                }
                key.part("link")
                    .part(&serde_json::to_string(&definition).expect("ops serialize"));
                input_ids.retain(|input| *input != copy.rootfs);
            }
            _ => {
                key.part(&op.digest.0);
            }
        }
        for input in input_ids {
            key.part(inputs[&input].key.as_str());
            trace.inputs.push((
                graph.op(input).description.clone(),
                inputs[&input].key.to_string(),
            ));
        }
        match &op.kind {
            OpKind::Scratch | OpKind::Mkdir(_) => {}
            OpKind::Image { reference } => {
                if let Some(image) = self.sources.bases.get(reference, &op.platform) {
                    key.part(&image.manifest_digest.to_string());
                    trace.base = Some(image.manifest_digest.to_string());
                    trace.base_id = Some(image.config_digest.to_string());
                }
            }
            OpKind::Exec(exec) => self.key_exec(op, exec, &mut key, &mut trace)?,
            OpKind::Copy(copy) => self.key_copy(op, copy, &mut key, &mut trace).await?,
        }
        if op.kind.rootfs().is_some() {
            key.part(&format!("epoch:{:?}", self.opts.source_date_epoch));
            if let Some(epoch) = self.opts.source_date_epoch {
                trace.other.push(format!("SOURCE_DATE_EPOCH={epoch}"));
            }
        }
        let key = key.finish();
        trace.key = key.to_string();
        Ok((key, trace))
    }

    /// What else decides a RUN step's result: its network, the build's sandbox flags,
    /// the environment it sees (for the trace), and the context paths it bind-mounts.
    fn key_exec(
        &self,
        op: &Op,
        exec: &ExecOp,
        key: &mut KeyBuilder,
        trace: &mut Trace,
    ) -> Result<(), BuildError> {
        let network = crate::exec::network_key(crate::exec::effective_network(
            exec.network,
            self.opts.network,
        ));
        key.part(network);
        trace
            .other
            .push(format!("network {}", network.to_lowercase()));
        // The sandbox flags of the build, as BuildKit keys them: host names without
        // their addresses, ulimits, the size of /dev/shm. Absent, they add nothing,
        // so keys of builds without them are unchanged.
        for host in &self.opts.extra_hosts {
            key.part("add-host").part(&host.name);
            trace.other.push(format!("add-host {}", host.name));
        }
        for limit in &self.opts.rlimits {
            let name = rbuild_runtime::RLIMIT_NAMES
                .iter()
                .find(|(_, resource)| *resource == limit.resource)
                .map_or_else(
                    || limit.resource.to_string(),
                    |(name, _)| (*name).to_owned(),
                );
            let text = format!("ulimit {name}={}:{}", limit.soft, limit.hard);
            key.part(&text);
            trace.other.push(text);
        }
        if let Some(size) = self.opts.shm_size {
            key.part(&format!("shm-size {size}"));
            trace.other.push(format!("shm-size {size}"));
        }
        trace.env = exec
            .env
            .iter()
            .filter(|e| {
                let name = e.split_once('=').map_or(e.as_str(), |(k, _)| k);
                !exec.cache_excluded_env.iter().any(|x| x == name)
            })
            .cloned()
            .collect();
        // What a bind mount of the context shows is read like a COPY source; a
        // mount of another op is covered by that op's key, among the inputs.
        for mount in &exec.mounts {
            let ExecMount::Bind(BindMount { source, path, .. }) = mount else {
                continue;
            };
            let ctx = match source {
                MountSource::Context => Some(&self.sources.context),
                MountSource::Named(name) => Some(self.named_context(name)?),
                MountSource::Op(_) => None,
            };
            if let Some(ctx) = ctx {
                let (checksum, files) = tokio::task::block_in_place(|| ctx.checksum_path(path))
                    .map_err(|source| BuildError::step_failed(op, source))?;
                key.part("bind-context").part(&checksum);
                let name = match source {
                    MountSource::Named(name) => name.clone(),
                    _ => String::new(),
                };
                let read = trace.contexts.entry(name).or_default();
                read.push_str(&checksum);
                trace.files.extend(files);
            }
        }
        Ok(())
    }

    /// What else decides a COPY/ADD's result: the commit of a git source, the content of
    /// the context files and URLs it reads.
    async fn key_copy(
        &self,
        op: &Op,
        copy: &CopyOp,
        key: &mut KeyBuilder,
        trace: &mut Trace,
    ) -> Result<(), BuildError> {
        if let CopySource::Git(git) = &copy.source {
            // Keyed by the commit, not the ref name: a moved ref is a miss, and
            // says so.
            let commit = tokio::task::block_in_place(|| self.git_commit(op, git))
                .map_err(|source| BuildError::step_failed(op, source))?;
            key.part("git").part(&commit);
            trace.git = Some((
                git.reference.clone().unwrap_or_else(|| "HEAD".to_owned()),
                commit,
            ));
        }
        let ctx = match &copy.source {
            CopySource::Context => Some(&self.sources.context),
            CopySource::Named(name) => Some(self.named_context(name)?),
            _ => None,
        };
        if let Some(ctx) = ctx {
            let sources: Vec<String> = copy
                .sources
                .iter()
                .filter(|s| !rbuild_frontend::CopyOp::is_url(s))
                .cloned()
                .collect();
            // Ops without URLs keep the keys they always had.
            if !sources.is_empty() || sources.len() == copy.sources.len() {
                let exclude = (!copy.excludes.is_empty())
                    .then(|| IgnoreMatcher::from_excludes(&copy.excludes))
                    .transpose()
                    .map_err(|source| BuildError::step_failed(op, source))?;
                let _permit = self.cpu_permit().await?;
                let (checksum, files) = {
                    // Hashing reads files: keep it off the async workers.
                    tokio::task::block_in_place(|| ctx.checksum_files(&sources, exclude.as_ref()))
                }
                .map_err(|source| BuildError::step_failed(op, source))?;
                key.part(&checksum);
                let name = match &copy.source {
                    CopySource::Named(name) => name.clone(),
                    _ => String::new(),
                };
                trace.contexts.insert(name, checksum);
                trace.files = files;
            }
            // A URL is keyed by its content: the checksum it must have, else
            // what the server serves now (revalidated, see `download`).
            for url in copy
                .sources
                .iter()
                .filter(|s| rbuild_frontend::CopyOp::is_url(s))
            {
                let digest = match &copy.checksum {
                    Some(checksum) => checksum.clone(),
                    None => self.url_content(op, url, None).await?.digest.to_string(),
                };
                key.part("url").part(url).part(&digest);
                trace.files.insert(url.clone(), digest);
            }
        }
        Ok(())
    }
}
