fn main() -> anyhow::Result<()> {
    claimcheck::cli::main()
}
