//! kubechat's benchmarks (`scripts/bench`): ack latency, reading against namespace size beside kubectl, prompt sizes,
//! overhead, start-up and memory, written to docs/benchmarks.md. A tool of the project, not part of the product: it
//! is its own crate, and the image ships without it.

mod bench;
mod synthetic;

use std::path::PathBuf;

use anyhow::Context as _;
use clap::Parser;

/// Measure ack latency, reading against namespace size (beside kubectl), prompt sizes, overhead, start-up and memory,
/// and write the report (docs/benchmarks.md); build with --release first
#[derive(Parser)]
#[command(name = "kubechat-bench", version)]
struct BenchArgs {
    /// Where to write the report
    #[arg(long, default_value = "docs/benchmarks.md")]
    out: PathBuf,
    /// Namespace sizes to read, in pods (each with three times as many events)
    #[arg(long, value_delimiter = ',', default_value = "1000,4000,10000,30000")]
    sizes: Vec<usize>,
    /// Concurrent Slack clients
    #[arg(long, default_value_t = 200)]
    clients: usize,
    /// Slash commands per client, one after the other
    #[arg(long, default_value_t = 5)]
    commands: usize,
    /// Runs of each timed command (the median is reported)
    #[arg(long, default_value_t = 3)]
    repeats: usize,
    /// End-to-end HTTP requests
    #[arg(long, default_value_t = 50)]
    requests: usize,
    /// The prompt directory `kubechat serve` is started with
    #[arg(long, default_value = "prompts")]
    prompts: PathBuf,
    /// The kubectl to compare with
    #[arg(long, default_value = "kubectl")]
    kubectl: String,
    /// Internal: read NAMESPACE from the API at this URL, find what is wrong, print the timing and peak memory as JSON
    #[arg(long, value_name = "URL", hide = true)]
    probe_read: Option<String>,
    #[arg(long, hide = true, default_value = "large")]
    namespace: String,
    /// Internal: serve a generated namespace of this many pods (see --sizes) from a replay server, print its URL and
    /// wait: for profiling `--probe-read` in a process of its own
    #[arg(long, value_name = "PODS", hide = true)]
    serve_synthetic: Option<usize>,
    /// Internal: print a generated namespace of this many pods as one YAML `List`, as `kubectl get -o yaml` does: a
    /// dump to time `kubechat diagnose --dump` with
    #[arg(long, value_name = "PODS", hide = true)]
    write_synthetic: Option<usize>,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    kubechat::install_tls_provider();
    let args = BenchArgs::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "error".into()))
        .init();
    match bench(args).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn bench(args: BenchArgs) -> anyhow::Result<()> {
    if let Some(url) = &args.probe_read {
        let probe = bench::probe_read(url, &args.namespace).await?;
        println!("{}", serde_json::to_string(&probe)?);
        return Ok(());
    }
    if let Some(pods) = args.write_synthetic {
        print!("{}", synthetic::yaml(&args.namespace, pods)?);
        return Ok(());
    }
    if let Some(pods) = args.serve_synthetic {
        return bench::serve_synthetic(&args.namespace, pods).await;
    }
    if cfg!(debug_assertions) {
        eprintln!("warning: this is a debug build; its numbers say little. Run scripts/bench (a release build).");
    }
    let options = bench::Options {
        sizes: args.sizes,
        clients: args.clients,
        commands_per_client: args.commands,
        repeats: args.repeats.max(1),
        requests: args.requests,
        prompts: args.prompts,
        kubectl: args.kubectl,
    };
    let report = bench::run(&options).await?;
    std::fs::write(&args.out, &report).with_context(|| format!("cannot write {}", args.out.display()))?;
    print!("{report}");
    eprintln!("bench: written to {}", args.out.display());
    Ok(())
}
