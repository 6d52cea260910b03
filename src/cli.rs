//! The command line as a front-end: `kubechat diagnose` and `kubechat ask` read a namespace (of a live cluster or a
//! dump) and print the findings and the model's answer to a terminal, or as JSON.

use std::time::Instant;

use crate::access::{Asker, Platform};
use crate::answer::{self, BudgetError};
use crate::cluster::{Cluster, ConnectError, Limits, ReadError, Source};
use crate::llm::{Llm, LlmConfig, LlmError};
use crate::prompt::Prompts;
use crate::report;
use crate::request::{Intent, Invalid, Request, Scope};

/// One question from the command line.
pub struct Asked {
    pub source: Source,
    /// The namespace; the kubeconfig's (or the dump's only one) when none is given.
    pub namespace: Option<String>,
    /// `KIND/NAME`.
    pub object: Option<String>,
    pub limits: Limits,
    pub intent: Intent,
    pub question: String,
    pub prompts: Prompts,
    pub llm: LlmConfig,
    /// Findings and context only, without asking the model.
    pub no_llm: bool,
    pub json: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error(transparent)]
    Connect(#[from] ConnectError),
    #[error(transparent)]
    Invalid(#[from] Invalid),
    #[error(transparent)]
    Read(#[from] ReadError),
    #[error(transparent)]
    Budget(#[from] BudgetError),
    #[error(transparent)]
    Llm(#[from] LlmError),
    #[error("cannot write JSON: {0}")]
    Json(#[from] serde_json::Error),
}

/// Reads, finds and answers, printing as it goes: the answer streams to standard output as the model writes it.
pub async fn diagnose(asked: Asked) -> Result<(), CliError> {
    let cluster = Cluster::connect(&asked.source).await?;
    let namespace = asked.namespace.unwrap_or_else(|| cluster.default_namespace().to_string());
    // One cluster, as whoever runs kubechat reads it: the name every configuration without `clusters` gives it.
    let scope = Scope::parse(crate::clusters::DEFAULT, &namespace, asked.object.as_deref())?;
    let facts = cluster.read(&scope, &asked.limits).await?;
    let user = std::env::var("USER").unwrap_or_else(|_| "cli".to_string());
    let asker = Asker { platform: Platform::Cli, place: None, user };
    let request = Request::new("cli", asker, asked.intent, scope, &asked.question, Vec::new());

    if asked.no_llm {
        let (diagnosis, commands, prompt) = answer::without_model(&facts, &request, &asked.prompts, &asked.llm)?;
        if asked.json {
            let mut json = serde_json::to_value(&diagnosis)?;
            json["commands"] = serde_json::to_value(&commands)?;
            json["prompt"] = serde_json::to_value(&prompt)?;
            println!("{}", serde_json::to_string_pretty(&json)?);
        } else {
            print!("{}", report::text(&diagnosis));
        }
        leave_to_exit((facts, cluster));
        return Ok(());
    }

    let llm = Llm::new(asked.llm)?;
    let started = Instant::now();
    let streaming = !asked.json;
    let on_token = |token: &str| {
        if streaming {
            use std::io::Write as _;
            print!("{token}");
            let _ = std::io::stdout().flush();
        }
    };
    let on_queued = |position: usize| eprintln!("waiting for the model: number {position} in line");
    let answer = answer::answer(facts, &request, &asked.prompts, &llm, on_token, on_queued).await?;
    if asked.json {
        println!("{}", serde_json::to_string_pretty(&crate::view::json(&answer))?);
        return Ok(());
    }
    if let Some(reason) = &answer.degraded {
        // Whoever runs the command line is the operator: the technical cause, on standard error.
        eprintln!("note: answering without the model: {reason}");
    } else if answer.truncated {
        // The streamed tokens lack the note that the JSON answer carries.
        let note = answer.answer.rsplit("\n\n").next().unwrap_or_default();
        print!("\n\n{note}");
    }
    let mut view = crate::view::View::of(&answer);
    if view.answer.take().is_some() {
        // Streamed already.
        println!("\n");
    }
    print!("{}", crate::view::text(&view, started.elapsed()));
    leave_to_exit(cluster);
    Ok(())
}

/// Ends the process: the error, if any, on standard error, and the exit code. A question from the command line
/// (`one_shot`) ends the process here, without stopping the runtime's tasks one by one (a dump served in process would
/// be freed object by object on the way); a server returns to let the runtime shut down.
pub fn exit(result: anyhow::Result<()>, one_shot: bool) -> std::process::ExitCode {
    let code: u8 = match result {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("error: {e:#}");
            1
        }
    };
    if one_shot {
        use std::io::Write as _;
        let _ = std::io::stdout().flush();
        std::process::exit(code.into());
    }
    std::process::ExitCode::from(code)
}

/// What a command holds when it is done and the process is about to end ([`exit`] ends it without tearing the runtime
/// down): given back to the operating system with the process, at once, instead of freed object by object. Freeing
/// the facts of 10,000 pods and 30,000 events took a tenth of reading them, and a dump served in process as much again.
fn leave_to_exit<T>(held: T) {
    std::mem::forget(held);
}
