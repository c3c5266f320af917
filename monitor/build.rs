//! Builds the kernel programs (`monitor-ebpf`) for the BPF target with the nightly toolchain and
//! bpf-linker, so `cargo build` is the only build step. `cargo xtask setup` installs both.
use anyhow::Context as _;

fn main() -> anyhow::Result<()> {
    // The fuzz targets (fuzz/) link the agent's parsers with sanitizer flags, which cannot build
    // BPF code; they never load programs, so an empty object stands in.
    println!("cargo:rerun-if-env-changed=CARGO_CFG_FUZZING");
    if std::env::var_os("CARGO_CFG_FUZZING").is_some() {
        let out = std::path::PathBuf::from(std::env::var_os("OUT_DIR").context("OUT_DIR unset")?);
        std::fs::write(out.join("monitor"), []).context("writing the empty object")?;
        return Ok(());
    }
    let root_dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../monitor-ebpf");
    aya_build::build_ebpf(
        [aya_build::Package {
            name: "monitor-ebpf",
            root_dir,
            ..Default::default()
        }],
        aya_build::Toolchain::default(),
    )
    .context(
        "building the kernel programs failed; `cargo xtask setup` installs the nightly rust-src \
         component and bpf-linker they need",
    )
}
