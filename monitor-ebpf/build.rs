use which::which;

/// Rebuild the programs when bpf-linker changes: a new linker can produce a different object.
fn main() {
    let bpf_linker = which("bpf-linker").expect(
        "bpf-linker not found on PATH: run `cargo xtask setup` (it installs bpf-linker into ~/.cargo/bin)",
    );
    println!(
        "cargo:rerun-if-changed={}",
        bpf_linker.to_str().expect("bpf-linker path is UTF-8")
    );
}
