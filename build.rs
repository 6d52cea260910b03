//! Compiles the demo cluster (the dump in testdata/scenarios) into the binary, so `kubechat demo` needs nothing else.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<PathBuf> =
        std::fs::read_dir(dir).expect("testdata/scenarios is readable").map(|e| e.unwrap().path()).collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            files(&path, out);
        } else {
            out.push(path);
        }
    }
}

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/scenarios");
    println!("cargo::rerun-if-changed=testdata/scenarios");
    let mut paths = Vec::new();
    files(&root, &mut paths);
    let mut code = String::from(
        "/// The demo dump's files: (path inside the dump, content).\npub const FILES: &[(&str, &str)] = &[\n",
    );
    for path in paths {
        let relative = path.strip_prefix(&root).unwrap().to_string_lossy().replace('\\', "/");
        writeln!(code, "    ({relative:?}, include_str!({:?})),", path.display().to_string()).unwrap();
    }
    code.push_str("];\n");
    let out = PathBuf::from(std::env::var("OUT_DIR").unwrap()).join("demo_files.rs");
    std::fs::write(out, code).unwrap();
}
