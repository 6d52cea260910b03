use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::{Parser, Subcommand, ValueEnum};

use kubechat::cluster::{self, Limits, Scope};
use kubechat::dump::Dump;
use kubechat::replay::{self, Forbid};
use kubechat::report;

/// A read-only Kubernetes diagnostic bot: it reads a namespace's live state and says what is wrong, with evidence.
#[derive(Parser)]
#[command(name = "kubechat", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Diagnose a namespace of a live cluster or of a dump
    Diagnose(DiagnoseArgs),
    /// Serve a cluster dump over the Kubernetes API, read-only, for kubectl and kubechat
    Replay(ReplayArgs),
}

#[derive(Clone, Copy, ValueEnum)]
enum Output {
    Text,
    Json,
}

#[derive(clap::Args)]
struct DiagnoseArgs {
    /// Namespace to diagnose [default: the kubeconfig's namespace; for a dump with one namespace, that one]
    #[arg(short, long)]
    namespace: Option<String>,
    /// Narrow the diagnosis to one object: pod/NAME, deployment/NAME, statefulset/NAME, daemonset/NAME, job/NAME or
    /// service/NAME
    #[arg(long, value_name = "KIND/NAME")]
    object: Option<String>,
    /// Diagnose a dump (file or directory) instead of a live cluster, through an in-process replay server
    #[arg(long, value_name = "PATH")]
    dump: Option<PathBuf>,
    /// Kubeconfig to use [default: in-cluster config, then $KUBECONFIG, then ~/.kube/config]
    #[arg(long, value_name = "FILE", conflicts_with = "dump")]
    kubeconfig: Option<PathBuf>,
    #[arg(short, long, value_enum, default_value = "text")]
    output: Output,
    /// Report findings only, without asking a model
    #[arg(long)]
    no_llm: bool,
    /// Seconds to wait for each API call
    #[arg(long, default_value_t = 10)]
    timeout: u64,
    /// Read the logs of at most this many problem pods
    #[arg(long, default_value_t = 10)]
    log_pods: usize,
    /// Log lines to read per container
    #[arg(long, default_value_t = 200)]
    tail_lines: i64,
    /// With --dump: make the replay server refuse RESOURCE[/SUBRESOURCE][@NAMESPACE] with 403, to see how a
    /// missing RBAC rule is reported
    #[arg(long, value_name = "RESOURCE", requires = "dump")]
    forbid: Vec<Forbid>,
    /// The question to answer
    question: Vec<String>,
}

#[derive(clap::Args)]
struct ReplayArgs {
    /// The dump: a file of `kubectl get … -o yaml` output, or a directory of such files with logs/<ns>/<pod>/<container>.log
    #[arg(long, value_name = "PATH")]
    dump: PathBuf,
    /// Address to listen on
    #[arg(long, default_value = "127.0.0.1:8001")]
    listen: SocketAddr,
    /// Write a kubeconfig that points kubectl at the server
    #[arg(long, value_name = "FILE")]
    kubeconfig_out: Option<PathBuf>,
    /// Refuse RESOURCE[/SUBRESOURCE][@NAMESPACE] with 403 Forbidden (repeatable), e.g. pods/log
    #[arg(long, value_name = "RESOURCE")]
    forbid: Vec<Forbid>,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let default_level = match cli.command {
        Command::Replay(_) => "info",
        Command::Diagnose(_) => "warn",
    };
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| default_level.into()))
        .init();
    let result = match cli.command {
        Command::Diagnose(args) => diagnose(args).await,
        Command::Replay(args) => replay(args).await,
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn load_dump(path: &Path) -> anyhow::Result<Arc<Dump>> {
    let dump = Dump::load(path)?;
    let r = &dump.report;
    tracing::info!(files = r.files, objects = r.objects, logs = r.logs, "loaded dump {}", path.display());
    if r.secrets_dropped > 0 {
        tracing::info!("dropped {} Secret(s): kubechat never serves secrets", r.secrets_dropped);
    }
    for (kind, count) in &r.skipped {
        tracing::warn!("skipped {count} object(s) of kind {kind}: not served by the replay server");
    }
    Ok(Arc::new(dump))
}

async fn replay(args: ReplayArgs) -> anyhow::Result<()> {
    let dump = load_dump(&args.dump)?;
    let namespaces: Vec<&str> = dump.namespaces().collect();
    let server = replay::start(dump.clone(), replay::Options { forbid: args.forbid }, args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let url = server.url();
    if let Some(path) = &args.kubeconfig_out {
        let namespace = if namespaces.len() == 1 { namespaces[0] } else { "default" };
        // Written whole and renamed into place, so whoever waits for the file never reads half of it.
        let partial = path.with_extension("partial");
        std::fs::write(&partial, replay::kubeconfig(&url, namespace))
            .and_then(|()| std::fs::rename(&partial, path))
            .with_context(|| format!("cannot write kubeconfig {}", path.display()))?;
        eprintln!("kubeconfig written to {}: kubectl --kubeconfig {} get pods", path.display(), path.display());
    }
    eprintln!("replaying {} (namespaces: {}) at {url}", args.dump.display(), namespaces.join(", "));
    tokio::select! {
        result = server.wait() => result.context("replay server failed"),
        _ = tokio::signal::ctrl_c() => Ok(()),
    }
}

async fn diagnose(args: DiagnoseArgs) -> anyhow::Result<()> {
    if !args.no_llm {
        bail!("answers from a model are not available in this build yet; run with --no-llm for the findings alone");
    }
    let object = match &args.object {
        None => None,
        Some(spec) => match spec.split_once('/') {
            Some((kind, name)) if !kind.is_empty() && !name.is_empty() => Some((kind.to_lowercase(), name.to_string())),
            _ => bail!("--object must be KIND/NAME, e.g. deployment/checkout, not {spec:?}"),
        },
    };
    let limits = Limits {
        call_timeout: Duration::from_secs(args.timeout),
        log_pods: args.log_pods,
        tail_lines: args.tail_lines,
        ..Limits::default()
    };
    // A dump is served by an in-process replay server, so offline dumps and live clusters share one code path.
    let (client, default_namespace, _server) = match &args.dump {
        Some(path) => {
            let dump = load_dump(path)?;
            let namespaces: Vec<String> = dump.namespaces().map(str::to_string).collect();
            let server =
                replay::start(dump, replay::Options { forbid: args.forbid.clone() }, ([127, 0, 0, 1], 0).into())
                    .await
                    .context("cannot start the in-process replay server")?;
            let client = cluster::client(None, Some(&server.url())).await?;
            let namespace = if namespaces.len() == 1 { namespaces[0].clone() } else { "default".to_string() };
            (client, namespace, Some(server))
        }
        None => {
            let client = cluster::client(args.kubeconfig.as_deref(), None).await?;
            let namespace = client.default_namespace().to_string();
            (client, namespace, None)
        }
    };
    let scope = Scope { namespace: args.namespace.unwrap_or(default_namespace), object };
    let facts = cluster::read(&client, &scope, &limits).await?;
    let diagnosis = report::diagnose(&facts, usize::MAX);
    match args.output {
        Output::Json => println!("{}", serde_json::to_string_pretty(&diagnosis)?),
        Output::Text => print!("{}", report::text(&diagnosis)),
    }
    Ok(())
}
