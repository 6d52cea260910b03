//! Diagnosing a large namespace stays fast: 4,000 pods and 12,000 events, one of them broken.
//!
//! The bound is the (well under 2 s) in a release build; a debug build is several times slower, so there it
//! only guards against a blow-up. The test command runs this module in release too.

use std::sync::Arc;
use std::time::{Duration, Instant};

use kubechat::cluster::{self, Limits};
use kubechat::request::Scope;

use crate::common::{client, serve};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_thousand_pods_are_diagnosed_quickly() {
    let server = serve(Arc::new(crate::synthetic::namespace("large", 4000, 12000, true)), &[]).await;
    let client = client(&server).await;
    let scope = Scope::parse("large", None).unwrap();
    let started = Instant::now();
    let facts = cluster::read(&client, &scope, &Limits::default()).await.unwrap();
    let read = started.elapsed();
    let diagnosis = kubechat::report::diagnose(&facts, 6000);
    let elapsed = started.elapsed();
    eprintln!("read {read:?}, analyzed in {:?}", elapsed - read);
    assert_eq!(facts.pods.len(), 4000);
    assert_eq!(facts.events.len(), 12000);
    let found: Vec<_> = diagnosis.findings.iter().map(|f| (f.reason.as_str(), f.object.name.as_str())).collect();
    assert_eq!(found, [("CrashLoopBackOff", "web-5d4c3b2a1-02000")]);
    assert!(diagnosis.context.contains("error: invalid configuration: LISTEN_ADDR is empty"));
    let tokens = kubechat::tokens::estimate(&diagnosis.context);
    assert!(tokens <= 6000, "the context takes {tokens} tokens, over its budget of 6000");
    assert!(diagnosis.context.contains("more events]"), "the events that did not fit leave a marker");
    let bound = if cfg!(debug_assertions) { Duration::from_secs(30) } else { Duration::from_millis(1000) };
    eprintln!("diagnosed 4000 pods and 12000 events in {elapsed:?} (bound {bound:?})");
    assert!(elapsed < bound, "took {elapsed:?}, bound {bound:?}");
}
