//! mtugate-perf (issue 5).

fn main() {
    eprintln!("mtugate-perf: not built yet; see the issues");
    std::process::exit(2);
}
