//! `ledger`: see [`api::cli`].

// Every binary of the workspace allocates with mimalloc: the ledger folds and serves JSON through
// many short-lived allocations on several threads, where glibc's allocator spent a third of a
// rebuild's client time in malloc/free (perf, 2026-11-23; BENCHMARKS.md, issue #4).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    api::cli::main()
}
