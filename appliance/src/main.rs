//! The mtugate binary (issue 3).

fn main() {
    eprintln!("mtugate: not built yet; see the issues");
    std::process::exit(2);
}
