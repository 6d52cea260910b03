use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::{Parser, Subcommand, ValueEnum};

use kubechat::app::App;
use kubechat::cli;
use kubechat::cluster::{self, Limits, Source};
use kubechat::config::{Config, PromptSource};
use kubechat::llm::{Api, LlmConfig};
use kubechat::prompt::Prompts;
use kubechat::replay::{self, Forbid};
use kubechat::request::Intent;

/// A read-only Kubernetes diagnostic bot: it reads a namespace's live state and says what is wrong, with evidence.
#[derive(Parser)]
#[command(name = "kubechat", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Diagnose a namespace of a live cluster or of a dump: findings, and the model's grounded answer
    Diagnose(DiagnoseArgs),
    /// Ask a question about a namespace; the model answers from what kubechat read
    Ask(DiagnoseArgs),
    /// Serve a cluster dump over the Kubernetes API, read-only, for kubectl and kubechat
    Replay(ReplayArgs),
    /// Serve the HTTP API and web chat: POST /ask and /diagnose (JSON, or streamed as server-sent events), /healthz,
    /// /readyz, /models, and the chat page at /
    Serve(ServeArgs),
    /// Start the web chat on a demo cluster compiled into kubechat: no cluster, model or chat platform needed
    Demo(DemoArgs),
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
    /// Narrow the diagnosis to one object: pod/NAME, deployment/NAME, statefulset/NAME, daemonset/NAME, job/NAME,
    /// cronjob/NAME or service/NAME (kubectl's short names too)
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
    #[command(flatten)]
    llm: LlmArgs,
    /// Seconds to wait for each API call
    #[arg(long, default_value_t = Limits::default().call_timeout.as_secs())]
    timeout: u64,
    /// Read the logs of at most this many problem pods
    #[arg(long, default_value_t = Limits::default().log_pods)]
    log_pods: usize,
    /// Log lines to read per container
    #[arg(long, default_value_t = Limits::default().tail_lines)]
    tail_lines: i64,
    /// With --dump: make the replay server refuse RESOURCE[/SUBRESOURCE][@NAMESPACE] with 403, to see how a
    /// missing RBAC rule is reported
    #[arg(long, value_name = "RESOURCE", requires = "dump")]
    forbid: Vec<Forbid>,
    /// The question to answer
    question: Vec<String>,
}

#[derive(clap::Args)]
struct ServeArgs {
    /// The configuration file (YAML); KUBECHAT_* variables override it. Every setting: docs/configuration.md
    #[arg(long, env = "KUBECHAT_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
}

#[derive(clap::Args)]
struct DemoArgs {
    /// Address to listen on
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    #[command(flatten)]
    llm: LlmArgs,
}

#[derive(clap::Args)]
struct LlmArgs {
    /// The model server's base URL
    #[arg(long, env = "KUBECHAT_LLM_URL", default_value_t = LlmConfig::default().url)]
    llm_url: String,
    /// The model server's API: Ollama's native /api/chat, or an OpenAI-compatible /v1/chat/completions
    #[arg(long, env = "KUBECHAT_LLM_API", value_enum, default_value_t = LlmConfig::default().api)]
    llm_api: Api,
    /// The model to ask
    #[arg(long, env = "KUBECHAT_LLM_MODEL", default_value_t = LlmConfig::default().model)]
    model: String,
    /// The model's context window in tokens; the prompt, the context and the answer must fit
    #[arg(long, default_value_t = LlmConfig::default().num_ctx)]
    num_ctx: usize,
    /// Tokens kept for the answer
    #[arg(long, default_value_t = LlmConfig::default().answer_tokens)]
    answer_tokens: usize,
    #[arg(long, default_value_t = LlmConfig::default().temperature)]
    temperature: f32,
    /// Put the system text in the first user message, for chat templates without a system role (Mistral's)
    #[arg(long)]
    fold_system: bool,
    /// Seconds to wait for a connection to the model server
    #[arg(long, default_value_t = LlmConfig::default().connect_timeout.as_secs())]
    llm_connect_timeout: u64,
    /// Seconds to wait for the first token
    #[arg(long, default_value_t = LlmConfig::default().first_token_timeout.as_secs())]
    llm_first_token_timeout: u64,
    /// Seconds to wait for the whole answer
    #[arg(long, default_value_t = LlmConfig::default().total_timeout.as_secs())]
    llm_timeout: u64,
    /// Prompt directory [default: ./prompts when present, else the prompts built into kubechat]
    #[arg(long, env = "KUBECHAT_PROMPTS", value_name = "DIR")]
    prompts: Option<PathBuf>,
}

impl LlmArgs {
    fn config(&self) -> LlmConfig {
        LlmConfig {
            url: self.llm_url.clone(),
            api: self.llm_api,
            model: self.model.clone(),
            num_ctx: self.num_ctx,
            answer_tokens: self.answer_tokens,
            temperature: self.temperature,
            fold_system: self.fold_system,
            connect_timeout: Duration::from_secs(self.llm_connect_timeout),
            first_token_timeout: Duration::from_secs(self.llm_first_token_timeout),
            total_timeout: Duration::from_secs(self.llm_timeout),
            ..LlmConfig::default()
        }
    }

    /// The prompt directory given, else ./prompts when present, else the prompts built into kubechat.
    fn prompt_source(&self) -> PromptSource {
        PromptSource::pick(self.prompts.clone(), Path::new("prompts"))
    }

    fn prompts(&self) -> anyhow::Result<Prompts> {
        match self.prompt_source() {
            PromptSource::Dir(dir) => Ok(Prompts::load(&dir)?),
            PromptSource::Builtin => Ok(Prompts::builtin()),
        }
    }
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
    kubechat::install_tls_provider();
    let cli = Cli::parse();
    let one_shot = matches!(cli.command, Command::Diagnose(_) | Command::Ask(_));
    kubechat::app::init_logging(if one_shot { "warn" } else { "info" });
    let result = match cli.command {
        Command::Diagnose(args) => diagnose(args, Intent::Diagnose).await,
        Command::Ask(args) => diagnose(args, Intent::Ask).await,
        Command::Serve(args) => serve(args).await,
        Command::Demo(args) => demo(args).await,
        Command::Replay(args) => replay(args).await,
    };
    kubechat::cli::exit(result, one_shot)
}

async fn replay(args: ReplayArgs) -> anyhow::Result<()> {
    let dump = std::sync::Arc::new(cluster::load_dump(&args.dump)?);
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

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let config = kubechat::config::load(args.config.as_deref(), std::env::vars())?.validate()?;
    for name in kubechat::config::unknown_variables(std::env::vars()) {
        tracing::warn!(variable = %name, "{name} is set but names no setting, so kubechat ignores it (docs/configuration.md)");
    }
    let listen = config.listen;
    let app = App::build(config).await?;
    let listener = tokio::net::TcpListener::bind(listen).await.with_context(|| format!("cannot listen on {listen}"))?;
    if let Some(metrics) = app.metrics_addr() {
        eprintln!("kubechat metrics on http://{metrics}/metrics");
    }
    eprintln!("kubechat serving on http://{}", listener.local_addr()?);
    app.serve(listener, kubechat::app::shutdown_signal()).await.context("the HTTP server failed")
}

async fn demo(args: DemoArgs) -> anyhow::Result<()> {
    let config = Config::demo(args.listen, args.llm.config(), args.llm.prompt_source());
    let app = App::build(config).await?;
    eprintln!(
        "warning: the demo is open: anyone who can reach {} may ask about every namespace of the demo cluster",
        args.listen
    );
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    eprintln!(
        "kubechat demo: a built-in cluster with one broken namespace per failure kubechat knows, and a healthy one"
    );
    eprintln!(
        "model: {} at {} ({:?} API); without one, answers are kubechat's findings alone",
        args.llm.model,
        kubechat::secret::without_credentials(&args.llm.llm_url),
        args.llm.llm_api
    );
    eprintln!("open http://{}/", listener.local_addr()?);
    app.serve(listener, kubechat::app::shutdown_signal()).await.context("the HTTP server failed")
}

async fn diagnose(args: DiagnoseArgs, intent: Intent) -> anyhow::Result<()> {
    let question = args.question.join(" ");
    if intent == Intent::Ask && question.trim().is_empty() {
        bail!("ask needs a question, e.g. kubechat ask -n shop why is checkout failing");
    }
    let source = match (args.dump, args.kubeconfig) {
        (Some(path), _) => Source::Dump { path, forbid: args.forbid },
        (None, Some(path)) => Source::Kubeconfig { path, context: None },
        (None, None) => Source::Infer,
    };
    let limits = Limits {
        call_timeout: Duration::from_secs(args.timeout),
        log_pods: args.log_pods,
        tail_lines: args.tail_lines,
        ..Limits::default()
    };
    let asked = cli::Asked {
        source,
        namespace: args.namespace,
        object: args.object,
        limits,
        intent,
        question,
        prompts: args.llm.prompts()?,
        llm: args.llm.config(),
        no_llm: args.no_llm,
        json: matches!(args.output, Output::Json),
    };
    Ok(cli::diagnose(asked).await?)
}
