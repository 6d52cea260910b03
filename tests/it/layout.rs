//! The shape docs/ARCHITECTURE.md promises, checked on the source: modules do not import each other in a cycle, only
//! `cluster` holds a Kubernetes client, `main.rs` stays a thin binary, and the benchmarks are not a product command.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

const SRC: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/src");

/// Every Rust file under `src/`, with the top-level module it belongs to (`None` for the crate roots).
fn sources() -> Vec<(Option<String>, String, String)> {
    crate::common::files_under(Path::new(SRC), "rs")
        .into_iter()
        .map(|path| {
            let relative = path.strip_prefix(SRC).unwrap().to_string_lossy().to_string();
            let first = relative.split('/').next().unwrap().trim_end_matches(".rs").to_string();
            let module = (!matches!(first.as_str(), "lib" | "main")).then_some(first);
            let text = std::fs::read_to_string(&path).unwrap();
            (module, relative, text)
        })
        .collect()
}

/// Which top-level modules each module names through `crate::`.
fn imports() -> BTreeMap<String, BTreeSet<String>> {
    let files = sources();
    let modules: BTreeSet<String> = files.iter().filter_map(|(m, _, _)| m.clone()).collect();
    let path = regex::Regex::new(r"crate::([a-z_][a-z0-9_]*)").unwrap();
    let mut graph: BTreeMap<String, BTreeSet<String>> = modules.iter().map(|m| (m.clone(), BTreeSet::new())).collect();
    for (module, _, text) in &files {
        let Some(module) = module else { continue };
        // Code only: a doc link to another module is not an import.
        let code: String = text.lines().filter(|l| !l.trim_start().starts_with("//")).collect::<Vec<_>>().join("\n");
        for capture in path.captures_iter(&code) {
            let target = &capture[1];
            if target != module && modules.contains(target) {
                graph.get_mut(module).unwrap().insert(target.to_string());
            }
        }
    }
    graph
}

/// A cycle through `graph`, as the modules along it, if there is one.
fn cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(start) = path.iter().position(|n| n == node) {
            let mut found = path[start..].to_vec();
            found.push(node.to_string());
            return Some(found);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_string());
        for next in &graph[node] {
            if let Some(found) = visit(next, graph, path, done) {
                return Some(found);
            }
        }
        path.pop();
        done.insert(node.to_string());
        None
    }
    let mut done = BTreeSet::new();
    graph.keys().find_map(|node| visit(node, graph, &mut Vec::new(), &mut done))
}

#[test]
fn modules_do_not_import_each_other_in_a_cycle() {
    let graph = imports();
    assert!(graph["service"].contains("access") && graph["cluster"].contains("facts"), "the graph is read: {graph:?}");
    if let Some(found) = cycle(&graph) {
        panic!("an import cycle between modules: {}", found.join(" → "));
    }
    // The front-ends reach the core, never each other's internals; the core reaches no front-end.
    for front in ["slack", "matrix"] {
        assert!(!graph[front].contains("server"), "{front} imports the HTTP front-end: {:?}", graph[front]);
    }
    for core in ["service", "request", "answer", "cluster", "facts", "findings", "context", "config"] {
        let reached: Vec<&String> =
            graph[core].iter().filter(|m| ["slack", "matrix", "alerts"].contains(&m.as_str())).collect();
        assert!(core == "config" || reached.is_empty(), "{core} imports a chat front-end: {reached:?}");
    }
}

#[test]
fn a_cycle_is_found_when_there_is_one() {
    let graph: BTreeMap<String, BTreeSet<String>> = [
        ("a".to_string(), BTreeSet::from(["b".to_string()])),
        ("b".to_string(), BTreeSet::from(["c".to_string()])),
        ("c".to_string(), BTreeSet::from(["a".to_string()])),
        ("d".to_string(), BTreeSet::new()),
    ]
    .into();
    assert_eq!(cycle(&graph), Some(vec!["a".into(), "b".into(), "c".into(), "a".into()]));
    let acyclic: BTreeMap<String, BTreeSet<String>> =
        [("a".to_string(), BTreeSet::from(["b".to_string()])), ("b".to_string(), BTreeSet::new())].into();
    assert_eq!(cycle(&acyclic), None);
}

/// The cluster is read in one module, `cluster`; the one thing kubechat writes, its leader Lease, is in one other,
/// `lease`, which touches nothing else.
#[test]
fn only_the_cluster_module_holds_a_kubernetes_client() {
    let client = regex::Regex::new(r"\bkube::|\bApi::<|\bApi::(namespaced|all)\b").unwrap();
    let mut found = Vec::new();
    for (_, file, text) in sources() {
        if file == "cluster.rs" {
            continue;
        }
        if file == "lease.rs" {
            let apis: Vec<&str> = text.lines().filter(|l| l.contains("Api<")).collect();
            assert!(apis.iter().all(|l| l.contains("Api<Lease>")), "lease.rs reaches more than Leases: {apis:?}");
            continue;
        }
        for (n, line) in text.lines().enumerate() {
            if client.is_match(line) {
                found.push(format!("src/{file}:{}: {}", n + 1, line.trim()));
            }
        }
    }
    assert!(found.is_empty(), "the Kubernetes client outside src/cluster.rs:\n{}", found.join("\n"));
}

#[test]
fn main_is_a_thin_binary_without_the_benchmarks() {
    let main = std::fs::read_to_string(format!("{SRC}/main.rs")).unwrap();
    let lines = main.lines().count();
    assert!(lines < 300, "src/main.rs has {lines} lines: the wiring belongs in the library (app.rs)");
    assert!(main.contains("App::build"), "main builds kubechat through the library's builder");
    let help = crate::common::kubechat(&["--help"]);
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(help.contains("diagnose") && help.contains("serve"), "{help}");
    assert!(!help.contains("bench"), "the benchmarks are their own crate, not a product command:\n{help}");
    let refused = crate::common::kubechat(&["bench"]);
    assert!(!refused.status.success());
}

/// Every `KUBECHAT_*` name in kubechat's own code (outside its tests) is a setting's variable or one of
/// `config::OTHER_VARIABLES`, so the start-up warning about unknown variables never names one the code reads.
#[test]
fn every_variable_the_code_reads_is_known() {
    let name = regex::Regex::new(r#""(KUBECHAT_[A-Z0-9_]+)""#).unwrap();
    let mut seen = 0;
    for (_, file, text) in sources() {
        // The code before its tests: test modules set variables of their own.
        let code = text.split("#[cfg(test)]").next().unwrap();
        for found in name.captures_iter(code) {
            seen += 1;
            assert!(
                kubechat::config::unknown_variables([(found[1].to_string(), String::new())]).is_empty(),
                "src/{file} reads {}, which is neither a setting's variable nor in config::OTHER_VARIABLES",
                &found[1]
            );
        }
    }
    assert!(seen >= 5, "the scan finds the variables main.rs and prompt.rs read ({seen})");
}
