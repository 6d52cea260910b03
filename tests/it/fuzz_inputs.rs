//! The fuzz targets' committed inputs, replayed in the test command: every seed (`fuzz/seeds/<target>/`) and every
//! input the fuzzer once crashed a target with (`fuzz/regressions/<target>/`), so a crash, once fixed, stays fixed.

use std::path::{Path, PathBuf};

use kubechat::fuzzing::TARGETS;

fn files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = match std::fs::read_dir(dir) {
        Ok(entries) => entries.map(|e| e.unwrap().path()).filter(|p| p.is_file()).collect(),
        Err(_) => Vec::new(),
    };
    files.sort();
    files
}

#[test]
fn seeds_and_found_crashes_pass_their_targets() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let mut failures = Vec::new();
    let mut replayed = 0;
    for (name, target) in TARGETS {
        let seeds = files(&root.join("seeds").join(name));
        assert!(!seeds.is_empty(), "fuzz/seeds/{name} holds no seed input");
        for path in seeds.iter().chain(&files(&root.join("regressions").join(name))) {
            let data = std::fs::read(path).unwrap();
            replayed += 1;
            if std::panic::catch_unwind(|| target(&data)).is_err() {
                failures.push(path.strip_prefix(&root).unwrap().display().to_string());
            }
        }
    }
    assert!(failures.is_empty(), "these inputs crash their fuzz target: {failures:?}");
    eprintln!("replayed {replayed} fuzz inputs");
}

#[test]
fn each_target_has_its_fuzz_binary() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let manifest = std::fs::read_to_string(root.join("Cargo.toml")).unwrap();
    for (name, _) in TARGETS {
        let source = std::fs::read_to_string(root.join(format!("fuzz_targets/{name}.rs")))
            .unwrap_or_else(|e| panic!("fuzz/fuzz_targets/{name}.rs: {e}"));
        assert!(
            source.contains(&format!("kubechat::fuzzing::{name}(data)")),
            "fuzz/fuzz_targets/{name}.rs calls its target"
        );
        assert!(manifest.contains(&format!("name = \"{name}\"")), "fuzz/Cargo.toml declares the {name} binary");
    }
    let binaries = files(&root.join("fuzz_targets")).len();
    assert_eq!(binaries, TARGETS.len(), "every fuzz binary is listed in kubechat::fuzzing::TARGETS");
}
