fn main() -> std::process::ExitCode {
    kvmtop::cli::main()
}
