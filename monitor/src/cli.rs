pub fn main() -> std::process::ExitCode {
    let obj = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/monitor"));
    let mut ebpf = aya::Ebpf::load(obj).unwrap();
    for (name, _) in ebpf.programs() { println!("{name}"); }
    let _ = &mut ebpf;
    std::process::ExitCode::SUCCESS
}
