//! Prometheus metrics, served as text on their own port (`metrics.listen`): requests by platform, intent and outcome;
//! latency per stage; tokens; the model queue; Kubernetes API errors by status; model errors; each cluster's
//! reachability. Every metric of a request names its cluster (`cluster`: kubechat's name, or `unknown` for a question
//! about a cluster it does not read, so no label value comes from an asker).

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

type Labels = Vec<(&'static str, String)>;

fn stage_histogram() -> Histogram {
    // 5 ms to about 5 minutes.
    Histogram::new(exponential_buckets(0.005, 2.0, 17))
}

pub struct Metrics {
    registry: Registry,
    requests: Family<Labels, Counter>,
    stages: Family<Labels, Histogram, fn() -> Histogram>,
    tokens: Family<Labels, Counter>,
    queue: Gauge,
    kube_errors: Family<Labels, Counter>,
    llm_errors: Family<Labels, Counter>,
    reachable: Family<Labels, Gauge>,
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("kubechat");
        let requests = Family::<Labels, Counter>::default();
        registry.register("requests", "Questions, by platform, intent and outcome", requests.clone());
        let stages = Family::<Labels, Histogram, fn() -> Histogram>::new_with_constructor(stage_histogram);
        registry.register(
            "stage_duration_seconds",
            "Time per stage: retrieve (reading the cluster), llm_first_token, llm_total, post (to the chat platform)",
            stages.clone(),
        );
        let tokens = Family::<Labels, Counter>::default();
        registry.register(
            "llm_tokens",
            "Tokens the model server reported, by kind (prompt, completion)",
            tokens.clone(),
        );
        let queue = Gauge::default();
        registry.register("llm_queue_depth", "Questions waiting for a model slot", queue.clone());
        let kube_errors = Family::<Labels, Counter>::default();
        registry.register(
            "kube_api_errors",
            "Kubernetes API calls that failed, by HTTP status (or timeout, unreachable)",
            kube_errors.clone(),
        );
        let llm_errors = Family::<Labels, Counter>::default();
        registry.register("llm_errors", "Model requests that failed, by kind", llm_errors.clone());
        let reachable = Family::<Labels, Gauge>::default();
        registry.register(
            "cluster_reachable",
            "Whether each cluster's API server answered when last asked (1) or not (0)",
            reachable.clone(),
        );
        Metrics { registry, requests, stages, tokens, queue, kube_errors, llm_errors, reachable }
    }

    pub fn request(&self, platform: &str, intent: &str, outcome: &str, cluster: &str) {
        let labels = vec![
            ("platform", platform.to_string()),
            ("intent", intent.to_string()),
            ("outcome", outcome.to_string()),
            ("cluster", cluster.to_string()),
        ];
        self.requests.get_or_create(&labels).inc();
    }

    pub fn stage(&self, stage: &'static str, cluster: &str, seconds: f64) {
        let labels = vec![("stage", stage.to_string()), ("cluster", cluster.to_string())];
        self.stages.get_or_create(&labels).observe(seconds);
    }

    pub fn tokens(&self, kind: &'static str, cluster: &str, count: u64) {
        self.tokens.get_or_create(&vec![("kind", kind.to_string()), ("cluster", cluster.to_string())]).inc_by(count);
    }

    pub fn kube_error(&self, code: &str, cluster: &str) {
        self.kube_errors.get_or_create(&vec![("code", code.to_string()), ("cluster", cluster.to_string())]).inc();
    }

    pub fn llm_error(&self, kind: &str, cluster: &str) {
        self.llm_errors.get_or_create(&vec![("kind", kind.to_string()), ("cluster", cluster.to_string())]).inc();
    }

    /// The text exposition, with the queue depth and each cluster's reachability (none: not asked yet) read now.
    pub fn render<'a>(
        &self,
        queue_depth: usize,
        clusters: impl IntoIterator<Item = (&'a str, Option<bool>)>,
    ) -> String {
        self.queue.set(queue_depth as i64);
        for (cluster, reachable) in clusters {
            if let Some(reachable) = reachable {
                self.reachable.get_or_create(&vec![("cluster", cluster.to_string())]).set(i64::from(reachable));
            }
        }
        let mut out = String::new();
        encode(&mut out, &self.registry).expect("writing to a String cannot fail");
        out
    }
}
