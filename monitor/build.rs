//! Builds the kernel programs (`monitor-ebpf`) for the BPF target with the nightly toolchain and
//! bpf-linker, so `cargo build` is the only build step. `cargo xtask setup` installs both.
use anyhow::Context as _;

fn main() -> anyhow::Result<()> {
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
