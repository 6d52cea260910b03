use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::{Parser, Subcommand, ValueEnum};

use kubechat::access::Buckets;
use kubechat::answer::{self, Intent, Question};
use kubechat::audit::AuditLog;
use kubechat::cluster::{self, Limits};
use kubechat::dump::Dump;
use kubechat::llm::{Api, Llm, LlmConfig};
use kubechat::prompt::{PromptStore, Prompts};
use kubechat::replay::{self, Forbid};
use kubechat::report;
use kubechat::request::Scope;
use kubechat::server::HttpAuth;
use kubechat::service::{AppState, Policy};
use kubechat::slack::Slack;
use kubechat::slack::SlackMode;

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
    #[command(flatten)]
    llm: LlmArgs,
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
    #[arg(long, env = "KUBECHAT_LLM_URL", default_value = "http://127.0.0.1:11434")]
    llm_url: String,
    /// The model server's API: Ollama's native /api/chat, or an OpenAI-compatible /v1/chat/completions
    #[arg(long, env = "KUBECHAT_LLM_API", value_enum, default_value = "ollama")]
    llm_api: Api,
    /// The model to ask
    #[arg(long, env = "KUBECHAT_LLM_MODEL", default_value = "mistral")]
    model: String,
    /// The model's context window in tokens; the prompt, the context and the answer must fit
    #[arg(long, default_value_t = 8192)]
    num_ctx: usize,
    /// Tokens kept for the answer
    #[arg(long, default_value_t = 1024)]
    answer_tokens: usize,
    #[arg(long, default_value_t = 0.2)]
    temperature: f32,
    /// Put the system text in the first user message, for chat templates without a system role (Mistral's)
    #[arg(long)]
    fold_system: bool,
    /// Seconds to wait for a connection to the model server
    #[arg(long, default_value_t = 5)]
    llm_connect_timeout: u64,
    /// Seconds to wait for the first token
    #[arg(long, default_value_t = 120)]
    llm_first_token_timeout: u64,
    /// Seconds to wait for the whole answer
    #[arg(long, default_value_t = 300)]
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

    fn prompts(&self) -> anyhow::Result<Prompts> {
        match &self.prompts {
            Some(dir) => Ok(Prompts::load(dir)?),
            None if Path::new("prompts/diagnose.md").exists() => Ok(Prompts::load(Path::new("prompts"))?),
            None => Ok(Prompts::builtin()),
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
    let default_level = match cli.command {
        Command::Replay(_) => "info",
        Command::Diagnose(_) | Command::Ask(_) => "warn",
        Command::Serve(_) | Command::Demo(_) => "info",
    };
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| default_level.into()))
        .init();
    let result = match cli.command {
        Command::Diagnose(args) => diagnose(args, Intent::Diagnose).await,
        Command::Ask(args) => diagnose(args, Intent::Ask).await,
        Command::Serve(args) => serve(args).await,
        Command::Demo(args) => demo(args).await,
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
    for problem in r.invalid.iter().take(20) {
        tracing::warn!("skipped {problem} (an API server would not have stored it)");
    }
    if r.invalid.len() > 20 {
        tracing::warn!("skipped {} more objects of the wrong shape", r.invalid.len() - 20);
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

/// A client for the cluster, or for a dump through an in-process replay server (kept alive by the returned server),
/// so offline dumps and live clusters share one code path; with the namespace to use when none is named.
async fn connect(
    dump: Option<&Path>,
    kubeconfig: Option<&Path>,
    forbid: &[Forbid],
) -> anyhow::Result<(kube::Client, String, Option<replay::Server>)> {
    match dump {
        Some(path) => {
            let dump = load_dump(path)?;
            let namespaces: Vec<String> = dump.namespaces().map(str::to_string).collect();
            let server = replay::start(dump, replay::Options { forbid: forbid.to_vec() }, ([127, 0, 0, 1], 0).into())
                .await
                .context("cannot start the in-process replay server")?;
            let client = cluster::client(None, Some(&server.url())).await?;
            let namespace = if namespaces.len() == 1 { namespaces[0].clone() } else { "default".to_string() };
            Ok((client, namespace, Some(server)))
        }
        None => {
            let client = cluster::client(kubeconfig, None).await?;
            let namespace = client.default_namespace().to_string();
            Ok((client, namespace, None))
        }
    }
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let config = kubechat::config::load(args.config.as_deref(), std::env::vars())?.validate()?;
    let prompts = Arc::new(
        PromptStore::open(&config.prompts)
            .with_context(|| format!("cannot load the prompts from {} (setting prompts)", config.prompts.display()))?,
    );
    let _watch = prompts.watch(config.prompts_reload);
    let llm = Llm::new(config.llm.clone())?;
    let (client, default_namespace, _server) =
        connect(config.dump.as_deref(), config.kubeconfig.as_deref(), &[]).await?;
    let namespace = config.namespace.clone().unwrap_or(default_namespace);
    let audit = match &config.audit {
        Some(path) => AuditLog::file(path)
            .with_context(|| format!("cannot open the audit log {} (setting audit.path)", path.display()))?,
        None => AuditLog::stdout(),
    };
    if matches!(config.http_auth, HttpAuth::Open) {
        tracing::warn!("http.auth is open: anyone who can reach kubechat's HTTP API may ask, as `anonymous`");
    }
    let policy = Policy {
        access: config.access.clone(),
        user_rate: config.user_rate.map(Buckets::new),
        place_rate: config.place_rate.map(Buckets::new),
        audit,
        auth: config.http_auth.clone(),
        cors_origins: config.cors_origins.clone(),
    };
    let state = AppState::with_policy(client, prompts, llm, config.limits.clone(), namespace, policy);
    let mut app = kubechat::server::router(state.clone());
    let mut _metrics = None;
    if let Some(address) = config.metrics {
        let listener = tokio::net::TcpListener::bind(address)
            .await
            .with_context(|| format!("cannot listen on {address} (setting metrics.listen)"))?;
        eprintln!("kubechat metrics on http://{}/metrics", listener.local_addr()?);
        let metrics = kubechat::server::metrics_router(state.clone());
        _metrics = Some(KillOnDrop(tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, metrics).await {
                tracing::error!("the metrics server failed: {e}");
            }
        })));
    }
    let mut _socket = None;
    let mut slack = None;
    if let Some(slack_config) = config.slack.clone() {
        let mode = slack_config.mode;
        let started = Slack::start(slack_config, state.clone())
            .await
            .context("cannot connect to Slack (settings slack.bot_token and slack.api_url)")?;
        match mode {
            SlackMode::Http => app = app.merge(kubechat::slack::http::routes(started.clone())),
            SlackMode::Socket => {
                _socket = Some(KillOnDrop(tokio::spawn(kubechat::slack::socket::run(started.clone()))));
            }
        }
        slack = Some(started);
        eprintln!("kubechat answering on Slack ({mode:?} mode)");
    }
    #[cfg(feature = "matrix")]
    let mut _matrix = None;
    #[cfg(feature = "matrix")]
    let mut matrix_handle = None;
    #[cfg(feature = "matrix")]
    if let Some(matrix_config) = config.matrix.clone() {
        let homeserver = matrix_config.homeserver_url.clone();
        let matrix = kubechat::matrix::Matrix::start(matrix_config, state.clone())
            .await
            .with_context(|| format!("cannot connect to Matrix at {homeserver}"))?;
        _matrix = Some(KillOnDrop(tokio::spawn(matrix.clone().run())));
        matrix_handle = Some(matrix);
        eprintln!("kubechat answering on Matrix at {homeserver}");
    }
    if !config.alertmanager.token.is_empty() {
        let alerts = kubechat::alerts::Alerts::new(
            config.alertmanager.clone(),
            state.clone(),
            slack.clone(),
            #[cfg(feature = "matrix")]
            matrix_handle.clone(),
        );
        app = app.merge(kubechat::alerts::routes(alerts));
        eprintln!("kubechat taking Alertmanager's webhook at /alertmanager");
    }
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    eprintln!("kubechat serving on http://{}", listener.local_addr()?);
    kubechat::server::serve(listener, app, shutdown_signal()).await.context("the HTTP server failed")
}

async fn demo(args: DemoArgs) -> anyhow::Result<()> {
    let prompts = Arc::new(PromptStore::fixed(args.llm.prompts()?));
    let llm = Llm::new(args.llm.config())?;
    let dump = Arc::new(Dump::demo());
    let replay = replay::start(dump, replay::Options::default(), ([127, 0, 0, 1], 0).into())
        .await
        .context("cannot start the demo cluster's replay server")?;
    let client = cluster::client(None, Some(&replay.url())).await?;
    let state = AppState::new(client, prompts, llm, Limits::default(), "imagepull".to_string());
    eprintln!(
        "warning: the demo is open: anyone who can reach {} may ask about every namespace of the demo cluster",
        args.listen
    );
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let url = format!("http://{}/", listener.local_addr()?);
    eprintln!(
        "kubechat demo: a built-in cluster with one broken namespace per failure kubechat knows, and a healthy one"
    );
    eprintln!(
        "model: {} at {} ({:?} API); without one, answers are kubechat's findings alone",
        args.llm.model, args.llm.llm_url, args.llm.llm_api
    );
    eprintln!("open {url}");
    kubechat::server::serve(listener, kubechat::server::router(state), shutdown_signal())
        .await
        .context("the HTTP server failed")
}

/// Stops a background task when dropped.
struct KillOnDrop(tokio::task::JoinHandle<()>);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Ctrl-C or SIGTERM (what Kubernetes sends on pod shutdown).
async fn shutdown_signal() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {},
        _ = terminate => {},
    }
    eprintln!("shutting down: finishing the requests in flight");
}

async fn diagnose(args: DiagnoseArgs, intent: Intent) -> anyhow::Result<()> {
    let question_text = args.question.join(" ");
    if intent == Intent::Ask && question_text.trim().is_empty() {
        bail!("ask needs a question, e.g. kubechat ask -n shop why is checkout failing");
    }
    let prompts = args.llm.prompts()?;
    let config = args.llm.config();
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
    let (client, default_namespace, _server) =
        connect(args.dump.as_deref(), args.kubeconfig.as_deref(), &args.forbid).await?;
    let scope = Scope { namespace: args.namespace.unwrap_or(default_namespace), object };
    let facts = cluster::read(&client, &scope, &limits).await?;
    let mut question = Question::diagnose(&scope.namespace);
    question.intent = intent;
    question.object = args.object.clone();
    if !question_text.trim().is_empty() {
        question.text = question_text;
    }

    if args.no_llm {
        let (diagnosis, commands, prompt) = answer::without_model(&facts, &question, &prompts, &config)?;
        match args.output {
            Output::Json => {
                let mut json = serde_json::to_value(&diagnosis)?;
                json["commands"] = serde_json::to_value(&commands)?;
                json["prompt"] = serde_json::to_value(&prompt)?;
                println!("{}", serde_json::to_string_pretty(&json)?);
            }
            Output::Text => print!("{}", report::text(&diagnosis)),
        }
        return Ok(());
    }

    let llm = Llm::new(config)?;
    let started = std::time::Instant::now();
    let streaming = matches!(args.output, Output::Text);
    let on_token = |token: &str| {
        if streaming {
            use std::io::Write as _;
            print!("{token}");
            let _ = std::io::stdout().flush();
        }
    };
    let on_queued = |position: usize| eprintln!("waiting for the model: number {position} in line");
    let answer = answer::answer(&facts, &question, &prompts, &llm, on_token, on_queued).await?;
    match args.output {
        Output::Json => println!("{}", serde_json::to_string_pretty(&answer)?),
        Output::Text => {
            if let Some(reason) = &answer.degraded {
                eprintln!("note: answering without the model: {reason}");
                print!("{}", answer.answer);
            } else if answer.truncated {
                // The streamed tokens lack the note that the JSON answer carries.
                let note = answer.answer.rsplit("\n\n").next().unwrap_or_default();
                print!("\n\n{note}");
            }
            println!();
            if !answer.commands.is_empty() {
                println!("\nSuggested commands (kubechat runs none of them):");
                for c in &answer.commands {
                    let badge = if c.read_only { "read-only" } else { "MUTATING " };
                    println!("  [{badge}] {}", c.command);
                    if let Some(note) = &c.note {
                        println!("              ! {note}");
                    }
                }
            }
            for gap in &answer.gaps {
                println!("\nnot read: {gap}");
            }
            println!(
                "\n-- model {} · prompt {}@{}{} · namespace {} · {:.1}s",
                answer.model,
                answer.prompt.name,
                answer.prompt.version,
                answer.prompt.revision.as_deref().map(|r| format!(" ({r})")).unwrap_or_default(),
                answer.namespace,
                started.elapsed().as_secs_f32()
            );
        }
    }
    Ok(())
}
