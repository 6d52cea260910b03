//! kubechat's token estimate against Mistral 7B Instruct v0.3's own tokenizer (sentencepiece, with the model file the
//! PyPI package mistral-common ships), on the prompt of every demo scenario as `--no-llm --output json` reports it.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use kubechat::access::{Asker, Platform};
use kubechat::answer;
use kubechat::cluster::{self, Limits};
use kubechat::dump::Dump;
use kubechat::llm::LlmConfig;
use kubechat::prompt::Prompts;
use kubechat::request::{Intent, Request, Scope};

use crate::common::{client, serve};

fn tokenizer() -> (PathBuf, PathBuf) {
    match (std::env::var_os("KUBECHAT_TOKENIZER_PYTHON"), std::env::var_os("KUBECHAT_TOKENIZER_MODEL")) {
        (Some(python), Some(model)) => (python.into(), model.into()),
        _ => panic!(
            "KUBECHAT_TOKENIZER_PYTHON and KUBECHAT_TOKENIZER_MODEL are not set: this test needs Mistral's tokenizer. Run ./scripts/test, or set them to the two lines ./scripts/tokenizer prints"
        ),
    }
}

/// Counts the tokens of each prompt (JSON lines of messages on standard input) as Mistral's chat template sends them:
/// the system prompt folded into the user message, `<s>[INST] … [/INST]`.
const COUNT: &str = r#"
import json, sys
import sentencepiece
tokenizer = sentencepiece.SentencePieceProcessor(model_file=sys.argv[1])
for line in sys.stdin:
    messages = json.loads(line)
    text = "\n\n".join(m["content"] for m in messages)
    print(len(tokenizer.encode(text)) + 3)
"#;

#[tokio::test]
async fn the_estimate_is_at_or_above_mistrals_count_and_within_15_percent() {
    let (python, model) = tokenizer();
    let dump = Arc::new(Dump::demo());
    let namespaces: Vec<String> = dump.namespaces().map(str::to_string).collect();
    assert!(namespaces.len() >= 40, "the demo has {} namespaces", namespaces.len());
    let server = serve(dump, &[]).await;
    let kube = client(&server).await;
    let prompts = Prompts::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("prompts")).unwrap();
    let config = LlmConfig::default();

    let mut estimated = Vec::new();
    let mut input = String::new();
    for namespace in &namespaces {
        let scope = Scope::parse("default", namespace, None).unwrap();
        let facts = cluster::read(&kube, &scope, &Limits::default()).await.unwrap();
        let asker = Asker { platform: Platform::Cli, place: None, user: "test".into() };
        let request = Request::new("tokens", asker, Intent::Diagnose, scope, "what is wrong?", Vec::new());
        let (_, _, prompt) = answer::without_model(&facts, &request, &prompts, &config).unwrap();
        estimated.push(prompt.tokens_estimated);
        input.push_str(&serde_json::to_string(&prompt.messages).unwrap());
        input.push('\n');
    }

    let mut child = Command::new(&python)
        .args(["-c", COUNT])
        .arg(&model)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("the tokenizer's python runs");
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), input.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "the tokenizer failed: {}", String::from_utf8_lossy(&out.stderr));
    let real: Vec<usize> = String::from_utf8(out.stdout).unwrap().lines().map(|l| l.parse().unwrap()).collect();
    assert_eq!(real.len(), namespaces.len());

    let mut outside = Vec::new();
    for ((namespace, estimate), real) in namespaces.iter().zip(&estimated).zip(&real) {
        let ratio = *estimate as f64 / *real as f64;
        eprintln!("{namespace}: estimated {estimate}, Mistral's tokenizer {real}, ratio {ratio:.3}");
        if !(1.0..=1.15).contains(&ratio) {
            outside.push(format!("{namespace} ({estimate} estimated, {real} real, ratio {ratio:.3})"));
        }
    }
    assert!(outside.is_empty(), "estimates outside 1.00-1.15 times the real count: {}", outside.join("; "));
}
